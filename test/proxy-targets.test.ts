import { expect } from 'chai';
import { connect } from 'node:net';
import type { ProxyRuntime } from '../proxy/runtime.js';
import { setRoutes, startTestProxy } from './support/proxy.js';
import { services } from './support/services.js';
import { fakeBackend, type FakeBackend } from './support/upstreams.js';

/** Sends raw bytes (no client library normalizes them first) and returns the status line. */
function raw(url: string, request: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port) });
    let data = '';
    socket.setTimeout(5_000, () => {
      socket.destroy();
      reject(new Error(`no answer to ${JSON.stringify(request.split('\r\n')[0])}`));
    });
    socket.on('data', (d) => {
      data += d;
      if (data.includes('\r\n')) {
        socket.destroy();
        resolve(data.slice(0, data.indexOf('\r\n')));
      }
    });
    socket.on('error', reject);
    socket.on('end', () => resolve(data.split('\r\n')[0] ?? ''));
    socket.write(request);
  });
}

describe('proxy: one request target, one decision (path tricks cannot reach a retired route)', () => {
  let legacy: FakeBackend;
  let app: FakeBackend;
  let proxy: ProxyRuntime;

  before(async () => {
    const s = await services();
    legacy = await fakeBackend('legacy');
    app = await fakeBackend('new');
    await setRoutes(
      s,
      [
        { name: 'legacy.home', match: { path: '/' }, mode: 'legacy' },
        { name: 'retired.pypi', match: { path: '/pypi' }, mode: 'retired', retired: { status: 410, message: 'gone' } },
        { name: 'retired.pypi.sub', match: { path: '/pypi/*' }, mode: 'retired', retired: { status: 410, message: 'gone' } },
        { name: 'simple.detail', match: { path: '/simple/:project/' }, mode: 'new' },
      ],
      'path tricks',
    );
    proxy = await startTestProxy(s, legacy.url, app.url);
  });

  after(async () => {
    await proxy.stop();
    await legacy.close();
    await app.close();
  });

  const get = (target: string, extra = '') => raw(proxy.url, `GET ${target} HTTP/1.1\r\nHost: x\r\n${extra}Connection: close\r\n\r\n`);

  it('answers every trick aimed at a retired route from the route itself, or refuses it; legacy sees none of them', async () => {
    const before = legacy.seen.length;
    const retired = [
      '/a/../pypi/x',
      '/pypi/./x',
      '/a/%2e%2e/pypi/x',
      '/a/%2E%2E/pypi',
      '//pypi?:action=rss',
      '/pypi//x',
      '/%70ypi/x',
      'http://x/pypi/x',
      'https://evil.example/pypi',
    ];
    for (const target of retired) expect(await get(target), target).to.equal('HTTP/1.1 410 Gone');
    for (const target of ['/pypi\\x', '/pypi%2fx', '/a%2f..%2fpypi', '/pypi%00', '/pypi%zz', 'pypi/x']) {
      expect(await get(target), target).to.equal('HTTP/1.1 400 Bad Request');
    }
    expect(legacy.seen.length - before, 'nothing reached legacy').to.equal(0);
  });

  it('forwards the normalized target: the backend serves what was decided', async () => {
    expect(await get('/simple/./a/../foo//')).to.equal('HTTP/1.1 200 OK');
    expect(app.seen.at(-1)!.path).to.equal('/simple/foo/');
    expect(await get('/x/%7euser/../y?q=../z')).to.equal('HTTP/1.1 200 OK');
    expect(legacy.seen.at(-1)!.path).to.equal('/x/y?q=../z');
  });

  it('refuses two Host headers, CONNECT and non-WebSocket upgrades with an HTTP answer', async () => {
    expect(await raw(proxy.url, 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n')).to.equal('HTTP/1.1 400 Bad Request');
    expect(await raw(proxy.url, 'CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n')).to.equal(
      'HTTP/1.1 405 Method Not Allowed',
    );
    expect(await get('/', 'Upgrade: h2c\r\nConnection: Upgrade\r\n')).to.equal('HTTP/1.1 400 Bad Request');
    expect(await get('/')).to.equal('HTTP/1.1 200 OK');
  });
});

describe('proxy: one decision whatever the spelling (final slash, fragment)', () => {
  let legacy: FakeBackend;
  let app: FakeBackend;
  let proxy: ProxyRuntime;

  before(async () => {
    const s = await services();
    legacy = await fakeBackend('legacy');
    app = await fakeBackend('new');
    const hour = 3_600_000;
    await setRoutes(
      s,
      [
        { name: 'legacy.home', match: { path: '/' }, mode: 'legacy' },
        {
          name: 'legacy.xmlrpc',
          match: { path: '/pypi', methods: ['POST'] },
          mode: 'retired',
          retired: { status: 410, message: 'XML-RPC is gone' },
        },
        {
          name: 'legacy.browse',
          match: { path: '/browse/' },
          mode: 'legacy',
          retired: { status: 410, message: 'browsing is going away' },
          brownouts: [{ start: new Date(Date.now() - hour).toISOString(), end: new Date(Date.now() + hour).toISOString() }],
        },
        {
          name: 'legacy.strict',
          match: { path: '/strict', strictSlash: true },
          mode: 'retired',
          retired: { status: 410, message: 'gone' },
        },
      ],
      'spellings',
    );
    proxy = await startTestProxy(s, legacy.url, app.url);
  });

  after(async () => {
    await proxy.stop();
    await legacy.close();
    await app.close();
  });

  const send = (method: string, target: string) =>
    raw(proxy.url, `${method} ${target} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);

  it('retires POST /pypi under every spelling: with a final slash it is retired, with a fragment it is refused', async () => {
    const before = legacy.seen.length;
    for (const target of ['/pypi', '/pypi/', '//pypi/', '/pypi/.'])
      expect(await send('POST', target), target).to.equal('HTTP/1.1 410 Gone');
    for (const target of ['/pypi#', '/pypi/#x', '/pypi?x=1#y'])
      expect(await send('POST', target), target).to.equal('HTTP/1.1 400 Bad Request');
    expect(legacy.seen.length - before, 'nothing reached legacy').to.equal(0);
    expect(await send('GET', '/pypi/'), 'GET was never retired').to.equal('HTTP/1.1 200 OK');
  });

  it('browns out /browse/ under every spelling', async () => {
    const before = legacy.seen.length;
    for (const target of ['/browse/', '/browse']) expect(await send('GET', target), target).to.equal('HTTP/1.1 410 Gone');
    for (const target of ['/browse#', '/browse/#x']) expect(await send('GET', target), target).to.equal('HTTP/1.1 400 Bad Request');
    expect(legacy.seen.length - before, 'nothing reached legacy').to.equal(0);
  });

  it('keeps a strictSlash route to its spelling', async () => {
    expect(await send('GET', '/strict')).to.equal('HTTP/1.1 410 Gone');
    expect(await send('GET', '/strict/')).to.equal('HTTP/1.1 200 OK');
  });
});

describe('proxy: slow clients (slowloris) get a bounded time for their headers', () => {
  it('answers 408 and closes 50 sockets that dribble their headers, while others are served', async function () {
    this.timeout(30_000);
    const s = await services();
    const legacy = await fakeBackend('legacy');
    await setRoutes(s, [{ name: 'legacy.home', match: { path: '/' }, mode: 'legacy' }], 'slowloris');
    const proxy = await startTestProxy(s, legacy.url, legacy.url, { headersTimeoutMs: 1_000 });
    const { hostname, port } = new URL(proxy.url);
    try {
      const started = Date.now();
      const held = Array.from(
        { length: 50 },
        () =>
          new Promise<{ answer: string; ms: number }>((resolve) => {
            const socket = connect({ host: hostname, port: Number(port) });
            let answer = '';
            const drip = setInterval(() => socket.write('X-Slow: 1\r\n'), 300);
            socket.on('connect', () => socket.write('GET / HTTP/1.1\r\nHost: x\r\n'));
            socket.on('data', (d) => {
              answer += d;
            });
            socket.on('error', () => {});
            socket.on('close', () => {
              clearInterval(drip);
              resolve({ answer: answer.split('\r\n')[0] ?? '', ms: Date.now() - started });
            });
          }),
      );
      expect((await get(proxy.url, '/')).split('\r\n')[0], 'others are served meanwhile').to.equal('HTTP/1.1 200 OK');
      const results = await Promise.all(held);
      expect(new Set(results.map((r) => r.answer))).to.deep.equal(new Set(['HTTP/1.1 408 Request Timeout']));
      expect(Math.max(...results.map((r) => r.ms)), 'each was closed within the limit and one check interval').to.be.below(4_000);
    } finally {
      await proxy.stop();
      await legacy.close();
    }
  });
});

describe('proxy: one client address holds a bounded number of connections', () => {
  it('answers 503 at once past BANYAN_MAX_CLIENT_CONNECTIONS, serves again when one closes, and spares trusted proxies', async function () {
    this.timeout(30_000);
    const s = await services();
    const legacy = await fakeBackend('legacy');
    await setRoutes(s, [{ name: 'legacy.home', match: { path: '/' }, mode: 'legacy' }], 'connection limit');
    const limited = await startTestProxy(s, legacy.url, legacy.url, { maxClientConnections: 5 });
    const trusting = await startTestProxy(s, legacy.url, legacy.url, { maxClientConnections: 5, trustedProxies: '127.0.0.1' });
    const sockets: import('node:net').Socket[] = [];
    /** Opens a connection that sends half a request and holds it, as slowloris does. */
    const hold = (url: string) =>
      new Promise<void>((resolve) => {
        const { hostname, port } = new URL(url);
        const socket = connect({ host: hostname, port: Number(port) }, () => {
          socket.write('GET / HTTP/1.1\r\nHost: x\r\n');
          resolve();
        });
        socket.on('error', () => {});
        sockets.push(socket);
      });
    try {
      for (let i = 0; i < 5; i++) await hold(limited.url);
      await new Promise((r) => setTimeout(r, 100));
      const t0 = Date.now();
      const refused = await get(limited.url, '/');
      expect(refused.split('\r\n')[0]).to.equal('HTTP/1.1 503 Service Unavailable');
      expect(Date.now() - t0, 'refused at once, not after the headers timeout').to.be.below(1_000);
      const told = await fetch(`${limited.url}/`);
      expect([told.status, told.headers.get('retry-after'), await told.text()]).to.deep.equal([
        503,
        '5',
        '503 Service Unavailable: too many open connections from your address (BANYAN_MAX_CLIENT_CONNECTIONS).\n',
      ]);
      sockets.pop()!.destroy();
      await new Promise((r) => setTimeout(r, 100));
      expect((await get(limited.url, '/')).split('\r\n')[0], 'one closed: room for one more').to.equal('HTTP/1.1 200 OK');
      // Behind a load balancer every client has its address: no limit for a trusted proxy.
      for (let i = 0; i < 8; i++) await hold(trusting.url);
      expect((await get(trusting.url, '/')).split('\r\n')[0]).to.equal('HTTP/1.1 200 OK');
    } finally {
      for (const socket of sockets) socket.destroy();
      await limited.stop();
      await trusting.stop();
      await legacy.close();
    }
  });
});

function get(url: string, target: string): Promise<string> {
  return raw(url, `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
}
