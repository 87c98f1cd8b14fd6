import { expect } from 'chai';
import type { ProxyRuntime } from '../proxy/runtime.js';
import { IMPLICIT_UPSTREAMS, type Route, type UpstreamSpec } from '../routing/table/index.js';
import { freePort } from '../stack/ports.js';
import { ADMIN_TOKEN, call, setRoutes, startTestProxy } from './support/proxy.js';
import { services } from './support/services.js';
import { fakeBackend, type FakeBackend } from './support/upstreams.js';
import { waitUntil } from './support/wait.js';

const base: Route[] = [
  { name: 'simple.index', match: { path: '/simple/' }, mode: 'legacy' },
  { name: 'docs', match: { path: '/docs/*' }, mode: 'legacy' },
];

async function api(proxy: ProxyRuntime, method: string, path: string, body?: unknown, token: string | null = ADMIN_TOKEN) {
  const res = await fetch(`${proxy.adminUrl}${path}`, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> & unknown[] };
}

describe('route changes: admin API, audit, rollback, propagation', () => {
  let legacy: FakeBackend;
  let app: FakeBackend;
  let proxy: ProxyRuntime;
  let start: number;

  before(async () => {
    const s = await services();
    legacy = await fakeBackend('legacy');
    app = await fakeBackend('new');
    start = await setRoutes(s, { upstreams: IMPLICIT_UPSTREAMS, routes: base }, 'route-admin tests start');
    proxy = await startTestProxy(s, legacy.url, app.url);
  });

  after(async () => {
    await proxy.stop();
    await legacy.close();
    await app.close();
  });

  it('requires the admin token, and is not reachable through the public port', async () => {
    expect((await api(proxy, 'GET', '/api/routes', undefined, null)).status).to.equal(401);
    const wrong = await api(proxy, 'GET', '/api/routes', undefined, 'nope');
    expect(wrong.status).to.equal(401);
    expect(wrong.json['message']).to.equal('missing or wrong admin token');
    const pub = await call(`${proxy.url}/api/routes`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(pub.backend, 'the public port forwards /api/routes like any path').to.equal('legacy');
  });

  it('shows the current table with its version and upstreams', async () => {
    const r = await api(proxy, 'GET', '/api/routes');
    expect(r.status).to.equal(200);
    expect(r.json['version']).to.equal(start);
    expect(r.json['routes']).to.deep.equal(base);
    expect(r.json['upstreams']).to.deep.equal(IMPLICIT_UPSTREAMS);
  });

  it('rejects a bad table whole, naming route and field, and keeps the running one', async () => {
    const bad = await api(proxy, 'PUT', '/api/routes', {
      routes: [...base, { name: 'x', match: { path: '/x' }, mode: 'canary' }],
      reason: 'try',
    });
    expect(bad.status).to.equal(422);
    expect(bad.json['message']).to.contain('route 3 "x": percent: canary needs a percent from 0 to 100');
    expect(proxy.routes.current.version).to.equal(start);
    expect((await api(proxy, 'PUT', '/api/routes', '{not json')).status).to.equal(400);
    const noReason = await api(proxy, 'PUT', '/api/routes', { routes: base });
    expect(noReason.status).to.equal(422);
    expect(noReason.json['message']).to.equal('a change needs a reason, for the audit log');
  });

  it('dry-run shows what a change would do and changes nothing', async () => {
    const r = await api(proxy, 'PUT', '/api/routes', { routes: [{ ...base[0]!, mode: 'new' }, base[1]], reason: 'x', dryRun: true });
    expect(r.json).to.deep.equal({ dryRun: true, valid: true, version: start, changes: ['change  simple.index: legacy → new'] });
    expect((await api(proxy, 'GET', '/api/routes')).json['version']).to.equal(start);
  });

  it('applies a change at once, audits it, and rolls back with one call', async () => {
    const moved = await api(proxy, 'PUT', '/api/routes', {
      routes: [{ ...base[0]!, mode: 'new' }, base[1]],
      reason: 'cut over the index',
      actor: 'alice',
      expectedVersion: start,
    });
    expect(moved.status).to.equal(200);
    expect(moved.json['version']).to.equal(start + 1);
    expect((await call(`${proxy.url}/simple/`)).backend).to.equal('new');

    const stale = await api(proxy, 'PUT', '/api/routes', { routes: base, reason: 'late', expectedVersion: start });
    expect(stale.status).to.equal(409);

    const history = await api(proxy, 'GET', '/api/routes/history?limit=2');
    expect(history.json[0]).to.deep.include({
      version: start + 1,
      action: 'set',
      actor: 'alice (admin API)',
      reason: 'cut over the index',
      changes: ['change  simple.index: legacy → new'],
    });

    const back = await api(proxy, 'POST', '/api/routes/rollback', { version: start, reason: 'errors in the new index' });
    expect(back.json).to.deep.equal({ version: start + 2, restored: start });
    expect((await call(`${proxy.url}/simple/`)).backend).to.equal('legacy');
    const after = await api(proxy, 'GET', '/api/routes/history?limit=1');
    expect(after.json[0]).to.deep.include({ action: `rollback to ${start}`, reason: 'errors in the new index' });
    const missing = await api(proxy, 'POST', '/api/routes/rollback', { version: 99_999, reason: 'x' });
    expect(missing.status).to.equal(404);
  });

  it('a change made through one proxy is in effect on another within 1 s (Redis pub/sub)', async () => {
    const s = await services();
    const other = await startTestProxy(s, legacy.url, app.url, { pollMs: 60_000 });
    try {
      const current = (await api(proxy, 'GET', '/api/routes')).json['version'] as number;
      expect(other.routes.current.version).to.equal(current);
      await api(proxy, 'PUT', '/api/routes', { routes: [base[0], { ...base[1]!, mode: 'new' }], reason: 'docs to new' });
      await waitUntil('the other proxy sees the change', async () => (await call(`${other.url}/docs/a`)).backend === 'new', 1_000);
    } finally {
      await other.stop();
    }
  });

  it('without Redis, a change still arrives within the poll interval', async () => {
    const s = await services();
    const deaf = await startTestProxy(s, legacy.url, app.url, { redisUrl: `redis://127.0.0.1:${await freePort()}`, pollMs: 300 });
    try {
      await api(proxy, 'PUT', '/api/routes', { routes: base, reason: 'docs back to legacy' });
      await waitUntil('the polling proxy sees the change', async () => (await call(`${deaf.url}/docs/a`)).backend === 'legacy', 1_500);
    } finally {
      await deaf.stop();
    }
  });

  it('flipping a route 50 times under load fails no request', async () => {
    let stop = false;
    const statuses: number[] = [];
    const loop = async () => {
      while (!stop) {
        const res = await fetch(`${proxy.url}/docs/page`);
        await res.arrayBuffer();
        statuses.push(res.status);
      }
    };
    const loops = Array.from({ length: 8 }, loop);
    for (let i = 0; i < 50; i++) {
      await api(proxy, 'PUT', '/api/routes', {
        routes: [base[0], { ...base[1]!, mode: i % 2 === 0 ? 'new' : 'legacy' }],
        reason: `flip ${i}`,
      });
      await new Promise((r) => setTimeout(r, 10));
    }
    stop = true;
    await Promise.all(loops);
    expect(statuses.length).to.be.greaterThan(200);
    expect(statuses.filter((s) => s !== 200)).to.deep.equal([]);
    expect(app.seen.some((r) => r.path === '/docs/page') && legacy.seen.some((r) => r.path === '/docs/page')).to.equal(true);
  });

  it('takes upstreams with the routes (keeping the current ones when absent), and a service for one route', async () => {
    const files: UpstreamSpec = { name: 'files', env: 'FILES_URL', health: { path: '/_health' } };
    const upstreams = [...IMPLICIT_UPSTREAMS, files];
    const dry = await api(proxy, 'PUT', '/api/routes', { upstreams, routes: base, reason: 'x', dryRun: true });
    expect(dry.json).to.deep.include({ dryRun: true, valid: true, changes: ['add     upstream files: env FILES_URL'] });
    const refused = await api(proxy, 'PUT', '/api/routes', {
      routes: [base[0], { ...base[1]!, service: 'files' }],
      reason: 'files not there yet',
    });
    expect(refused.status).to.equal(422);
    expect(refused.json['message']).to.contain('route 2 "docs": service: no upstream named "files" (upstreams: legacy, app)');
    const added = await api(proxy, 'PUT', '/api/routes', { upstreams, routes: base, reason: 'a files service' });
    expect(added.status, JSON.stringify(added.json)).to.equal(200);
    expect(added.json['changes']).to.deep.equal(['add     upstream files: env FILES_URL']);
    const kept = await api(proxy, 'PUT', '/api/routes', { routes: base, reason: 'routes only' });
    expect(kept.status).to.equal(200);
    expect((await api(proxy, 'GET', '/api/routes')).json['upstreams'], 'no upstreams given: kept').to.deep.equal(upstreams);

    const unknown = await api(proxy, 'POST', '/api/routes/docs/mode', { mode: 'legacy', service: 'filez', reason: 'typo' });
    expect(unknown.status).to.equal(422);
    expect(unknown.json['message']).to.contain('route 2 "docs": service: no upstream named "filez" (upstreams: legacy, app, files)');
    const moved = await api(proxy, 'POST', '/api/routes/docs/mode', { mode: 'legacy', service: 'files', reason: 'the docs will be files' });
    expect(moved.status, JSON.stringify(moved.json)).to.equal(200);
    expect(moved.json['changes']).to.deep.equal(['change  docs: legacy (service changed)']);
    const table = (await api(proxy, 'GET', '/api/routes')).json as unknown as { routes: Route[] };
    expect(table.routes.find((r) => r.name === 'docs')).to.deep.include({ mode: 'legacy', service: 'files' });
    const again = await api(proxy, 'POST', '/api/routes/docs/mode', { mode: 'new', reason: 'forward' });
    expect(again.json['changes'], 'the service is kept').to.deep.equal(['change  docs: legacy → new → files']);

    const back = await api(proxy, 'PUT', '/api/routes', { upstreams: IMPLICIT_UPSTREAMS, routes: base, reason: 'no files service' });
    expect(back.json['changes']).to.deep.equal(['remove  upstream files', 'change  docs: new → files → legacy']);
  });
});

describe('route changes when the database cannot take writes', () => {
  it('answers 503 with Retry-After, saying what to do, when the server written to is a standby (a failover under way)', async () => {
    const s = await services();
    const legacy = await fakeBackend('legacy');
    const app = await fakeBackend('new');
    // The replica, as the proxy's primary: as right after a promotion elsewhere, every write is refused read-only.
    const proxy = await startTestProxy(s, legacy.url, app.url, { databaseUrl: s.replicaUrls[0]! });
    try {
      const r = await api(proxy, 'PUT', '/api/routes', { routes: base, reason: 'during a failover' });
      expect(r.status).to.equal(503);
      expect(r.json['error']).to.equal('database-unavailable');
      expect(String(r.json['message'])).to.match(/^the route table cannot be written now: .*read-only/);
      expect(r.json['hint']).to.equal('PostgreSQL is down or failing over; retry in a few seconds (nothing was changed)');
      const res = await fetch(`${proxy.adminUrl}/api/routes`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ routes: base, reason: 'again' }),
      });
      expect(res.headers.get('retry-after')).to.equal('2');
    } finally {
      await proxy.stop();
      await legacy.close();
      await app.close();
    }
  });
});
