import { expect } from 'chai';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_ROUTES_FILE, readRoutesFile, type TableSpec } from '../routing/table/index.js';
import { startBackends, type Backends } from '../stack/local-stack.js';
import { runBanyanAsync } from './support/cli.js';
import { basicAuth, buildDists, newUploader, run, uploadForm } from './support/packages.js';
import { setRoutes, TEST_SECRET } from './support/proxy.js';
import { services, tempDir, withClient } from './support/services.js';

const QUIET_PIP = { PIP_DISABLE_PIP_VERSION_CHECK: '1', PIP_NO_INPUT: '1', PIP_CONFIG_FILE: '/dev/null', PIP_NO_CACHE_DIR: '1' };

/**
 * Yanking and deleting releases, owner only, journalled; every page shows
 * the change at once, and pip skips a yanked release unless it is pinned.
 */
describe('releases: yank, un-yank and delete, seen at once everywhere, and by pip', function () {
  this.timeout(180_000);
  let backends: Backends;
  let proxy: string;
  let work: string;
  let owner: Awaited<ReturnType<typeof newUploader>>;
  let maintainer: Awaited<ReturnType<typeof newUploader>>;
  const name = `yankpkg-${process.pid}`;
  const dist = name.replace(/-/g, '_');

  before(async () => {
    const s = await services();
    // The download pages on the new app too: the page that warns is the new one.
    const shipped = readRoutesFile(DEFAULT_ROUTES_FILE) as TableSpec;
    await setRoutes(
      s,
      { ...shipped, routes: shipped.routes.map((r) => (r.name.startsWith('project.') ? { ...r, mode: 'new' as const } : r)) },
      'releases: pages on new',
    );
    work = tempDir('banyan-releases-');
    backends = await startBackends(s, { adminToken: 't', secret: TEST_SECRET, redisUrl: s.redisUrl, storageDir: join(work, 'files') });
    proxy = backends.urls.proxy;
    owner = await newUploader(s.primaryUrl);
    maintainer = await newUploader(s.primaryUrl);
    for (const version of ['1.0', '2.0']) {
      const dir = join(work, version);
      mkdirSync(dir);
      const [wheel] = await buildDists(dir, name, version, ['py3-none-any']);
      const res = await fetch(`${proxy}/legacy/`, {
        method: 'POST',
        body: uploadForm(wheel!, { name, version }),
        headers: { authorization: basicAuth('__token__', owner.token) },
      });
      expect(res.status, await res.text()).to.equal(200);
    }
    const added = await runBanyanAsync(['projects', 'add-role', name, maintainer.username, '--role', 'maintainer'], {
      env: { DATABASE_URL: s.primaryUrl },
    });
    expect(added.status, added.stderr).to.equal(0);
  });

  after(async () => {
    await backends?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  const pipDownload = async (spec: string) => {
    const dest = join(work, `got-${Date.now()}-${Math.random().toString(36).slice(2)}`);
    const r = await run('python3', ['-m', 'pip', 'download', '--no-deps', '--index-url', `${proxy}/simple/`, '-d', dest, spec], {
      allowFailure: true,
      env: { ...QUIET_PIP, HOME: work },
    });
    expect(r.code, `pip download ${spec}:\n${r.stdout}\n${r.stderr}`).to.equal(0);
    return { files: readdirSync(dest), output: `${r.stdout}\n${r.stderr}` };
  };
  const yank = (auth: string | undefined, reason = 'broken build') =>
    fetch(`${proxy}/manage/projects/${name}/releases/2.0/yank`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(auth ? { authorization: auth } : {}) },
      body: JSON.stringify({ reason }),
    });

  it('lets only an owner yank through the API, and the simple pages, JSON API and download page show it at once', async () => {
    // Cache the pages first: the yank must not leave them stale.
    const before = await (await fetch(`${proxy}/simple/${name}/`)).text();
    expect(before).to.not.contain('data-yanked');
    expect((await yank(undefined)).status).to.equal(401);
    const refused = await yank(basicAuth('__token__', maintainer.token));
    expect([refused.status, await refused.text()]).to.deep.equal([403, `403 only an owner of ${name} may yank its releases\n`]);

    const done = await yank(basicAuth('__token__', owner.token));
    expect([done.status, await done.json()]).to.deep.equal([200, { project: name, version: '2.0', action: 'yank', filesRemoved: 0 }]);
    expect((await yank(basicAuth('__token__', owner.token))).status, 'yanking twice says so').to.equal(409);

    const html = await (await fetch(`${proxy}/simple/${name}/`)).text();
    expect(html).to.match(
      new RegExp(`${dist}-2\\.0-py3-none-any\\.whl"? [^>]*data-yanked="broken build"|data-yanked="broken build"[^>]*>${dist}-2\\.0`),
    );
    const json = (await (
      await fetch(`${proxy}/simple/${name}/`, { headers: { accept: 'application/vnd.pypi.simple.v1+json' } })
    ).json()) as { files: { filename: string; yanked: unknown }[] };
    expect(json.files.map((f) => [f.filename, f.yanked])).to.deep.equal([
      [`${dist}-1.0-py3-none-any.whl`, false],
      [`${dist}-2.0-py3-none-any.whl`, 'broken build'],
    ]);
    const api = (await (await fetch(`${proxy}/pypi/${name}/json`)).json()) as { info: { version: string } };
    expect(api.info.version, 'the latest is the newest release not yanked').to.equal('1.0');
    const page = await (await fetch(`${proxy}/project/${name}/2.0/`)).text();
    expect(page).to.contain('<p id="yanked" class="yanked"><strong>This release is yanked</strong>: broken build.');
    expect(page).to.match(new RegExp(`<code id="install">pip install --index-url ${proxy}/simple/ ${name}==2\\.0</code>`));
  });

  it('pip skips the yanked release, unless it is pinned', async () => {
    expect((await pipDownload(name)).files).to.deep.equal([`${dist}-1.0-py3-none-any.whl`]);
    const pinned = await pipDownload(`${name}==2.0`);
    expect(pinned.files).to.deep.equal([`${dist}-2.0-py3-none-any.whl`]);
    expect(pinned.output).to.match(/yanked/i);
  });

  it('banyan releases unyanks and deletes; pip follows, the files go, and the journal says who did what', async () => {
    const s = await services();
    const env = { DATABASE_URL: s.primaryUrl, REDIS_URL: s.redisUrl!, BANYAN_STORAGE: join(work, 'files') };
    const unyanked = await runBanyanAsync(['releases', 'unyank', name, '2.0'], { env });
    expect([unyanked.status, unyanked.stdout]).to.deep.equal([0, `${name} 2.0 un-yanked.\n`]);
    expect((await pipDownload(name)).files).to.deep.equal([`${dist}-2.0-py3-none-any.whl`]);

    const json = (await (await fetch(`${proxy}/pypi/${name}/1.0/json`)).json()) as { urls: { url: string }[] };
    const deleted = await runBanyanAsync(['releases', 'delete', name, '1.0'], { env });
    expect([deleted.status, deleted.stdout]).to.deep.equal([0, `${name} 1.0 deleted with its 1 file(s).\n`]);
    expect((await fetch(json.urls[0]!.url)).status, 'the file is gone').to.equal(404);
    expect((await fetch(`${proxy}/pypi/${name}/1.0/json`)).status).to.equal(404);
    const html = await (await fetch(`${proxy}/simple/${name}/`)).text();
    expect(html).to.not.contain(`${dist}-1.0`);
    const again = await runBanyanAsync(['releases', 'delete', name, '1.0'], { env });
    expect([again.status, again.stderr]).to.deep.equal([1, `banyan: ${name} has no release 1.0\n`]);

    const journal = await withClient(
      s.primaryUrl,
      async (c) =>
        (
          await c.query(
            "SELECT version, action, submitted_by FROM journal WHERE project_name = $1 AND action LIKE '%release' AND action <> 'new release' ORDER BY id",
            [name],
          )
        ).rows,
    );
    expect(journal.map((j: { version: string; action: string }) => `${j.action} ${j.version}`)).to.deep.equal([
      'yank release 2.0',
      'unyank release 2.0',
      'remove release 1.0',
    ]);
    expect(journal[0].submitted_by).to.equal(owner.username);
    expect(journal[1].submitted_by).to.match(/^operator \(/);
  });
});
