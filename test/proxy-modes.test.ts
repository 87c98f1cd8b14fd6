import { expect } from 'chai';
import type { ProxyRuntime } from '../proxy/runtime.js';
import { freePort } from '../stack/ports.js';
import { call, setRoutes, startTestProxy } from './support/proxy.js';
import { services } from './support/services.js';
import { fakeBackend, type FakeBackend } from './support/upstreams.js';

describe('proxy modes, against real backends', () => {
  let legacy: FakeBackend;
  let app: FakeBackend;
  let proxy: ProxyRuntime;

  before(async () => {
    const s = await services();
    legacy = await fakeBackend('legacy');
    app = await fakeBackend('new');
    await setRoutes(s, [
      { name: 'simple.index', match: { path: '/simple/' }, mode: 'new' },
      { name: 'project.page', match: { path: '/project/:name/' }, mode: 'canary', percent: 10 },
      {
        name: 'legacy.rss',
        match: { path: '/pypi', query: { ':action': 'rss' } },
        mode: 'retired',
        retired: { status: 410, message: 'RSS moved to /rss/updates.xml' },
      },
      {
        name: 'legacy.search',
        match: { path: '/search' },
        mode: 'legacy',
        retired: { status: 410, message: 'Search is being retired: use /simple/' },
        brownouts: [{ start: new Date(Date.now() - 60_000).toISOString(), end: new Date(Date.now() + 3_600_000).toISOString() }],
      },
      {
        name: 'legacy.browse',
        match: { path: '/browse' },
        mode: 'legacy',
        retired: { status: 410, message: 'later' },
        brownouts: [{ start: '2030-01-01T00:00:00Z', end: '2030-01-01T01:00:00Z' }],
      },
    ]);
    // One test address sends 100 requests at once here: no client share, or most would be refused.
    proxy = await startTestProxy(s, legacy.url, app.url, { sessionCookie: 'legacy_session', limits: { clientSharePercent: 100 } });
  });

  after(async () => {
    await proxy.stop();
    await legacy.close();
    await app.close();
  });

  it('sends new routes to the new app and everything else to legacy', async () => {
    expect((await call(`${proxy.url}/simple/`)).backend).to.equal('new');
    expect((await call(`${proxy.url}/pypi/requests`)).backend).to.equal('legacy');
    expect((await call(`${proxy.url}/`)).backend).to.equal('legacy');
  });

  it('answers retired routes itself, with the message, and never bothers a backend', async () => {
    const before = legacy.seen.length + app.seen.length;
    const r = await call(`${proxy.url}/pypi?:action=rss`);
    expect(r.status).to.equal(410);
    expect(r.text).to.equal('RSS moved to /rss/updates.xml\n');
    expect(legacy.seen.length + app.seen.length).to.equal(before);
  });

  it('answers as retired during a brownout window, and normally outside one', async () => {
    const during = await call(`${proxy.url}/search?q=x`);
    expect(during.status).to.equal(410);
    expect(during.text).to.contain('Search is being retired');
    const outside = await call(`${proxy.url}/browse`);
    expect(outside.status).to.equal(200);
    expect(outside.backend).to.equal('legacy');
  });

  it('canary: about 10 % of sessions go to new, and each session always lands on the same side', async () => {
    const sides = new Map<string, string>();
    const sessions = Array.from({ length: 2_000 }, (_, i) => `s${i}-${(i * 2654435761) >>> 0}`);
    for (let i = 0; i < sessions.length; i += 50) {
      await Promise.all(
        sessions.slice(i, i + 50).map(async (id) => {
          const r = await call(`${proxy.url}/project/demo/`, { headers: { cookie: `theme=dark; legacy_session=${id}` } });
          sides.set(id, r.backend!);
        }),
      );
    }
    const toNew = [...sides.values()].filter((b) => b === 'new').length;
    expect(toNew / sessions.length).to.be.within(0.08, 0.12);
    for (const id of sessions.slice(0, 40)) {
      const again = await call(`${proxy.url}/project/demo/`, { headers: { cookie: `legacy_session=${id}` } });
      expect(again.backend, id).to.equal(sides.get(id));
    }
  });

  it('rejects malformed requests with a 4xx and keeps serving', async () => {
    const { connect } = await import('node:net');
    const port = Number(new URL(proxy.url).port);
    const raw = (text: string) =>
      new Promise<string>((resolve) => {
        const socket = connect(port, '127.0.0.1', () => socket.write(text));
        let got = '';
        socket.on('data', (d) => {
          got += d;
        });
        socket.on('close', () => resolve(got));
        socket.on('error', () => resolve(got));
      });
    expect(await raw('GET / HTTP/1.1\r\nHost: x\r\nBad\u0001Header: 1\r\n\r\n')).to.match(/^HTTP\/1\.1 400 Bad Request/);
    expect(await raw('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n')).to.match(
      /^HTTP\/1\.1 400 Bad Request[\s\S]*Content-Length and Transfer-Encoding conflict/,
    );
    expect(await raw(`GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`)).to.match(
      /^HTTP\/1\.1 431 Request Header Fields Too Large/,
    );
    expect(await raw('NOT HTTP AT ALL\r\n\r\n')).to.match(/^HTTP\/1\.1 400 Bad Request/);
    expect((await call(`${proxy.url}/`)).status).to.equal(200);
  });

  it('forwards WebSocket upgrades to the backend the route names', async () => {
    const { request } = await import('node:http');
    const upgrade = (path: string) =>
      new Promise<string>((resolve, reject) => {
        const req = request(`${proxy.url}${path}`, {
          headers: {
            connection: 'Upgrade',
            upgrade: 'websocket',
            'sec-websocket-version': '13',
            'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
            'x-banyan-min-lsn': '0/1',
          },
        });
        req.on('upgrade', (_res, socket) => {
          socket.write('ping');
          socket.once('data', (d) => {
            socket.destroy();
            resolve(d.toString());
          });
        });
        req.on('error', reject);
        req.end();
      });
    expect(await upgrade('/simple/')).to.equal('new:ping');
    expect(await upgrade('/pypi/ws')).to.equal('legacy:ping');
    const seen = legacy.seen.filter((r) => r.method === 'UPGRADE').at(-1)!;
    expect(seen.headers).to.not.have.property('x-banyan-min-lsn');
    expect(seen.headers['x-forwarded-for']).to.equal('127.0.0.1');
  });

  it('leaks no sockets after 1,000 requests aborted by their clients', async () => {
    let open = 0;
    let closed = 0;
    legacy.answer('/hang', (req) => {
      open++;
      req.socket.once('close', () => {
        closed++;
      });
    });
    for (let batch = 1; batch <= 10; batch++) {
      const controllers = Array.from({ length: 100 }, () => new AbortController());
      const pending = controllers.map((c) => fetch(`${proxy.url}/hang`, { signal: c.signal }).catch(() => undefined));
      // Abort only once every request of the batch is waiting at the backend.
      const reached = Date.now() + 5_000;
      while (open < batch * 100 && Date.now() < reached) await new Promise((r) => setTimeout(r, 10));
      for (const c of controllers) c.abort();
      await Promise.all(pending);
    }
    const deadline = Date.now() + 5_000;
    while (closed < open && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(open, 'every request reached the backend before its client aborted').to.equal(1_000);
    expect(closed, 'every upstream socket of an aborted request is closed').to.equal(open);
    const upstreamSockets = await new Promise<number>((resolve) => legacy.listening.server.getConnections((_e, n) => resolve(n)));
    expect(upstreamSockets, 'only idle keep-alive sockets may remain').to.be.at.most(128);
  });
});

describe('proxy: circuit breaker and fallback', () => {
  let legacy: FakeBackend;
  let proxy: ProxyRuntime;

  before(async () => {
    const s = await services();
    legacy = await fakeBackend('legacy');
    await setRoutes(s, [
      { name: 'files', match: { path: '/files/*' }, mode: 'new', fallback: true },
      { name: 'upload', match: { path: '/upload' }, mode: 'new', fallback: true },
      { name: 'strict', match: { path: '/strict' }, mode: 'new' },
    ]);
    // The new app is down: nothing listens on its port.
    proxy = await startTestProxy(s, legacy.url, `http://127.0.0.1:${await freePort()}`, {
      breaker: { volumeThreshold: 3, errorThresholdPercentage: 50, resetTimeoutMs: 60_000 },
    });
  });

  after(async () => {
    await proxy.stop();
    await legacy.close();
  });

  it('serves safe requests from legacy when the new app fails, and says so in metrics', async () => {
    const r = await call(`${proxy.url}/files/a.whl`);
    expect(r.status).to.equal(200);
    expect(r.backend).to.equal('legacy');
    const metrics = await (await fetch(`${proxy.adminUrl}/metrics`)).text();
    expect(metrics).to.match(/banyan_proxy_fallbacks_total\{route="files",service="app",reason="refused"\} [1-9]/);
    expect(metrics).to.match(
      /banyan_http_requests_total\{route="files",backend="legacy",service="legacy",method="GET",status_class="2xx"\} [1-9]/,
    );
  });

  it('never replays an unsafe request: 503 with Retry-After', async () => {
    const before = legacy.seen.filter((r) => r.method === 'POST').length;
    const r = await call(`${proxy.url}/upload`, { method: 'POST', body: 'data' });
    expect(r.status).to.equal(503);
    expect(r.headers.get('retry-after')).to.equal('5');
    expect(r.text).to.contain('Your POST was not retried elsewhere');
    expect(legacy.seen.filter((req) => req.method === 'POST').length).to.equal(before);
  });

  it('answers 502 on a new route without fallback', async () => {
    const r = await call(`${proxy.url}/strict`);
    expect(r.status).to.equal(502);
    expect(r.text).to.contain('the app backend refused the connection');
  });

  it('opens the breaker after repeated failures, then falls back without trying the new app', async () => {
    for (let i = 0; i < 5; i++) await call(`${proxy.url}/files/x`);
    expect(proxy.proxy.upstreams.get('app')!.snapshot().endpoints[0]!.breaker).to.equal('open');
    const r = await call(`${proxy.url}/files/y`);
    expect(r.backend).to.equal('legacy');
    const metrics = await (await fetch(`${proxy.adminUrl}/metrics`)).text();
    expect(metrics).to.match(/banyan_proxy_fallbacks_total\{route="files",service="app",reason="breaker_open"\} [1-9]/);
    expect(metrics).to.match(/banyan_proxy_breaker_state\{service="app",endpoint="http:\/\/127\.0\.0\.1:\d+"\} 2/);
    const post = await call(`${proxy.url}/upload`, { method: 'POST', body: 'x' });
    expect(post.status).to.equal(503);
    expect(post.text).to.contain('is failing and is being given a rest');
  });
});
