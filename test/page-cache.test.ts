import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { PageCache, type CachedPage } from '../app/page-cache.js';
import { services } from './support/services.js';
import { waitUntil } from './support/wait.js';

const page = (body: string): CachedPage => ({ type: 'text/html', etag: `"${body}"`, body });

describe('the page cache: Redis, and the copy each process holds', () => {
  it("serves a held page only while its generation and Redis's era are unchanged, even after Redis loses its data", async () => {
    const s = await services();
    const a = new PageCache(s.redisUrl!);
    const b = new PageCache(s.redisUrl!);
    const redis = new Redis(s.redisUrl!);
    const key = `test-page-${process.pid}`;
    try {
      // A cache on the request path does not queue commands: wait until both are connected.
      for (const cache of [a, b])
        await waitUntil('the cache reaches Redis', async () => (await cache.get('probe', 'x')).generation !== undefined, 5_000);
      let lookup = await a.get(key, 'html');
      expect(lookup.page).to.equal(undefined);
      await a.put(key, lookup, 'html', page('one'));
      expect((await a.get(key, 'html')).page?.body, 'held by this process').to.equal('one');
      expect((await b.get(key, 'html')).page?.body, 'another process reads it from Redis').to.equal('one');

      await a.invalidate(key);
      lookup = await a.get(key, 'html');
      expect(lookup.page, 'a write makes the held copy unreachable').to.equal(undefined);
      await a.put(key, lookup, 'html', page('two'));
      expect((await a.get(key, 'html')).page?.body).to.equal('two');
      expect((await b.get(key, 'html')).page?.body).to.equal('two');

      // Redis restarts empty: generations start again from 0 and climb back to where the held copies are.
      await redis.flushall();
      lookup = await a.get(key, 'html');
      expect(lookup.page).to.equal(undefined);
      await a.put(key, lookup, 'html', page('three'));
      await a.invalidate(key);
      expect((await a.get(key, 'html')).page, 'generation 1 again, but of a new era: "two" is not served').to.equal(undefined);
      expect((await b.get(key, 'html')).page, 'nor by the other process').to.equal(undefined);
    } finally {
      a.close();
      b.close();
      redis.disconnect();
    }
  });

  it("serves a giant project's 20 MB page from Redis to another process, stored gzipped", async function () {
    this.timeout(30_000);
    const s = await services();
    const a = new PageCache(s.redisUrl!);
    const b = new PageCache(s.redisUrl!);
    const redis = new Redis(s.redisUrl!);
    const key = `test-giant-${process.pid}`;
    // Like a simple page of 50,000 files: names, URLs and a SHA-256 each (random, as real digests are).
    const files = Array.from({ length: 50_000 }, (_, i) => ({
      filename: `giant-${i}.0-py3-none-any.whl`,
      url: `/files/${randomBytes(16).toString('hex')}/giant-${i}.0-py3-none-any.whl`,
      hashes: { sha256: randomBytes(32).toString('hex') },
      'requires-python': '>=3.8',
      yanked: false,
    }));
    const body = JSON.stringify({ meta: { 'api-version': '1.1' }, name: 'giant', files }).repeat(2);
    expect(body.length).to.be.above(20_000_000);
    try {
      for (const cache of [a, b])
        await waitUntil('the cache reaches Redis', async () => (await cache.get('probe', 'x')).generation !== undefined, 5_000);
      const lookup = await a.get(key, 'json');
      await a.put(key, lookup, 'json', { type: 'application/vnd.pypi.simple.v1+json', etag: '"giant"', body });
      const served = await b.get(key, 'json');
      expect(served.generation, "Redis answered within the request path's time limit").to.not.equal(undefined);
      expect(served.page?.body === body, 'the other process gets the page, whole').to.equal(true);
      const stored = await redis.strlen(`banyan:cache:page:${key}:${lookup.generation}:json`);
      expect(stored, 'stored gzipped').to.be.below(body.length / 2);
    } finally {
      a.close();
      b.close();
      redis.disconnect();
    }
  });
});
