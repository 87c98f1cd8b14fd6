import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { startProxyProcess } from './support/proxy-process.js';
import { setRoutes } from './support/proxy.js';
import { services } from './support/services.js';
import { fakeBackend, type FakeBackend } from './support/upstreams.js';

function rssBytes(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('VmRSS:'))!;
  return Number(/(\d+)/.exec(line)![1]) * 1024;
}

describe('banyan proxy as a process', () => {
  let legacy: FakeBackend;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    const s = await services();
    legacy = await fakeBackend('legacy');
    await setRoutes(s, [{ name: 'legacy.all', match: { path: '/*' }, mode: 'legacy' }]);
    env = {
      DATABASE_URL: s.primaryUrl,
      REDIS_URL: s.redisUrl!,
      LEGACY_URL: legacy.url,
      APP_URL: legacy.url,
      BANYAN_ADMIN_TOKEN: 'x'.repeat(20),
    };
    legacy.answer('/sink', (req, res) => {
      const hash = createHash('sha256');
      let bytes = 0;
      // A backend slower than the client (at most ~400 MB/s: 20 ms of rest after every 8 MiB): a proxy
      // without backpressure would hold the difference, hundreds of MB of a 1 GiB upload.
      let rested = 0;
      req.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        hash.update(chunk);
        if (bytes - rested >= 8 * 1024 * 1024) {
          rested = bytes;
          req.pause();
          setTimeout(() => req.resume(), 20);
        }
      });
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ bytes, sha256: hash.digest('hex') }));
      });
    });
    legacy.answer('/slow', (_req, res) => {
      setTimeout(() => {
        res.writeHead(200);
        res.end('finished');
      }, 1_000);
    });
  });

  after(async () => {
    await legacy.close();
  });

  it('streams a 1 GiB upload to a slower backend with backpressure: RSS grows by less than 128 MB', async function () {
    this.timeout(120_000);
    const proxy = await startProxyProcess(env);
    try {
      const pid = proxy.child.pid!;
      // Warm up first: the first forwarded upload loads and compiles code that is not the upload's cost.
      for (let i = 0; i < 3; i++) await (await fetch(`${proxy.url}/sink`, { method: 'POST', body: Buffer.alloc(8 * 1024 * 1024) })).text();
      const baseline = rssBytes(pid);
      let peak = baseline;
      const sampler = setInterval(() => {
        peak = Math.max(peak, rssBytes(pid));
      }, 50);
      const total = 1024 * 1024 * 1024;
      const chunk = Buffer.alloc(1024 * 1024, 0x5a);
      const expected = createHash('sha256');
      const result = await new Promise<{ bytes: number; sha256: string }>((resolve, reject) => {
        const req = request(`${proxy.url}/sink`, { method: 'POST', headers: { 'content-length': String(total) } }, (res) => {
          let text = '';
          res.on('data', (d) => {
            text += d;
          });
          res.on('end', () => resolve(JSON.parse(text)));
        });
        req.on('error', reject);
        let sent = 0;
        const pump = () => {
          while (sent < total) {
            sent += chunk.length;
            expected.update(chunk);
            if (!req.write(chunk)) return req.once('drain', pump);
          }
          req.end();
        };
        pump();
      });
      clearInterval(sampler);
      expect(result.bytes).to.equal(total);
      expect(result.sha256).to.equal(expected.digest('hex'));
      const growth = peak - baseline;
      // What is left is garbage awaiting collection: about 4 MB on Node 20, 55-65 MB on Node 24, whose young
      // generation grows larger before it is scavenged (with --max-semi-space-size=2 it is under 50 MB there too).
      expect(growth, `RSS grew by ${(growth / 1e6).toFixed(1)} MB`).to.be.below(128 * 1024 * 1024);
    } finally {
      proxy.child.kill('SIGTERM');
      await proxy.exited;
    }
  });

  it('SIGTERM drains: the request in flight finishes, new connections are refused, then it exits 0', async () => {
    const proxy = await startProxyProcess({ ...env, BANYAN_DRAIN: '5s' });
    const inFlight = fetch(`${proxy.url}/slow`).then(async (r) => ({ status: r.status, text: await r.text() }));
    await new Promise((r) => setTimeout(r, 300));
    proxy.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 200));
    const refused = await fetch(`${proxy.url}/`).then(
      () => 'answered',
      (err: Error & { cause?: { code?: string } }) => err.cause?.code ?? err.message,
    );
    expect(refused).to.equal('ECONNREFUSED');
    expect(await inFlight).to.deep.equal({ status: 200, text: 'finished' });
    expect(await proxy.exited).to.equal(0);
    expect(proxy.output()).to.contain('draining');
  });

  it('--workers 2 runs two workers on one port, /metrics adds up all workers, and SIGTERM stops them all', async () => {
    const proxy = await startProxyProcess({ ...env, PORT: '0', ADMIN_PORT: '0' }, ['--workers', '2']);
    const workers = [...proxy.output().matchAll(/worker (\d+): proxy listening on (http:\/\/[\d.:]+), admin on (http:\/\/[\d.:]+)/g)];
    expect(workers).to.have.length(2);
    expect(workers[0]![2], 'both workers share the port').to.equal(workers[1]![2]);
    const statuses = await Promise.all(Array.from({ length: 60 }, async () => (await fetch(`${workers[0]![2]}/`)).status));
    expect(statuses.every((s) => s === 200)).to.equal(true);
    // Each scrape reaches one worker; every one must report all 60 requests, whichever it is.
    for (let i = 0; i < 6; i++) {
      const text = await (await fetch(`${workers[0]![3]}/metrics`)).text();
      if (!text.startsWith('#')) proxy.child.kill('SIGKILL');
      expect(text, proxy.output()).to.match(
        /^banyan_http_requests_total\{route="legacy.all",backend="legacy",service="legacy",method="GET",status_class="2xx"\} 60$/m,
      );
      expect(text).to.match(/^banyan_route_table_version \d+$/m);
    }
    proxy.child.kill('SIGTERM');
    expect(await proxy.exited).to.equal(0);
    for (const [, pid] of workers) expect(() => process.kill(Number(pid), 0), `worker ${pid} is gone`).to.throw();
  });
});
