import { expect } from 'chai';
import { connect, type Socket } from 'node:net';
import type { ProxyRuntime } from '../proxy/runtime.js';
import { setRoutes, startTestProxy } from './support/proxy.js';
import { services } from './support/services.js';
import { fakeBackend, type FakeBackend } from './support/upstreams.js';

/** A raw connection that sends `head` (and whatever `then` writes), resolving with the answer's status line and when it came. */
function rawRequest(url: string, head: string, then?: (socket: Socket) => void): Promise<{ line: string; ms: number }> {
  const { hostname, port } = new URL(url);
  const started = Date.now();
  return new Promise((resolve) => {
    const socket = connect({ host: hostname, port: Number(port) });
    let data = '';
    socket.on('data', (d) => {
      data += d;
      if (data.includes('\r\n')) {
        socket.destroy();
        resolve({ line: data.slice(0, data.indexOf('\r\n')), ms: Date.now() - started });
      }
    });
    socket.on('error', () => resolve({ line: 'reset', ms: Date.now() - started }));
    socket.on('close', () => resolve({ line: data.split('\r\n')[0] || 'closed', ms: Date.now() - started }));
    socket.write(head);
    then?.(socket);
  });
}

describe('proxy: slow clients cost only themselves', function () {
  this.timeout(60_000);
  let legacy: FakeBackend;
  let app: FakeBackend;
  let proxy: ProxyRuntime;
  let held: (() => void)[] = [];

  before(async () => {
    const s = await services();
    legacy = await fakeBackend('legacy');
    app = await fakeBackend('new');
    // Answers only when told to: requests that keep an upstream connection busy.
    legacy.answer('/hold', (req, res) => {
      req.resume();
      held.push(() => {
        res.writeHead(200);
        res.end('held');
      });
    });
    await setRoutes(s, [{ name: 'legacy.all', match: { path: '/*' }, mode: 'legacy' }], 'client limits');
    proxy = await startTestProxy(s, legacy.url, app.url, {
      limits: { bodyBufferBytes: 1024, bodyTimeoutMs: 1_000, bodyMinRate: 1024, upstreamQueueTimeoutMs: 500, clientSharePercent: 100 },
    });
  });

  afterEach(() => {
    for (const release of held) release();
    held = [];
  });

  after(async () => {
    await proxy.stop();
    await legacy.close();
    await app.close();
  });

  const post = (length: number) => `POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: ${length}\r\nConnection: close\r\n\r\n`;

  it('reads a small body whole before taking a connection: a stalled one gets 408 and never reaches legacy', async () => {
    const before = legacy.seen.length;
    const answer = await rawRequest(proxy.url, post(100), (s) => s.write('x'.repeat(10)));
    expect(answer.line).to.equal('HTTP/1.1 408 Request Timeout');
    expect(answer.ms).to.be.within(900, 3_000);
    expect(legacy.seen.length - before).to.equal(0);
    expect((await rawRequest(proxy.url, post(100), (s) => s.write('y'.repeat(100)))).line, 'a whole body goes through').to.equal(
      'HTTP/1.1 200 OK',
    );
  });

  it('streams a larger body once its first part came, and cuts it with 408 when it falls below the minimum rate', async () => {
    const before = legacy.seen.length;
    let drip: NodeJS.Timeout | undefined;
    const answer = await rawRequest(proxy.url, post(100_000), (s) => {
      s.write('z'.repeat(2_048));
      drip = setInterval(() => s.writable && s.write('z'), 200);
    });
    clearInterval(drip);
    expect(answer.line).to.equal('HTTP/1.1 408 Request Timeout');
    expect(legacy.seen.length - before, 'it had reached legacy').to.equal(1);
    expect((await fetch(`${proxy.url}/`)).status, 'the endpoint was not blamed').to.equal(200);
  });

  it('gives up with 503 and Retry-After when no connection to the backend comes free in time', async () => {
    const holding = Array.from({ length: 128 }, () => fetch(`${proxy.url}/hold`).then((r) => r.text()));
    while (held.length < 128) await new Promise((r) => setTimeout(r, 20));
    const t0 = Date.now();
    const waited = await fetch(`${proxy.url}/other`);
    expect(waited.status).to.equal(503);
    expect(waited.headers.get('retry-after')).to.equal('5');
    expect(await waited.text()).to.contain('the legacy backend had no free connection for 0.5 s');
    expect(Date.now() - t0).to.be.within(400, 2_000);
    for (const release of held) release();
    held = [];
    await Promise.all(holding);
    expect((await fetch(`${proxy.url}/`)).status).to.equal(200);
  });
});

describe('proxy: one client address holds only a share of a service', () => {
  let legacy: FakeBackend;
  let proxy: ProxyRuntime;
  const held: (() => void)[] = [];

  before(async () => {
    const s = await services();
    legacy = await fakeBackend('legacy');
    legacy.answer('/hold', (req, res) => {
      req.resume();
      held.push(() => {
        res.writeHead(200);
        res.end('held');
      });
    });
    await setRoutes(s, [{ name: 'legacy.all', match: { path: '/*' }, mode: 'legacy' }], 'client share');
    // 2 % of 128 connections: 2 at once.
    proxy = await startTestProxy(s, legacy.url, legacy.url, { limits: { clientSharePercent: 2 } });
  });

  after(async () => {
    for (const release of held) release();
    await proxy.stop();
    await legacy.close();
  });

  it('answers 503 with Retry-After past the share, and serves again when one ends', async () => {
    const holding = [fetch(`${proxy.url}/hold`), fetch(`${proxy.url}/hold`)];
    while (held.length < 2) await new Promise((r) => setTimeout(r, 20));
    const over = await fetch(`${proxy.url}/x`);
    expect(over.status).to.equal(503);
    expect(over.headers.get('retry-after')).to.equal('5');
    expect(await over.text()).to.contain('the legacy service is busy with other requests from your address');
    held.shift()!();
    await holding[0];
    expect((await fetch(`${proxy.url}/x`)).status).to.equal(200);
    held.shift()!();
    await holding[1];
  });
});
