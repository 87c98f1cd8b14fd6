import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import { listen, type Listening } from '../lib/http-server.js';
import { createProxyMetrics } from '../metrics/catalog.js';
import { createProxy, type Proxy } from '../proxy/proxy.js';
import { compileTable } from '../routing/table/index.js';
import { freePort } from '../stack/ports.js';

/** A real upstream on loopback that reports what it received. */
function echoServer(): Server {
  return createServer((req, res) => {
    if (req.url === '/slow') {
      setTimeout(() => {
        res.end('late');
      }, 2_000).unref();
      return;
    }
    if (req.url === '/hang') {
      req.once('close', () => {
        hangClosed++;
      });
      return;
    }
    const hash = createHash('sha256');
    let bytes = 0;
    req.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
    });
    req.on('end', () => {
      const body = JSON.stringify({ method: req.method, url: req.url, headers: req.headers, bytes, sha256: hash.digest('hex') });
      res.writeHead(200, { 'content-type': 'application/json', 'x-banyan-write-lsn': '0/16B3748', connection: 'keep-alive' });
      res.end(body);
    });
  });
}
let hangClosed = 0;

describe('proxy forwarding', () => {
  let upstream: Listening;
  let proxy: Proxy;
  let front: Listening;

  before(async () => {
    upstream = await listen(echoServer(), 0, '127.0.0.1', 'test');
    proxy = createProxy({
      log: () => {},
      legacyUrl: upstream.url,
      appUrl: `http://127.0.0.1:${await freePort()}`,
      metrics: createProxyMetrics(),
      table: { current: compileTable([{ name: 'simple', match: { path: '/simple/*' }, mode: 'new' }], 1) },
      forwarding: { headersTimeoutMs: 500 },
    });
    front = await listen(proxy.app.callback(), 0, '127.0.0.1', 'test');
  });

  after(async () => {
    await front.close();
    await proxy.close();
    await upstream.close();
  });

  it('passes method, path, query and headers, replacing what only the proxy may say', async () => {
    const res = await fetch(`${front.url}/pypi?:action=rss&x=1`, {
      headers: { 'x-banyan-min-lsn': '0/FFFFFFFF', 'x-forwarded-for': '6.6.6.6', 'user-agent': 'probe/1', 'x-request-id': 'my-id-1' },
    });
    const seen = (await res.json()) as { method: string; url: string; headers: Record<string, string> };
    expect(seen.method).to.equal('GET');
    expect(seen.url).to.equal('/pypi?:action=rss&x=1');
    expect(seen.headers['user-agent']).to.equal('probe/1');
    expect(seen.headers).to.not.have.property('x-banyan-min-lsn');
    expect(seen.headers['x-forwarded-for']).to.equal('127.0.0.1');
    expect(seen.headers['x-request-id']).to.equal('my-id-1');
    expect(res.headers.get('x-request-id')).to.equal('my-id-1');
    expect(res.headers.get('x-banyan-write-lsn'), 'the write LSN is for the proxy only').to.equal(null);
  });

  it('streams a request body through unchanged, with and without Content-Length', async () => {
    const body = Buffer.alloc(3 * 1024 * 1024, 7);
    const withLength = await fetch(`${front.url}/upload`, { method: 'POST', body });
    const seen = (await withLength.json()) as { bytes: number; sha256: string };
    expect(seen.bytes).to.equal(body.length);
    expect(seen.sha256).to.equal(createHash('sha256').update(body).digest('hex'));

    const chunked = await new Promise<{ bytes: number; headers: Record<string, string> }>((resolve, reject) => {
      const req = request(
        `${front.url}/upload`,
        { method: 'POST', headers: { 'transfer-encoding': 'chunked' } },
        (res: IncomingMessage) => {
          let text = '';
          res.on('data', (d) => {
            text += d;
          });
          res.on('end', () => resolve(JSON.parse(text)));
        },
      );
      req.on('error', reject);
      for (let i = 0; i < 10; i++) req.write(Buffer.alloc(1000, i));
      req.end();
    });
    expect(chunked.bytes).to.equal(10_000);
  });

  it('handles Expect: 100-continue itself (undici refuses the header) and still delivers the body', async () => {
    const seen = await new Promise<{ bytes: number; headers: Record<string, string> }>((resolve, reject) => {
      const req = request(`${front.url}/upload`, { method: 'POST', headers: { expect: '100-continue', 'content-length': '5' } }, (res) => {
        let text = '';
        res.on('data', (d) => {
          text += d;
        });
        res.on('end', () => resolve(JSON.parse(text)));
      });
      req.on('continue', () => req.end('hello'));
      req.on('error', reject);
    });
    expect(seen.bytes).to.equal(5);
    expect(seen.headers).to.not.have.property('expect');
  });

  it('answers 502 naming the backend when it refuses connections', async () => {
    const res = await fetch(`${front.url}/simple/`);
    expect(res.status).to.equal(502);
    const text = await res.text();
    expect(text).to.contain('the app backend refused the connection');
    const id = res.headers.get('x-request-id');
    expect(id, 'a process prefix and a counter').to.match(/^[A-Za-z0-9_-]{12}-[0-9a-z]+$/);
    expect(text).to.contain(`Request id: ${id}\n`);
    const again = await fetch(`${front.url}/simple/`);
    await again.text();
    expect(again.headers.get('x-request-id'), 'every request has its own id').to.not.equal(id);
  });

  it('answers 504 when the backend is too slow to answer', async () => {
    const res = await fetch(`${front.url}/slow`);
    expect(res.status).to.equal(504);
    expect(await res.text()).to.contain('the legacy backend did not answer in time');
  });

  it('aborts the upstream request when the client goes away', async () => {
    const before = hangClosed;
    const controller = new AbortController();
    const pending = fetch(`${front.url}/hang`, { signal: controller.signal }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 100));
    controller.abort();
    await pending;
    const deadline = Date.now() + 2_000;
    while (hangClosed === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(hangClosed).to.equal(before + 1);
  });
});
