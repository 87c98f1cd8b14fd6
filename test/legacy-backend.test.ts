import { expect } from 'chai';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startLegacyRuntime, type LegacyRuntime } from '../legacy/runtime.js';
import { buildDists, basicAuth, newUploader, run, uploadForm } from './support/packages.js';
import { services, tempDir, waitForReplay } from './support/services.js';

const TWINE = '/usr/bin/twine';
const QUIET_PIP = { PIP_DISABLE_PIP_VERSION_CHECK: '1', PIP_NO_CACHE_DIR: '1', PIP_NO_INPUT: '1' };

/**
 * The legacy backend on its own, as the old system it stands for: every
 * public route the new app serves, the real clients against it directly, and
 * read-your-writes through resource fences with the replica 2 s behind.
 */
describe('the legacy backend on its own: the complete old index', function () {
  this.timeout(120_000);
  let legacy: LegacyRuntime;
  let work: string;
  let uploader: { username: string; password: string; token: string };
  const name = `Old-Pkg-${process.pid}`;
  const normalized = name.toLowerCase().replace(/[-_.]+/g, '-');

  before(async () => {
    const s = await services();
    work = tempDir('banyan-legacy-');
    legacy = await startLegacyRuntime({
      primaryUrl: s.primaryUrl,
      replicaUrls: s.replicaUrls,
      redisUrl: s.redisUrl ?? undefined,
      storageDir: join(work, 'files'),
      host: '127.0.0.1',
      port: 0,
    });
    uploader = await newUploader(s.primaryUrl);
    await s.cluster.setReplicaDelay(2_000);
  });

  after(async () => {
    const s = await services();
    await s.cluster.setReplicaDelay(0);
    await waitForReplay(s, 10_000);
    await legacy?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  function twine(files: string[], token = uploader.token) {
    return run(
      TWINE,
      [
        'upload',
        '--non-interactive',
        '--disable-progress-bar',
        '--repository-url',
        `${legacy.url}/legacy/`,
        '-u',
        '__token__',
        '-p',
        token,
        ...files,
      ],
      { allowFailure: true, env: { HOME: work } },
    );
  }

  function xmlrpc(script: string) {
    return run('python3', ['-c', `import xmlrpc.client\np = xmlrpc.client.ServerProxy("${legacy.url}/pypi")\n${script}`], {
      allowFailure: true,
    });
  }

  it('takes twine uploads, and pip installs from it at once, with the replica 2 s behind', async () => {
    for (const version of ['1.0', '1.1']) {
      const dir = join(work, `dist-${version}`);
      mkdirSync(dir);
      const up = await twine(await buildDists(dir, name, version, ['py3-none-any', 'sdist']));
      expect(up.code, `${up.stdout}\n${up.stderr}`).to.equal(0);
      const target = join(work, `site-${version}`);
      const pip = await run(
        'python3',
        ['-m', 'pip', 'install', '--no-deps', '--index-url', `${legacy.url}/simple/`, '--target', target, `${name}==${version}`],
        { allowFailure: true, env: { ...QUIET_PIP, HOME: work } },
      );
      expect(pip.code, `${pip.stdout}\n${pip.stderr}`).to.equal(0);
      expect(readFileSync(join(target, name.replace(/-/g, '_'), '__init__.py'), 'utf8')).to.contain(version);
    }
  });

  it("answers XML-RPC package_releases with a release uploaded a moment ago (the project's fence)", async () => {
    const dir = join(work, 'dist-1.2');
    mkdirSync(dir);
    expect((await twine(await buildDists(dir, name, '1.2', ['py3-none-any']))).code).to.equal(0);
    const r = await xmlrpc(`print(p.package_releases("${name}", True))`);
    expect(r.stdout.trim(), r.stderr).to.equal("['1.2', '1.1', '1.0']");
  });

  it('serves every public route the new app serves, in its own way', async () => {
    const get = async (path: string, headers: Record<string, string> = {}) => {
      const res = await fetch(`${legacy.url}${path}`, { headers, redirect: 'manual' });
      return {
        status: res.status,
        type: res.headers.get('content-type') ?? '',
        location: res.headers.get('location'),
        text: await res.text(),
      };
    };
    const index = await get('/simple/');
    expect(index.status).to.equal(200);
    expect(index.text, index.text.slice(0, 600)).to.contain(`>${name}</a>`);
    const detail = await get(`/simple/${normalized}/`, { accept: 'application/vnd.pypi.simple.v1+json' });
    expect(detail.type, 'PEP 503 HTML only: it predates PEP 691').to.match(/^text\/html/);
    expect(detail.text).to.match(
      /href="\.\.\/\.\.\/packages\/[0-9a-f]{2}\/[0-9a-f]{2}\/[0-9a-f]{60}\/Old_Pkg_\d+-1\.0-py3-none-any\.whl#sha256=[0-9a-f]{64}"/,
    );
    expect(detail.text).to.not.contain('data-yanked');
    expect(await get(`/simple/${name.toUpperCase()}/`)).to.include({ status: 301, location: `/simple/${normalized}/` });
    expect(await get(`/simple/${normalized}`)).to.include({ status: 301, location: `/simple/${normalized}/` });
    const json = JSON.parse((await get(`/pypi/${name}/json`)).text) as {
      info: { version: string };
      releases: Record<string, unknown[]>;
      urls: { url: string }[];
      vulnerabilities?: unknown;
    };
    expect(json.info.version).to.equal('1.2');
    expect(Object.keys(json.releases).sort()).to.deep.equal(['1.0', '1.1', '1.2']);
    expect(json.vulnerabilities, 'the old JSON API has no newer fields').to.equal(undefined);
    const file = await fetch(`${legacy.url}${json.urls[0]!.url}`);
    expect(file.status).to.equal(200);
    expect(Number(file.headers.get('content-length'))).to.equal((await file.arrayBuffer()).byteLength);
    expect((await get(`/pypi/${name}/1.0/json`)).status).to.equal(200);
    for (const page of [`/project/${name}/`, `/pypi/${name}`, `/project/${name}/1.0/`, `/pypi?:action=display&name=${name}`]) {
      const p = await get(page);
      expect(p.status, page).to.equal(200);
      expect(p.text, page).to.contain('Legacy Package Index');
    }
    expect((await get('/pypi?:action=rss')).text, 'the feed is not a read of one project: it may lag, by the replica').to.contain(
      `<title>${name} 1.0</title>`,
    );
    for (const missing of [
      '/simple/no-such-project-x/',
      '/pypi/no-such-project-x/json',
      '/project/no-such-project-x/',
      '/packages/../../etc/passwd',
      '/packages/aa/bb/cc/x.whl',
    ]) {
      expect((await get(missing)).status, missing).to.equal(404);
    }
  });

  it('refuses uploads without credentials before reading them, and bad ones with a message in the status line', async () => {
    const dir = join(work, 'bad');
    mkdirSync(dir);
    const [wheel] = await buildDists(dir, name, '2.0', ['py3-none-any']);
    const post = (form: FormData, auth?: string) =>
      fetch(`${legacy.url}/legacy/`, { method: 'POST', body: form, headers: auth ? { authorization: auth } : {} });
    const anonymous = await post(uploadForm(wheel!, { name, version: '2.0' }));
    expect(anonymous.status).to.equal(401);
    const auth = basicAuth('__token__', uploader.token);
    const cases: [Record<string, string>, RegExp][] = [
      [{ sha256_digest: '0'.repeat(64) }, /does not match/],
      [{ version: 'not a version' }, /Invalid version/],
      [{ name: 'Other-Name' }, /does not match the project name/],
      [{ ':action': 'submit' }, /Unknown :action/],
    ];
    for (const [override, message] of cases) {
      const res = await post(uploadForm(wheel!, { name, version: '2.0' }, override), auth);
      expect(res.status, JSON.stringify(override)).to.equal(400);
      expect(res.statusText).to.match(message);
      await res.text();
    }
    const stranger = await newUploader((await services()).primaryUrl);
    const forbidden = await post(uploadForm(wheel!, { name, version: '2.0' }), basicAuth('__token__', stranger.token));
    expect(forbidden.status, 'only owners and maintainers upload').to.equal(403);
    expect(readdirSync(join(work, 'files', '.incoming')), 'no refused upload leaves a file behind').to.deep.equal([]);
  });

  it('refuses XML with a DOCTYPE (no entity expansion) and malformed calls with XML-RPC faults, and stays up', async () => {
    const call = (body: string) =>
      fetch(`${legacy.url}/pypi`, { method: 'POST', headers: { 'content-type': 'text/xml' }, body }).then((r) => r.text());
    const laughs =
      `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>` +
      '<methodCall><methodName>&lol2;</methodName></methodCall>';
    expect(await call(laughs)).to.match(/<int>-32700<\/int>[\s\S]*DOCTYPE/);
    expect(await call('<methodCall><methodName>list_packages</methodName>')).to.contain('<int>-32700</int>');
    expect(await call('<methodCall><methodName>no_such</methodName></methodCall>')).to.contain('<int>-32601</int>');
    expect(
      await call(
        '<methodCall><methodName>package_releases</methodName><params><param><value><int>x</int></value></param></params></methodCall>',
      ),
    ).to.contain('<int>-32602</int>');
    const escaped = await xmlrpc(`print(p.package_releases("${name.replace('-', '&')}"))`);
    expect(escaped.code, escaped.stderr).to.equal(0);
    expect(escaped.stdout.trim(), 'entities in strings are decoded, and the name then matches nothing').to.equal('[]');
    expect((await fetch(`${legacy.url}/simple/`)).status).to.equal(200);
  });

  it('bounds an XML-RPC search: at most 20 terms of 200 characters, or a fault', async () => {
    const terms = (n: number, length = 3) =>
      Array.from({ length: n }, (_, i) => `<value><string>${String(i).padStart(length, 'x')}</string></value>`).join('');
    const search = (values: string) =>
      fetch(`${legacy.url}/pypi`, {
        method: 'POST',
        headers: { 'content-type': 'text/xml' },
        body:
          `<methodCall><methodName>search</methodName><params><param><value><struct><member><name>name</name>` +
          `<value><array><data>${values}</data></array></value></member></struct></value></param></params></methodCall>`,
      }).then((r) => r.text());
    const many = await search(terms(5_000));
    expect(many).to.contain('<int>-32602</int>');
    expect(many).to.contain('search takes at most 20 terms in all');
    expect(await search(terms(1, 201))).to.contain('a search term may be at most 200 characters');
    expect(await search(terms(20))).to.not.contain('<fault>');
  });
});
