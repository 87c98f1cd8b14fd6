import { expect } from 'chai';
import { othersLatencies, percentile, slowBodies } from '../chaos/attacks.js';
import { startProxyProcess } from './support/proxy-process.js';
import { setRoutes } from './support/proxy.js';
import { services } from './support/services.js';
import { fakeBackend, type FakeBackend } from './support/upstreams.js';

describe('proxy: slow request bodies cost only their client (banyan proxy as a process)', function () {
  this.timeout(120_000);
  let legacy: FakeBackend;
  let proxy: Awaited<ReturnType<typeof startProxyProcess>>;

  before(async () => {
    const s = await services();
    legacy = await fakeBackend('legacy');
    await setRoutes(s, [{ name: 'legacy.all', match: { path: '/*' }, mode: 'legacy' }], 'slow bodies');
    proxy = await startProxyProcess({
      DATABASE_URL: s.primaryUrl,
      REDIS_URL: s.redisUrl!,
      LEGACY_URL: legacy.url,
      APP_URL: legacy.url,
      BANYAN_ADMIN_TOKEN: 'x'.repeat(20),
      BANYAN_LOG: 'off',
    });
  });

  after(async () => {
    proxy.child.kill('SIGTERM');
    await proxy.exited;
    await legacy.close();
  });

  for (const [count, addresses] of [
    [140, ['127.0.0.2']],
    [1_000, ['127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6']],
  ] as const) {
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
        expect(counts, 'every slow body is answered 408 (past 256 connections from one address, 503 at once)').to.deep.equal({
          'HTTP/1.1 408 Request Timeout': count,
        });
        expect(legacy.seen.filter((r) => r.method === 'POST').length, 'legacy never saw them').to.equal(0);
      } finally {
        attack.stop();
      }
    });
  }
});
