import { expect } from 'chai';
import { connect, type Socket } from 'node:net';
import { startProxyProcess } from './support/proxy-process.js';
import { setRoutes } from './support/proxy.js';
import { services } from './support/services.js';
import { fakeBackend, type FakeBackend } from './support/upstreams.js';

/**
 * The attack of issue 22: each connection sends `POST /pypi/` headers with `Content-Length: 99999`,
 * then one body byte every 2 s. Returns each connection's first answer line ('' while none came).
 */
function slowBodies(url: string, count: number, addresses: readonly string[]): { answers: string[]; stop(): void } {
  const { hostname, port } = new URL(url);
  const answers: string[] = Array.from({ length: count }, () => '');
  const sockets: Socket[] = [];
  for (let i = 0; i < count; i++) {
    const socket = connect({ host: hostname, port: Number(port), localAddress: addresses[i % addresses.length] });
    sockets.push(socket);
    socket.on('error', () => { answers[i] ||= 'reset'; });
    socket.on('data', (d) => { answers[i] ||= String(d).split('\r\n')[0]!; });
    socket.on('connect', () => {
      socket.write('POST /pypi/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 99999\r\n\r\n');
    });
  }
  const drip = setInterval(() => { for (const s of sockets) if (s.writable) s.write('a'); }, 2_000);
  return { answers, stop: () => { clearInterval(drip); for (const s of sockets) s.destroy(); } };
}

/** Other clients' legacy pages meanwhile: `n` GETs of `/`, one every 150 ms, each given at most 5 s. */
async function othersLatencies(url: string, n: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    try {
      const res = await fetch(`${url}/`, { signal: AbortSignal.timeout(5_000) });
      await res.text();
      times.push(res.status === 200 ? performance.now() - t0 : 5_000);
    } catch {
      times.push(5_000);
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  return times;
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;

describe('proxy: slow request bodies cost only their client (banyan proxy as a process)', function () {
  this.timeout(120_000);
  let legacy: FakeBackend;
  let proxy: Awaited<ReturnType<typeof startProxyProcess>>;

  before(async () => {
    const s = await services();
    legacy = await fakeBackend('legacy');
    await setRoutes(s, [{ name: 'legacy.all', match: { path: '/*' }, mode: 'legacy' }], 'slow bodies');
    proxy = await startProxyProcess({
      DATABASE_URL: s.primaryUrl, REDIS_URL: s.redisUrl!, LEGACY_URL: legacy.url, APP_URL: legacy.url, BANYAN_ADMIN_TOKEN: 'x'.repeat(20),
      BANYAN_LOG: 'off',
    });
  });

  after(async () => {
    proxy.child.kill('SIGTERM');
    await proxy.exited;
    await legacy.close();
  });

  for (const [count, addresses] of [[140, ['127.0.0.2']], [1_000, ['127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6']]] as const) {
    it(`keeps other clients' legacy pages under 1 s while ${count} connections trickle their bodies, then answers those 408`, async () => {
      const attack = slowBodies(proxy.url, count, addresses);
      try {
        await new Promise((r) => setTimeout(r, 1_000));
        const sorted = (await othersLatencies(proxy.url, 30)).sort((a, b) => a - b);
        const [p50, p99] = [percentile(sorted, 50), percentile(sorted, 99)];
        console.log(`      ${count} slow bodies: other clients' GET / p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms`);
        expect(p99, `p99 ${p99.toFixed(0)} ms`).to.be.below(1_000);
        const deadline = Date.now() + 20_000;
        while (attack.answers.some((a) => a === '') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
        const counts: Record<string, number> = {};
        for (const a of attack.answers) counts[a] = (counts[a] ?? 0) + 1;
        expect(counts, 'every slow body is answered 408 (past 256 connections from one address, 503 at once)')
          .to.deep.equal({ 'HTTP/1.1 408 Request Timeout': count });
        expect(legacy.seen.filter((r) => r.method === 'POST').length, 'legacy never saw them').to.equal(0);
      } finally {
        attack.stop();
      }
    });
  }
});
