import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Pool } from 'undici';
import { UsageLedger, type UsageEvent } from '../metrics/usage.js';
import type { ProxyRuntime } from '../proxy/runtime.js';
import { connect } from '../lib/database.js';
import type { Route } from '../routing/table/index.js';
import { runBanyanAsync } from './support/cli.js';
import { promtoolProblems } from './support/promtool.js';
import { setRoutes, startTestProxy } from './support/proxy.js';
import { services, tempDir, withClient } from './support/services.js';
import { fakeBackend, type FakeBackend } from './support/upstreams.js';

const ROUTES: Route[] = [
  { name: 'new.home', match: { path: '/new/', methods: ['GET'] }, mode: 'new' },
  { name: 'legacy.xmlrpc', match: { path: '/pypi', methods: ['POST'] }, mode: 'legacy', features: [{ xmlrpc: true }, { form: ':action' }] },
  { name: 'legacy.pypi', match: { path: '/pypi' }, mode: 'legacy', features: [{ query: ':action' }] },
  { name: 'legacy.never', match: { path: '/never-used' }, mode: 'legacy' },
  { name: 'legacy.ancient', match: { path: '/ancient' }, mode: 'legacy' },
  { name: 'gone', match: { path: '/gone' }, mode: 'retired', retired: { status: 410, message: 'Use /new/.' } },
];

/**
 * Bytes still reachable after a full collection. RSS is not a measure of a leak: the allocator keeps freed pages
 * and the collector grows its heap lazily, so RSS moves by tens of MB with nothing retained.
 */
/** Requests a ledger counted and has not written yet, as the dashboard sees them. */
function unflushed(ledger: UsageLedger): number {
  let n = 0;
  for (const { backends } of ledger.unflushedByRoute(0).values()) for (const count of Object.values(backends)) n += count;
  return n;
}

function retainedHeap(): number {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

/** Series of one metric family in a /metrics text, as `{labels} value` lines. */
function series(text: string, name: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
}

function xmlrpcCall(method: string, padding = ''): string {
  return `<?xml version="1.0"?><methodCall><methodName>${method}</methodName><params>${padding}</params></methodCall>`;
}

describe('usage metrics: route series, legacy features, unmatched paths, the usage ledger', () => {
  let legacy: FakeBackend;
  let app: FakeBackend;
  let runtime: ProxyRuntime;
  const bodies: string[] = [];

  before(async () => {
    const s = await services();
    await setRoutes(s, ROUTES, 'usage metrics tests');
    legacy = await fakeBackend('legacy');
    app = await fakeBackend('new');
    // Legacy records the SHA-256 of every POST body it receives.
    legacy.answer('/pypi', (req, res) => {
      const hash = createHash('sha256');
      req.on('data', (d: Buffer) => hash.update(d));
      req.on('end', () => {
        bodies.push(hash.digest('hex'));
        res.writeHead(200, { 'content-type': 'text/xml' });
        res.end('<methodResponse/>');
      });
    });
    runtime = await startTestProxy(s, legacy.url, app.url, { pollMs: 200 });
  });

  after(async () => {
    await runtime?.stop();
    await legacy?.close();
    await app?.close();
  });

  const metricsText = async () => (await fetch(`${runtime.adminUrl}/metrics`)).text();

  it('pre-zeroes every configured route, so a route nobody used shows 0', async () => {
    const text = await metricsText();
    expect(text).to.contain(
      'banyan_http_requests_total{route="legacy.never",backend="legacy",service="legacy",method="GET",status_class="2xx"} 0',
    );
    expect(text).to.contain('banyan_http_requests_total{route="new.home",backend="new",service="app",method="GET",status_class="2xx"} 0');
    expect(text).to.contain('banyan_http_requests_total{route="gone",backend="proxy",service="proxy",method="GET",status_class="2xx"} 0');
    expect(text).to.contain('banyan_route_last_request_timestamp_seconds{route="legacy.never"} 0');
  });

  it('counts legacy features from the query string, XML-RPC bodies and form fields; bodies arrive unchanged', async () => {
    await (await fetch(`${runtime.url}/pypi?:action=rss`)).text();
    await (await fetch(`${runtime.url}/pypi?%3Aaction=rss&x=1`)).text();
    const sent: string[] = [];
    for (const body of [xmlrpcCall('list_packages'), xmlrpcCall('package_releases', 'x'.repeat(200_000)), xmlrpcCall('changelog')]) {
      sent.push(createHash('sha256').update(body).digest('hex'));
      const res = await fetch(`${runtime.url}/pypi`, {
        method: 'POST',
        headers: { 'content-type': 'text/xml', 'user-agent': 'Python-xmlrpc/3.11' },
        body,
      });
      expect(res.status).to.equal(200);
      await res.text();
    }
    // A large body whose method name comes after the first 64 KiB: forwarded whole, counted as no feature.
    const late = `<?xml version="1.0"?><!--${'z'.repeat(70_000)}--><methodCall><methodName>search</methodName></methodCall>`;
    sent.push(createHash('sha256').update(late).digest('hex'));
    await (await fetch(`${runtime.url}/pypi`, { method: 'POST', headers: { 'content-type': 'text/xml' }, body: late })).text();
    const form = new FormData();
    form.append(':action', 'file_upload');
    form.append('content', new Blob([randomBytes(300_000)]), 'x.tar.gz');
    const multipart = new Request(`${runtime.url}/pypi`, { method: 'POST', body: form });
    const raw = Buffer.from(await multipart.arrayBuffer());
    sent.push(createHash('sha256').update(raw).digest('hex'));
    await (
      await fetch(`${runtime.url}/pypi`, { method: 'POST', headers: { 'content-type': multipart.headers.get('content-type')! }, body: raw })
    ).text();
    const urlencoded = ':action=submit&name=foo';
    sent.push(createHash('sha256').update(urlencoded).digest('hex'));
    await (
      await fetch(`${runtime.url}/pypi`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: urlencoded,
      })
    ).text();

    expect(bodies.slice(-sent.length), 'every body reached legacy byte for byte').to.deep.equal(sent);
    const text = await metricsText();
    expect(series(text, 'banyan_legacy_feature_requests_total').sort()).to.deep.equal([
      'banyan_legacy_feature_requests_total{feature="action.file_upload"} 1',
      'banyan_legacy_feature_requests_total{feature="action.rss"} 2',
      'banyan_legacy_feature_requests_total{feature="action.submit"} 1',
      'banyan_legacy_feature_requests_total{feature="xmlrpc.changelog"} 1',
      'banyan_legacy_feature_requests_total{feature="xmlrpc.list_packages"} 1',
      'banyan_legacy_feature_requests_total{feature="xmlrpc.package_releases"} 1',
    ]);
  });

  it('keeps unmatched paths to a bounded number of series over 100,000 random URLs, with stable memory', async function () {
    this.timeout(180_000);
    const pool = new Pool(runtime.url, { connections: 32 });
    const send = async (count: number) => {
      let next = 0;
      await Promise.all(
        Array.from({ length: 32 }, async () => {
          while (next++ < count) {
            const path = `/${randomBytes(3).toString('hex')}/${Math.floor(Math.random() * 1e6)}/${randomBytes(20).toString('hex')}/v${Math.random().toString(36).slice(2, 8)}`;
            const res = await pool.request({ path, method: 'GET' });
            await res.body.dump();
            // The fake backend keeps what it saw; this test's own memory is not the proxy's.
            if (legacy.seen.length > 1_000) legacy.seen.length = 0;
          }
        }),
      );
    };
    try {
      await send(20_000);
      const warm = retainedHeap();
      await send(80_000);
      const grown = retainedHeap() - warm;
      const text = await metricsText();
      const unmatched = series(text, 'banyan_unmatched_requests_total');
      expect(unmatched.length, 'at most 200 normalized paths plus "other"').to.be.at.most(201);
      expect(unmatched.find((l) => l.startsWith('banyan_unmatched_requests_total{path="other"}'))).to.match(/ \d{5,}$/);
      // Keeping each URL would retain well over 100 bytes apiece: 8 MB or more for 80,000.
      expect(grown, `the heap kept ${(grown / 1e6).toFixed(1)} MB more after 80,000 more URLs`).to.be.below(4 * 1024 * 1024);
    } finally {
      await pool.close();
    }
  });

  it("passes promtool check metrics (the proxy's /metrics)", async function () {
    expect(await promtoolProblems(this, await metricsText())).to.equal('');
  });

  describe('the usage ledger', () => {
    it('flushes counts per hour, route, feature and backend with user agents, and counts a retried batch once', async () => {
      const s = await services();
      const db = connect(s.primaryUrl, { max: 2, schema: 'banyan' });
      try {
        const ledger = new UsageLedger({ db, instance: 'test-a' });
        const at = Date.parse('2026-01-05T10:20:00Z');
        for (let i = 0; i < 5; i++)
          ledger.record({
            route: 'ledger.route',
            backend: 'legacy',
            service: 'legacy',
            status: 200,
            features: ['xmlrpc.search'],
            userAgent: 'pip/23',
            at,
          });
        ledger.record({
          route: 'ledger.route',
          backend: 'legacy',
          service: 'legacy',
          status: 200,
          features: [],
          userAgent: 'curl/8',
          at: at + 60_000,
        });
        await ledger.flush();
        expect(unflushed(ledger)).to.equal(0);
        const rows = await withClient(
          s.primaryUrl,
          async (c) =>
            (
              await c.query(
                "SELECT bucket, feature, backend, requests::int AS n, last_seen FROM banyan.usage_ledger WHERE route = 'ledger.route' ORDER BY feature",
              )
            ).rows,
        );
        expect(rows.map((r) => [r.bucket.toISOString(), r.feature, r.backend, r.n])).to.deep.equal([
          ['2026-01-05T10:00:00.000Z', '', 'legacy', 6],
          ['2026-01-05T10:00:00.000Z', 'xmlrpc.search', 'legacy', 5],
        ]);
        expect(rows[0].last_seen.toISOString()).to.equal('2026-01-05T10:21:00.000Z');
        const agents = await withClient(
          s.primaryUrl,
          async (c) =>
            (
              await c.query(
                "SELECT feature, user_agent, requests::int AS n FROM banyan.usage_user_agents WHERE route = 'ledger.route' ORDER BY feature, user_agent",
              )
            ).rows,
        );
        expect(agents).to.deep.equal([
          { feature: '', user_agent: 'curl/8', n: 1 },
          { feature: '', user_agent: 'pip/23', n: 5 },
          { feature: 'xmlrpc.search', user_agent: 'pip/23', n: 5 },
        ]);

        // A spooled batch replayed twice (a retry after a commit whose answer was lost, or two proxies sharing the
        // spool folder) adds its counts once. The spool file is the ledger's on-disk format, written as a stopped proxy writes it.
        const spool = mkdtempSync(join(tmpdir(), 'banyan-spool-'));
        const bucket = at - (at % 3_600_000);
        const spooled = JSON.stringify({
          id: `retry-${process.pid}`,
          counts: [[`${bucket}\u0000ledger.route\u0000\u0000legacy\u00002xx`, { requests: 10, lastSeen: at }]],
          agents: [],
        });
        writeFileSync(join(spool, 'a.json'), spooled);
        const replayer = new UsageLedger({ db, instance: 'test-a', spoolDir: spool });
        await replayer.replaySpool();
        writeFileSync(join(spool, 'a-again.json'), spooled);
        await replayer.replaySpool();
        expect(readdirSync(spool), 'both files were consumed').to.deep.equal([]);
        const total = await withClient(
          s.primaryUrl,
          async (c) =>
            (
              await c.query(
                "SELECT requests::int AS n FROM banyan.usage_ledger WHERE route = 'ledger.route' AND feature = '' AND status_class = '2xx'",
              )
            ).rows[0].n,
        );
        expect(total).to.equal(16);
        // A batch spooled by a proxy from before status classes (four-part keys) still lands, as `unknown`.
        writeFileSync(
          join(spool, 'old.json'),
          JSON.stringify({
            id: `old-${process.pid}`,
            counts: [[`${bucket}\u0000ledger.route\u0000\u0000legacy`, { requests: 2, lastSeen: at }]],
            agents: [],
          }),
        );
        await replayer.replaySpool();
        expect(
          await withClient(
            s.primaryUrl,
            async (c) =>
              (
                await c.query(
                  "SELECT status_class, requests::int AS n FROM banyan.usage_ledger WHERE route = 'ledger.route' AND feature = '' ORDER BY 1",
                )
              ).rows,
          ),
        ).to.deep.equal([
          { status_class: '2xx', n: 16 },
          { status_class: 'unknown', n: 2 },
        ]);
        rmSync(spool, { recursive: true, force: true });
      } finally {
        await db.destroy();
      }
    });

    it('adds up counts from several proxies, and keeps counts it could not flush for the next flush', async () => {
      const s = await services();
      const db = connect(s.primaryUrl, { max: 2, schema: 'banyan' });
      const results: string[] = [];
      // A relay in front of PostgreSQL that can be cut: the ledger's database goes away and comes back.
      const relay = await import('node:net').then(({ createServer, connect: dial }) => {
        let open = true;
        const target = new URL(s.primaryUrl);
        const server = createServer((socket) => {
          if (!open) return socket.destroy();
          const upstream = dial(Number(target.port), target.hostname);
          socket.pipe(upstream).pipe(socket);
          socket.on('error', () => upstream.destroy());
          upstream.on('error', () => socket.destroy());
        });
        return new Promise<{ port: number; set(v: boolean): void; close(): void }>((resolve) =>
          server.listen(0, '127.0.0.1', () =>
            resolve({
              port: (server.address() as { port: number }).port,
              set: (v) => {
                open = v;
              },
              close: () => server.close(),
            }),
          ),
        );
      });
      const relayed = new URL(s.primaryUrl);
      relayed.port = String(relay.port);
      const flaky = connect(relayed.toString(), { max: 1, schema: 'banyan' });
      try {
        const a = new UsageLedger({ db, instance: 'a' });
        const b = new UsageLedger({ db: flaky, instance: 'b', onFlush: (r) => results.push(r) });
        const at = Date.parse('2026-02-01T08:00:00Z');
        for (let i = 0; i < 7; i++)
          a.record({ route: 'ledger.multi', backend: 'legacy', service: 'legacy', status: 200, features: [], userAgent: 'x', at });
        for (let i = 0; i < 5; i++)
          b.record({ route: 'ledger.multi', backend: 'legacy', service: 'legacy', status: 200, features: [], userAgent: 'x', at });
        relay.set(false);
        await a.flush();
        await b.flush();
        expect(results).to.deep.equal(['failed']);
        expect(unflushed(b), 'nothing is lost when a flush fails').to.equal(5);
        b.record({ route: 'ledger.multi', backend: 'legacy', service: 'legacy', status: 200, features: [], userAgent: 'x', at });
        relay.set(true);
        await b.stop();
        expect(results).to.deep.equal(['failed', 'ok', 'ok']);
        const total = await withClient(
          s.primaryUrl,
          async (c) =>
            (await c.query("SELECT requests::int AS n FROM banyan.usage_ledger WHERE route = 'ledger.multi' AND feature = ''")).rows[0].n,
        );
        expect(total).to.equal(13);
      } finally {
        relay.close();
        await flaky.destroy();
        await db.destroy();
      }
    });

    it('spools the last counts when PostgreSQL is unreachable at stop, and the next start adds them once', async () => {
      const s = await services();
      const spool = tempDir('banyan-spool-');
      const dead = connect('postgres://banyan:x@127.0.0.1:1/banyan', { max: 1, schema: 'banyan' });
      const db = connect(s.primaryUrl, { max: 2, schema: 'banyan' });
      const lines: string[] = [];
      try {
        const stopping = new UsageLedger({ db: dead, instance: 'spool-a', spoolDir: spool, log: (l) => lines.push(l) });
        const at = Date.parse('2026-03-01T08:00:00Z');
        for (let i = 0; i < 9; i++)
          stopping.record({
            route: 'ledger.spooled',
            backend: 'legacy',
            service: 'legacy',
            status: 200,
            features: ['action.rss'],
            userAgent: 'spool-test/1',
            at,
          });
        await stopping.stop();
        expect(
          readdirSync(spool).filter((f) => f.endsWith('.json')),
          'the counts are on disk',
        ).to.have.length(1);
        expect(lines.join('\n')).to.contain('spooled them to');
        for (const instance of ['spool-b', 'spool-c']) {
          const next = new UsageLedger({ db, instance, spoolDir: spool, flushMs: 3_600_000 });
          await next.start();
          await next.stop();
        }
        expect(readdirSync(spool)).to.deep.equal([]);
        const rows = await withClient(
          s.primaryUrl,
          async (c) =>
            (await c.query("SELECT feature, requests::int AS n FROM banyan.usage_ledger WHERE route = 'ledger.spooled' ORDER BY feature"))
              .rows,
        );
        expect(rows, 'added once, though two proxies started after it').to.deep.equal([
          { feature: '', n: 9 },
          { feature: 'action.rss', n: 9 },
        ]);
      } finally {
        await dead.destroy();
        await db.destroy();
        rmSync(spool, { recursive: true, force: true });
      }
    });

    it('the proxy flushes what it served into the ledger when it stops', async () => {
      const s = await services();
      const proxy = await startTestProxy(s, legacy.url, app.url, { pollMs: 200 });
      const before = await withClient(s.primaryUrl, async (c) =>
        Number((await c.query("SELECT coalesce(sum(requests), 0) AS n FROM banyan.usage_ledger WHERE route = 'legacy.never'")).rows[0].n),
      );
      for (let i = 0; i < 3; i++) await (await fetch(`${proxy.url}/never-used`, { headers: { 'user-agent': 'ledger-test/1' } })).text();
      await proxy.stop();
      const after = await withClient(s.primaryUrl, async (c) =>
        Number((await c.query("SELECT coalesce(sum(requests), 0) AS n FROM banyan.usage_ledger WHERE route = 'legacy.never'")).rows[0].n),
      );
      expect(after - before).to.equal(3);
    });

    it('banyan report usage lists legacy routes and features with share, last use and user agents, new-app routes apart, and candidates', async function () {
      this.timeout(60_000);
      const s = await services();
      const db = connect(s.primaryUrl, { max: 2, schema: 'banyan' });
      const day = 86_400_000;
      try {
        const ledger = new UsageLedger({ db, instance: 'report-test' });
        const recent = Date.now() - 2 * day;
        // `times` requests, answered by legacy with 200 two days ago unless the event says otherwise.
        const seen = (times: number, e: Pick<UsageEvent, 'route' | 'userAgent'> & Partial<UsageEvent>) => {
          for (let i = 0; i < times; i++)
            ledger.record({ backend: 'legacy', service: 'legacy', status: 200, features: [], at: recent, ...e });
        };
        seen(4, { route: 'legacy.xmlrpc', features: ['xmlrpc.search'], userAgent: 'Python-xmlrpc/3.11' });
        seen(1, { route: 'legacy.xmlrpc', userAgent: 'curl/8' });
        seen(1, {
          route: 'legacy.xmlrpc',
          features: ['xmlrpc.report_test_only_old'],
          userAgent: 'old-mirror/0.1',
          at: Date.now() - 40 * day,
        });
        seen(3, { route: 'new.home', backend: 'new', service: 'app', userAgent: 'Mozilla/5.0' });
        // A scanner's 404s on a legacy route are not use; a client that gave up (499) and a 5xx are.
        seen(50, { route: 'legacy.ancient', status: 404, userAgent: 'scanner/1' });
        seen(1, { route: 'report.mixed', status: 499, userAgent: 'impatient/1' });
        seen(1, { route: 'report.mixed', status: 502, userAgent: 'curl/8' });
        seen(1, { route: 'report.mixed', backend: 'new', service: 'app', userAgent: 'curl/8' });
        seen(1, { route: 'report.mixed', status: 404, userAgent: 'scanner/1' });
        await ledger.flush();
      } finally {
        await db.destroy();
      }
      const env = { DATABASE_URL: s.primaryUrl };
      const json = await runBanyanAsync(['report', 'usage', '--since', '30d', '--unused', '7d', '--json'], { env });
      expect(json.status, json.stderr).to.equal(0);
      type Line = {
        route: string;
        feature: string;
        requests: number;
        use: number;
        share: number;
        topUserAgents: { userAgent: string }[];
        backends: Record<string, number>;
        statuses: Record<string, number>;
        lastUsed: string | null;
        lastSeen: string | null;
      };
      const r = JSON.parse(json.stdout) as {
        legacy: Line[];
        new: Line[];
        candidates: { route: string; feature: string; lastUsed: string | null }[];
        totalRequests: number;
        totalUse: number;
      };
      const search = r.legacy.find((l) => l.route === 'legacy.xmlrpc' && l.feature === 'xmlrpc.search')!;
      expect(search.requests).to.be.at.least(4);
      expect(search.topUserAgents[0]!.userAgent).to.equal('Python-xmlrpc/3.11');
      expect(search.share).to.be.above(0).and.at.most(1);
      expect(
        r.legacy.find((l) => l.feature === 'xmlrpc.report_test_only_old'),
        'last used 40 days ago: outside the window',
      ).to.equal(undefined);
      expect(r.new.map((l) => l.route)).to.include('new.home');
      expect(r.legacy.map((l) => l.route)).to.not.include('new.home');
      expect(r.candidates, 'fifty 404s are not use').to.deep.include({
        route: 'legacy.ancient',
        feature: '',
        lastUsed: null,
        mode: 'legacy',
      });
      const ancient = r.legacy.find((l) => l.route === 'legacy.ancient' && l.feature === '')!;
      expect([ancient.requests, ancient.use, ancient.statuses, ancient.share]).to.deep.equal([50, 0, { '4xx': 50 }, 0]);
      expect(ancient.lastSeen).to.be.a('string');
      const mixed = r.legacy.find((l) => l.route === 'report.mixed' && l.feature === '')!;
      expect(mixed.statuses).to.deep.equal({ aborted: 1, '5xx': 1, '2xx': 1, '4xx': 1 });
      expect([mixed.requests, mixed.use], 'aborted and 5xx requests are use; the 404 is not').to.deep.equal([4, 3]);
      expect(mixed.backends, 'each backend apart').to.deep.equal({ legacy: 3, new: 1 });
      expect(r.totalRequests - r.totalUse).to.be.at.least(50);
      expect(r.candidates.find((c) => c.feature === 'xmlrpc.report_test_only_old')?.lastUsed).to.be.a('string');
      expect(r.candidates.map((c) => c.route)).to.not.include('new.home');

      const text = await runBanyanAsync(['report', 'usage', '--since', '30d', '--unused', '7d'], { env });
      expect(text.status).to.equal(0);
      expect(text.stdout).to.match(
        /^Legacy routes and features in use\nroute \/ feature\s+use\s+share\s+4xx\s+5xx\s+by service\s+last used\s+top user agents$/m,
      );
      expect(text.stdout).to.match(
        /^ {2}xmlrpc\.search\s+\d+\s+[\d.]+%\s+0\s+0\s+legacy \d+\s+\d{4}-\d\d-\d\d \d\d:\d\dZ\s+"Python-xmlrpc\/3\.11" \(\d+\)/m,
      );
      expect(text.stdout).to.match(/^legacy\.ancient\s+0\s+0\.0%\s+50\s+0\s+legacy 50\s+never\s+"scanner\/1" \(50\)$/m);
      expect(text.stdout).to.match(/^legacy\.ancient\s+\(whole route\)\s+legacy\s+never$/m);
      const bad = await runBanyanAsync(['report', 'usage', '--since', 'forever'], { env });
      expect([bad.status, bad.stderr]).to.deep.equal([1, 'banyan: --since must be a duration like 500ms, 2s or 1m, not "forever"\n']);
    });
  });
});
