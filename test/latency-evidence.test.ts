import { expect } from 'chai';
import { request } from 'node:http';
import type { ProxyRuntime } from '../proxy/runtime.js';
import { evidenceSeconds } from '../proxy/request-accounting.js';
import { services } from './support/services.js';
import { setRoutes, startTestProxy } from './support/proxy.js';
import { fakeBackend, type FakeBackend } from './support/upstreams.js';

/** GETs `url` and reads nothing of the body for `pauseMs`, then all of it; resolves with the bytes read. */
function slowRead(url: string, pauseMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    request(url, (res) => {
      res.pause();
      let bytes = 0;
      setTimeout(() => {
        res.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
        });
        res.on('end', () => resolve(bytes));
        res.resume();
      }, pauseMs);
    })
      .on('error', reject)
      .end();
  });
}

describe('latency evidence is time to first byte: a slow reader does not make a backend slow', () => {
  let legacy: FakeBackend;
  let app: FakeBackend;
  let runtime: ProxyRuntime;
  const BODY = Buffer.alloc(32 * 1024 * 1024, 0x61);

  before(async () => {
    const s = await services();
    legacy = await fakeBackend('legacy');
    app = await fakeBackend('app');
    // Far more than the sockets' buffers hold, answered at once: only the client's reading holds it up.
    app.answer('/big', (req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BODY.length });
      res.end(BODY);
    });
    await setRoutes(s, [{ name: 'new.big', match: { path: '/big' }, mode: 'new' }], 'latency evidence');
    runtime = await startTestProxy(s, legacy.url, app.url);
  });

  after(async () => {
    await runtime?.stop();
    await legacy?.close();
    await app?.close();
  });

  it("records a new-side answer read over 2 s as the backend's milliseconds", async function () {
    this.timeout(30_000);
    const started = performance.now();
    expect(await slowRead(`${runtime.url}/big`, 2_000)).to.equal(BODY.length);
    expect(performance.now() - started, 'the client took its time').to.be.at.least(2_000);
    const text = await (await fetch(`${runtime.adminUrl}/metrics`)).text();
    const line = (le: string) =>
      text
        .split('\n')
        .find(
          (l) =>
            l.startsWith('banyan_http_request_duration_seconds_bucket{') &&
            l.includes('route="new.big"') &&
            l.includes('backend="new"') &&
            l.includes(`le="${le}"`),
        );
    expect(line('+Inf'), 'one request recorded').to.match(/ 1$/);
    expect(line('1'), 'recorded under a second, not the 2 s the client spent reading').to.match(/ 1$/);
  });

  it("counts from the request being ready to the upstream's head, or to now when the proxy answered", () => {
    expect(evidenceSeconds({ ready: 1_000, headersAt: 1_040 }, 9_000)).to.equal(0.04);
    expect(evidenceSeconds({ ready: 1_000, headersAt: undefined }, 1_002)).to.equal(0.002);
  });
});
