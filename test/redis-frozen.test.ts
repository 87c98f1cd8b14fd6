import { expect } from 'chai';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { startAppRuntime, type AppRuntime } from '../app/runtime.js';
import { findRedisServer, startRedis, type RedisServer } from '../stack/redis-server.js';
import { services, tempDir } from './support/services.js';

/** A frozen Redis (SIGSTOP: connected, never answering) costs the request path one short wait, then is skipped. */
describe('a frozen Redis: fences and the page cache are skipped, requests stay fast', () => {
  let dir: string;
  let redis: RedisServer;
  let app: AppRuntime;

  before(async function () {
    this.timeout(30_000);
    const s = await services();
    dir = tempDir('banyan-frozen-');
    redis = await startRedis(findRedisServer()!, join(dir, 'redis'));
    app = await startAppRuntime({
      primaryUrl: s.primaryUrl,
      replicaUrls: s.replicaUrls,
      redisUrl: redis.url,
      storageDir: join(dir, 'files'),
      host: '127.0.0.1',
      port: 0,
    });
  });

  after(async () => {
    if (redis?.pid) process.kill(redis.pid, 'SIGCONT');
    await app?.close();
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Times `n` reads that ask Redis for a fence (the JSON API) and a cached page (the simple index). */
  async function timings(n: number): Promise<number[]> {
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      const [a, b] = await Promise.all([fetch(`${app.url}/pypi/frozen-${i}/json`), fetch(`${app.url}/simple/`)]);
      await a.text();
      await b.text();
      expect([a.status, b.status]).to.deep.equal([404, 200]);
      out.push(performance.now() - t0);
    }
    return out;
  }

  it("answers every request, and at most a couple wait for Redis's time-out", async function () {
    this.timeout(60_000);
    await timings(5);
    process.kill(redis.pid!, 'SIGSTOP');
    const frozen = await timings(50);
    const slow = frozen.filter((ms) => ms >= 200);
    expect(slow.length, `requests that waited on the frozen Redis: ${slow.map((ms) => Math.round(ms)).join(', ')} ms`).to.be.at.most(4);
    process.kill(redis.pid!, 'SIGCONT');
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    const back = await fetch(`${app.url}/simple/`);
    await back.text();
    expect(back.headers.get('x-banyan-cache'), 'the page cache is used again once Redis answers').to.be.oneOf(['hit', 'miss']);
  });
});
