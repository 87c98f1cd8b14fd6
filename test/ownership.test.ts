import { expect } from 'chai';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_ROUTES_FILE, readRoutesFile, type TableSpec } from '../routing/table/index.js';
import { startBackends, type Backends } from '../stack/local-stack.js';
import { runBanyanAsync } from './support/cli.js';
import { basicAuth, buildDists, newUploader, uploadForm } from './support/packages.js';
import { setRoutes, TEST_SECRET } from './support/proxy.js';
import { services, tempDir, withClient } from './support/services.js';

/**
 * Ownership as Warehouse has it: no anonymous write, owners and maintainers,
 * project-scoped tokens that can be listed and revoked, every change of a
 * role or token journalled, and a limit on new projects per account.
 */
describe('ownership: no anonymous writes, roles, scoped tokens, and a limit on new projects', function () {
  this.timeout(120_000);
  let backends: Backends;
  let proxy: string;
  let work: string;
  let n = 0;
  const fresh = () => `own-${process.pid}-${++n}`;

  before(async () => {
    const s = await services();
    await setRoutes(s, readRoutesFile(DEFAULT_ROUTES_FILE) as TableSpec, 'ownership: shipped routes');
    work = tempDir('banyan-ownership-');
    backends = await startBackends(s, {
      adminToken: 't',
      secret: TEST_SECRET,
      redisUrl: s.redisUrl,
      storageDir: join(work, 'files'),
      projectsPerHour: 3,
    });
    proxy = backends.urls.proxy;
  });

  after(async () => {
    await backends?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  const banyan = async (...args: string[]) => runBanyanAsync(args, { env: { DATABASE_URL: (await services()).primaryUrl } });

  async function upload(name: string, version: string, auth: string) {
    const dir = join(work, `${name}-${version}-${++n}`);
    mkdirSync(dir);
    const [sdist] = await buildDists(dir, name, version, ['sdist']);
    const res = await fetch(`${proxy}/legacy/`, {
      method: 'POST',
      body: uploadForm(sdist!, { name, version }),
      headers: { authorization: auth },
    });
    return { status: res.status, reason: res.statusText, text: await res.text() };
  }

  async function roles(project: string): Promise<string[]> {
    return withClient((await services()).primaryUrl, async (c) =>
      (
        await c.query(
          `SELECT u.username || ':' || r.role AS x FROM project_roles r JOIN users u ON u.id = r.user_id JOIN projects p ON p.id = r.project_id
        WHERE p.normalized_name = $1 ORDER BY 1`,
          [project],
        )
      ).rows.map((r: { x: string }) => r.x),
    );
  }

  it('refuses to create a project without an account, in the new app and in legacy; an account becomes its owner', async () => {
    const s = await services();
    const name = fresh();
    const anonymous = await fetch(`${proxy}/manage/projects`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name }),
    });
    expect([anonymous.status, anonymous.headers.get('www-authenticate')]).to.deep.equal([401, 'Basic realm="banyan"']);
    expect(await anonymous.text()).to.contain('Log in to register a project');
    const wrong = await fetch(`${proxy}/manage/projects`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: basicAuth('__token__', 'banyan-nope') },
      body: JSON.stringify({ name }),
    });
    expect(wrong.status).to.equal(403);
    const legacy = await fetch(`${proxy}/pypi`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `:action=submit&name=${name}`,
    });
    expect(legacy.status).to.equal(401);
    expect(await roles(name), 'nothing was created').to.deep.equal([]);

    const alice = await newUploader(s.primaryUrl);
    const created = await fetch(`${proxy}/manage/projects`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: basicAuth('__token__', alice.token) },
      body: JSON.stringify({ name }),
    });
    expect(created.status).to.equal(201);
    expect(await created.json()).to.deep.include({ normalized_name: name, owner: alice.username });
    expect(await roles(name)).to.deep.equal([`${alice.username}:Owner`]);
  });

  it('limits new projects per account (BANYAN_PROJECTS_PER_HOUR), across both backends and uploads, with 429', async () => {
    const s = await services();
    const bob = await newUploader(s.primaryUrl);
    const auth = basicAuth('__token__', bob.token);
    const byApp = await fetch(`${proxy}/manage/projects`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: auth },
      body: JSON.stringify({ name: fresh() }),
    });
    const byLegacy = await fetch(`${proxy}/pypi`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: auth },
      body: `:action=submit&name=${fresh()}`,
    });
    const kept = fresh();
    const byUpload = await upload(kept, '1.0', auth);
    expect([byApp.status, byLegacy.status, byUpload.status]).to.deep.equal([201, 200, 200]);

    const fourth = await fetch(`${proxy}/manage/projects`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: auth },
      body: JSON.stringify({ name: fresh() }),
    });
    expect([fourth.status, fourth.headers.get('retry-after')]).to.deep.equal([429, '3600']);
    expect(await fourth.text()).to.contain('Too many new projects created: at most 3 an hour per account');
    expect(
      (
        await fetch(`${proxy}/pypi`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: auth },
          body: `:action=submit&name=${fresh()}`,
        })
      ).status,
    ).to.equal(429);
    const refused = await upload(fresh(), '1.0', auth);
    expect([refused.status, refused.reason]).to.deep.equal([
      429,
      'Too many new projects created: at most 3 an hour per account. Try again later.',
    ]);
    expect((await upload(kept, '1.1', auth)).status, 'uploads to an existing project go on').to.equal(200);
  });

  it('banyan projects: an owner adds a maintainer who may upload; the last owner cannot be removed; all of it journalled', async () => {
    const s = await services();
    const [alice, bob] = [await newUploader(s.primaryUrl), await newUploader(s.primaryUrl)];
    const name = fresh();
    expect((await upload(name, '1.0', basicAuth('__token__', alice.token))).status).to.equal(200);
    const before = await upload(name, '1.1', basicAuth('__token__', bob.token));
    expect([before.status, before.reason]).to.deep.equal([
      403,
      `The user '${bob.username}' isn't allowed to upload to project '${name}'. Ask an owner to add you.`,
    ]);

    const add = await banyan('projects', 'add-role', name, bob.username, '--role', 'maintainer');
    expect([add.status, add.stdout]).to.deep.equal([0, `${bob.username} is now Maintainer of ${name}.\n`]);
    expect((await upload(name, '1.1', basicAuth('__token__', bob.token))).status).to.equal(200);
    const listed = await banyan('projects', 'roles', name, '--json');
    expect(JSON.parse(listed.stdout)).to.deep.equal({
      project: name,
      roles: [
        { username: alice.username, role: 'Owner' },
        { username: bob.username, role: 'Maintainer' },
      ],
    });
    const table = await banyan('projects', 'roles', name);
    expect(table.stdout).to.match(new RegExp(`^user\\s+role\\n${alice.username}\\s+Owner\\n${bob.username}\\s+Maintainer\\n$`));

    const last = await banyan('projects', 'remove-role', name, alice.username);
    expect([last.status, last.stderr]).to.deep.equal([
      1,
      `banyan: ${alice.username} is the last owner of ${name}; a project always keeps one ` +
        `(make someone else an owner first: banyan projects add-role ${name} USER --role owner)\n`,
    ]);
    expect((await banyan('projects', 'add-role', name, bob.username, '--role', 'owner')).status).to.equal(0);
    expect((await banyan('projects', 'remove-role', name, alice.username)).status).to.equal(0);
    expect(await roles(name)).to.deep.equal([`${bob.username}:Owner`]);
    expect((await upload(name, '1.2', basicAuth('__token__', alice.token))).status, 'a removed owner may not upload').to.equal(403);

    const bad = await banyan('projects', 'add-role', name, alice.username, '--role', 'admin');
    expect([bad.status, bad.stderr]).to.deep.equal([
      2,
      'banyan: --role must be owner or maintainer, not "admin" (owners manage the project and its roles; maintainers upload)\n',
    ]);
    const journal = await withClient(
      s.primaryUrl,
      async (c) =>
        (await c.query('SELECT action, submitted_by FROM journal WHERE project_name = $1 AND version IS NULL ORDER BY id', [name])).rows,
    );
    expect(journal.map((j: { action: string }) => j.action)).to.deep.equal([
      'create',
      `add Maintainer ${bob.username}`,
      `remove Maintainer ${bob.username}`,
      `add Owner ${bob.username}`,
      `remove Owner ${alice.username}`,
    ]);
    expect(journal[1].submitted_by).to.match(/^operator \(/);
  });

  it('a project-scoped token uploads to its project only; tokens are listed and revoked, and that is recorded', async () => {
    const s = await services();
    const carol = await newUploader(s.primaryUrl);
    const [mine, other] = [fresh(), fresh()];
    expect((await upload(mine, '1.0', basicAuth('__token__', carol.token))).status).to.equal(200);
    expect((await upload(other, '1.0', basicAuth('__token__', carol.token))).status).to.equal(200);

    const created = await banyan('tokens', 'create', carol.username, '--project', mine, '--description', 'CI for mine', '--json');
    expect(created.status, created.stderr).to.equal(0);
    const { id, token, project } = JSON.parse(created.stdout) as { id: string; token: string; project: string };
    expect(project).to.equal(mine);
    const scoped = basicAuth('__token__', token);
    expect((await upload(mine, '1.1', scoped)).status).to.equal(200);
    const elsewhere = await upload(other, '1.1', scoped);
    expect([elsewhere.status, elsewhere.reason]).to.deep.equal([
      403,
      `Invalid API Token: this token is scoped to project '${mine}', not '${other}'.`,
    ]);
    const newProject = await upload(fresh(), '1.0', scoped);
    expect([newProject.status, newProject.reason]).to.deep.equal([
      403,
      `Invalid API Token: this token is scoped to project '${mine}' and cannot create a new project.`,
    ]);

    const list = JSON.parse((await banyan('tokens', 'list', carol.username, '--json')).stdout) as {
      id: string;
      project: string | null;
      description: string;
      lastUsedAt: string | null;
    }[];
    expect(list.map((t) => [t.project, t.description])).to.deep.equal([
      [null, 'tests'],
      [mine, 'CI for mine'],
    ]);
    expect(list[1]!.lastUsedAt, 'the scoped token was used').to.be.a('string');
    const table = await banyan('tokens', 'list', carol.username);
    expect(table.stdout).to.match(new RegExp(`^${id}\\s+project ${mine}\\s+CI for mine\\s+\\d{4}-`, 'm'));

    const revoked = await banyan('tokens', 'revoke', id);
    expect(revoked.stdout).to.equal(`Revoked token ${id} of ${carol.username} (project ${mine}); it stops working now.\n`);
    expect((await upload(mine, '1.2', scoped)).status, 'a revoked token is refused at once').to.equal(403);
    expect((await banyan('tokens', 'revoke', id)).status).to.equal(1);
    const strangerScope = await banyan('tokens', 'create', carol.username, '--project', 'no-such-project-here');
    expect([strangerScope.status, strangerScope.stderr]).to.deep.equal([
      1,
      'banyan: there is no project named "no-such-project-here" ' +
        '(a scoped token is for an existing project; upload once with an account token to create it)\n',
    ]);

    const events = await withClient(
      s.primaryUrl,
      async (c) =>
        (await c.query('SELECT action, project_name FROM account_events WHERE username = $1 ORDER BY id', [carol.username])).rows,
    );
    expect(events).to.deep.equal([
      { action: 'create token', project_name: null },
      { action: 'create token', project_name: mine },
      { action: 'revoke token', project_name: mine },
    ]);
  });
});
