import { expect } from 'chai';
import { startBackends, type Backends } from '../stack/local-stack.js';
import { DEFAULT_ROUTES_FILE, readRoutesFile, type TableSpec } from '../routing/table/index.js';
import { setRoutes } from './support/proxy.js';
import { services, waitForReplay, withClient } from './support/services.js';

describe('walking skeleton: proxy → legacy / new app, reads on the replica', () => {
  let backends: Backends;
  let proxy: string;

  before(async () => {
    const s = await services();
    // Other tests change the shared table; this one tests the shipped routes file.
    await setRoutes(s, readRoutesFile(DEFAULT_ROUTES_FILE) as TableSpec, 'walking skeleton: shipped routes');
    // Debug headers: which database server answered (X-Banyan-Read-From) is what these tests read.
    backends = await startBackends(s, { adminToken: 'test-token', debugHeaders: true });
    proxy = backends.urls.proxy;
    await withClient(s.primaryUrl, async (c) => {
      const p = (await c.query("INSERT INTO projects (name, normalized_name) VALUES ('Sample_Project', 'sample-project') RETURNING id"))
        .rows[0].id;
      const r = (
        await c.query(
          "INSERT INTO releases (project_id, version, canonical_version, summary) VALUES ($1, '1.0', '1', 'A sample') RETURNING id",
          [p],
        )
      ).rows[0].id;
      await c.query(
        `INSERT INTO files (release_id, filename, packagetype, python_version, requires_python, size, sha256_digest, path)
        VALUES ($1, 'sample_project-1.0.tar.gz', 'sdist', 'source', '>=3.8', 10, $2, 'ab/cd/sample_project-1.0.tar.gz')`,
        [r, 'a'.repeat(64)],
      );
    });
    await waitForReplay(s);
  });

  after(async () => {
    await backends?.stop();
    const s = await services();
    await withClient(s.primaryUrl, (c) => c.query("DELETE FROM projects WHERE normalized_name IN ('sample-project', 'fresh-project')"));
  });

  it('sends / to the legacy backend', async () => {
    const res = await fetch(`${proxy}/`);
    const body = await res.text();
    expect(res.status).to.equal(200);
    expect(body).to.contain('Legacy Package Index');
    expect(body).to.contain('Sample_Project 1.0');
  });

  it('sends a legacy project page to legacy', async () => {
    const res = await fetch(`${proxy}/pypi/sample-project`);
    expect(res.status).to.equal(200);
    expect(await res.text()).to.match(/<h1>Sample_Project( 1\.0)?<\/h1>/);
  });

  it('sends /simple/ to the new app, which lists projects in PEP 503 HTML', async () => {
    const res = await fetch(`${proxy}/simple/`);
    const body = await res.text();
    expect(res.status).to.equal(200);
    expect(res.headers.get('content-type')).to.equal('text/html; charset=utf-8');
    expect(body).to.contain('<meta name="pypi:repository-version" content="1.1">');
    expect(body).to.contain('<a href="/simple/sample-project/">Sample_Project</a>');
    expect(body).to.not.contain('Legacy Package Index');
  });

  it('serves a project page with digests and requires-python, escaped', async () => {
    const res = await fetch(`${proxy}/simple/sample-project/`);
    const body = await res.text();
    expect(res.status).to.equal(200);
    expect(body).to.contain(
      `<a href="/packages/ab/cd/sample_project-1.0.tar.gz#sha256=${'a'.repeat(64)}" data-requires-python="&gt;=3.8">sample_project-1.0.tar.gz</a>`,
    );
  });

  it('redirects non-normalized names and 404s unknown projects', async () => {
    const moved = await fetch(`${proxy}/simple/Sample.Project/`, { redirect: 'manual' });
    expect(moved.status).to.equal(301);
    expect(moved.headers.get('location')).to.equal('/simple/sample-project/');
    const missing = await fetch(`${proxy}/simple/no-such-project/`);
    expect(missing.status).to.equal(404);
    expect(await missing.text()).to.contain('no project named "no-such-project"');
  });

  it("runs the app's reads on the replica: a write the replica has not replayed is not visible", async () => {
    const s = await services();
    await withClient(s.replicaUrls[0]!, (c) => c.query('SELECT pg_wal_replay_pause()'));
    try {
      await withClient(s.primaryUrl, (c) =>
        c.query("INSERT INTO projects (name, normalized_name) VALUES ('fresh-project', 'fresh-project')"),
      );
      // Both backends read the replica, which is paused before the write.
      const legacy = await fetch(`${proxy}/pypi/fresh-project`);
      expect(legacy.status).to.equal(404);
      expect(legacy.headers.get('x-legacy-read-from')).to.equal('replica-1');
      const before = await fetch(`${proxy}/simple/fresh-project/`);
      expect(before.status).to.equal(404);
      expect(before.headers.get('x-banyan-read-from')).to.equal('replica-1');
    } finally {
      await withClient(s.replicaUrls[0]!, (c) => c.query('SELECT pg_wal_replay_resume()'));
    }
    await waitForReplay(s);
    const after = await fetch(`${proxy}/simple/fresh-project/`);
    expect(after.status).to.equal(200);
    expect(after.headers.get('x-banyan-read-from')).to.equal('replica-1');
  });

  it("the router's read connection really is a standby", async () => {
    const { sql } = await import('kysely');
    const handle = await backends.router.forRequest();
    const r = await sql<{ standby: boolean }>`SELECT pg_is_in_recovery() AS standby`.execute(handle.reader);
    expect(handle.readTarget).to.equal('replica-1');
    expect(r.rows[0]!.standby).to.equal(true);
    const w = await sql<{ standby: boolean }>`SELECT pg_is_in_recovery() AS standby`.execute(handle.writer);
    expect(w.rows[0]!.standby).to.equal(false);
  });

  it('the admin listener reports health, readiness and metrics per route', async () => {
    expect((await fetch(`${backends.urls.admin}/healthz`)).status).to.equal(200);
    const ready = await fetch(`${backends.urls.admin}/readyz`);
    expect(ready.status).to.equal(200);
    const body = (await ready.json()) as { status: string; checks: Record<string, { ok: boolean; detail: string; required: boolean }> };
    expect(body.status).to.equal('ready');
    expect(body.checks['legacy']).to.include({ ok: true, required: true });
    expect(body.checks['app']).to.include({ ok: true, required: false });
    expect(body.checks['app']!.detail).to.match(/^1 of 1 endpoints taking requests: http:\/\/127\.0\.0\.1:\d+ healthy, breaker closed/);
    expect(body.checks['routes']!.detail).to.match(/^route table version \d+, \d+ routes$/);
    const metrics = await (await fetch(`${backends.urls.admin}/metrics`)).text();
    expect(metrics).to.match(
      /banyan_http_requests_total\{route="simple.index",backend="new",service="app",method="GET",status_class="2xx"\} [1-9]/,
    );
    expect(metrics).to.match(
      /banyan_http_requests_total\{route="legacy.home",backend="legacy",service="legacy",method="GET",status_class="2xx"\} [1-9]/,
    );
  });
});
