import { expect } from 'chai';
import { request } from 'node:http';
import { createServer, type Server } from 'node:net';
import type { ProxyRuntime } from '../proxy/runtime.js';
import { ADMIN_TOKEN, setRoutes, startTestProxy } from './support/proxy.js';
import { services } from './support/services.js';
import { fakeBackend, type FakeBackend } from './support/upstreams.js';

/** A GET with the headers given, Host included (fetch will not send a Host of the caller's choosing). */
function get(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => {
        text += d;
      });
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('proxy: no internal headers, error texts or probes leave it', () => {
  let legacy: FakeBackend;
  let garbage: Server;
  let proxy: ProxyRuntime;
  let debugging: ProxyRuntime;

  before(async () => {
    const s = await services();
    legacy = await fakeBackend('legacy');
    legacy.answer('/db', (_req, res) => {
      res.writeHead(200, { 'x-banyan-read-from': 'replica-1', 'X-Legacy-Read-From': 'primary', 'content-type': 'text/plain' });
      res.end('ok');
    });
    // Not HTTP: undici's parser error text must stay in the log.
    garbage = createServer((socket) => {
      socket.on('data', () => socket.end('HTTP/1.1 99x Nope\r\n\r\n'));
    });
    await new Promise<void>((r) => garbage.listen(0, '127.0.0.1', r));
    await setRoutes(
      s,
      {
        upstreams: [
          { name: 'legacy', env: 'LEGACY_URL' },
          { name: 'app', endpoints: [`http://127.0.0.1:${(garbage.address() as { port: number }).port}`] },
        ],
        routes: [
          { name: 'legacy.all', match: { path: '/*' }, mode: 'legacy' },
          { name: 'broken', match: { path: '/broken' }, mode: 'new' },
        ],
      },
      'leaks',
    );
    proxy = await startTestProxy(s, legacy.url, legacy.url);
    debugging = await startTestProxy(s, legacy.url, legacy.url, { debugHeaders: true });
  });

  after(async () => {
    await proxy.stop();
    await debugging.stop();
    await legacy.close();
    garbage.close();
  });

  it('drops X-Banyan-Read-From and X-Legacy-Read-From, unless BANYAN_DEBUG_HEADERS is on', async () => {
    const plain = await get(`${proxy.url}/db`);
    expect(plain.status).to.equal(200);
    expect(plain.headers).to.not.have.any.keys('x-banyan-read-from', 'x-legacy-read-from');
    const debug = await get(`${debugging.url}/db`);
    expect(debug.headers).to.include({ 'x-banyan-read-from': 'replica-1', 'x-legacy-read-from': 'primary' });
  });

  it("names the failing backend on a 502 page, never the HTTP client's own error text", async () => {
    const page = await get(`${proxy.url}/broken`);
    expect(page.status).to.equal(502);
    expect(page.text.split('\n')[0]).to.equal('502 Bad Gateway: the app backend failed.');
    expect(page.text).to.not.match(/HPE_|status code|Parse Error|undici/i);
  });

  it('answers /metrics and /readyz only to its own host names, or with the token (DNS rebinding)', async () => {
    const port = new URL(proxy.adminUrl).port;
    for (const path of ['/metrics', '/readyz']) {
      expect((await get(`${proxy.adminUrl}${path}`)).status, `${path} by IP`).to.be.oneOf([200, 503]);
      expect((await get(`${proxy.adminUrl}${path}`, { host: `localhost:${port}` })).status, `${path} by localhost`).to.be.oneOf([200, 503]);
      const rebound = await get(`${proxy.adminUrl}${path}`, { host: `attacker.example:${port}` });
      expect(rebound.status, `${path} by a rebound name`).to.equal(403);
      expect(rebound.text).to.not.contain('banyan_');
      expect(
        (await get(`${proxy.adminUrl}${path}`, { host: 'attacker.example', authorization: `Bearer ${ADMIN_TOKEN}` })).status,
      ).to.be.oneOf([200, 503]);
      expect((await get(`${proxy.adminUrl}${path}`, { host: 'attacker.example', authorization: 'Bearer wrong' })).status).to.equal(401);
    }
    expect((await get(`${proxy.adminUrl}/healthz`, { host: 'attacker.example' })).status, 'liveness says nothing').to.equal(200);
  });
});
