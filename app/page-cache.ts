import { createHash, randomUUID } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import { RequestPathRedis } from '../lib/redis.js';
import { bumpGenerations, generationKey, type GenerationBumper } from '../package-index/write-announcer.js';

/** A rendered page as stored: its body, type and strong ETag. */
export interface CachedPage {
  readonly type: string;
  readonly etag: string;
  readonly body: string;
  /** The journal serial the page reflects, sent as `X-PyPI-Last-Serial` (mirrors compare it). */
  readonly serial?: number | undefined;
}

/** A strong ETag for a body. */
export function etagOf(body: string | Buffer): string {
  return `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`;
}

// One round trip: the key's generation, then the page stored under it, unless the caller already holds
// that generation's page (ARGV[3]): then only the generation comes back, not the page again. Generations
// restart from 0 when Redis loses its data, so a held page is matched on the generation and Redis's era: a
// random value set once (ARGV[4], a fresh one on every call) and gone with the data.
const LOOKUP = `
local gen = redis.call('GET', KEYS[1]) or '0'
redis.call('SET', KEYS[2], ARGV[4], 'NX')
local stamp = redis.call('GET', KEYS[2]) .. ':' .. gen
if stamp == ARGV[3] then return {gen, stamp} end
return {gen, stamp, redis.call('GET', ARGV[1] .. gen .. ':' .. ARGV[2])}`;
const ERA_KEY = 'banyan:cache:era';

/** Pages this process keeps beside Redis (their generation is still checked on every request), and the largest one kept. */
const LOCAL_BYTES = 96 * 1024 * 1024;
// A giant project's simple page (tens of MB) included: it is the page most worth holding, since moving it
// out of Redis on every request costs more than rendering a small project's page.
const LOCAL_PAGE_MAX = 64 * 1024 * 1024;

export interface Lookup {
  /** The generation the page was looked up under; undefined when Redis did not answer (do not store). */
  readonly generation: string | undefined;
  readonly page: CachedPage | undefined;
}

/**
 * Rendered pages in Redis (the simple index and detail pages), keyed by a
 * per-key generation. A write bumps the generation after its commit and after
 * raising the resource's fence, so a reader that sees the new generation also
 * sees the fence and reads fresh data; a page rendered from older data can
 * only be stored under the old generation, which nobody looks up any more.
 * Redis being down turns caching off, never the site.
 *
 * Each process also keeps the pages it served last (up to 96 MiB, a giant
 * project's page included) with their generation: Redis is still asked for the generation on
 * every request, but a page this process holds for it is not sent again.
 */
export class PageCache implements GenerationBumper {
  readonly #redis: RequestPathRedis | undefined;
  readonly #ttlSeconds: number;
  /** key and variant → the generation and the page; Map order is the least recently used first. */
  readonly #local = new Map<string, { stamp: string; page: CachedPage; bytes: number }>();
  /** The era and generation each key's last lookup saw, for put(). */
  readonly #stamps = new Map<string, string>();
  #localBytes = 0;

  constructor(redisUrl: string | undefined, ttlSeconds = 300) {
    this.#ttlSeconds = ttlSeconds;
    if (redisUrl) {
      this.#redis = new RequestPathRedis(redisUrl);
    }
  }

  async get(key: string, variant: string): Promise<Lookup> {
    if (!this.#redis) return { generation: undefined, page: undefined };
    const localKey = `${key}\u0000${variant}`;
    const held = this.#local.get(localKey);
    try {
      const [generation, stamp, stored] = (await this.#redis.run((r) =>
        r.eval(LOOKUP, 2, generationKey(key), ERA_KEY, pagePrefix(key), variant, held?.stamp ?? '', randomUUID()),
      )) as [string, string, (string | null)?];
      if (held && stamp === held.stamp) {
        this.#local.delete(localKey);
        this.#local.set(localKey, held);
        return { generation, page: held.page };
      }
      if (this.#stamps.size > 10_000) this.#stamps.clear();
      this.#stamps.set(localKey, stamp);
      const page = stored ? fromStored(stored) : undefined;
      if (page) this.#remember(localKey, stamp, page);
      return { generation, page };
    } catch {
      return { generation: undefined, page: undefined };
    }
  }

  #remember(localKey: string, stamp: string, page: CachedPage): void {
    const before = this.#local.get(localKey);
    if (before) {
      this.#local.delete(localKey);
      this.#localBytes -= before.bytes;
    }
    const bytes = page.body.length * 2;
    if (bytes > LOCAL_PAGE_MAX) return;
    this.#local.set(localKey, { stamp, page, bytes });
    this.#localBytes += bytes;
    for (const [k, v] of this.#local) {
      if (this.#localBytes <= LOCAL_BYTES) break;
      this.#local.delete(k);
      this.#localBytes -= v.bytes;
    }
  }

  async put(key: string, lookup: Lookup, variant: string, page: CachedPage): Promise<void> {
    if (!this.#redis || lookup.generation === undefined) return;
    const localKey = `${key}\u0000${variant}`;
    const stamp = this.#stamps.get(localKey);
    // Only under the era and generation it was looked up with: a page rendered meanwhile from older data is never held as newer.
    if (stamp !== undefined && stamp.endsWith(`:${lookup.generation}`)) this.#remember(localKey, stamp, page);
    await this.#store(key, lookup.generation, variant, toStored(page));
  }

  /**
   * Stores a page that was streamed to its client, given gzipped: it is kept in Redis only (the
   * next hit holds it here), so rendering a giant's page never needs the whole body in memory.
   */
  async putGzipped(key: string, lookup: Lookup, variant: string, page: Omit<CachedPage, 'body'>, gzip: Buffer): Promise<void> {
    if (!this.#redis || lookup.generation === undefined) return;
    await this.#store(key, lookup.generation, variant, JSON.stringify({ ...page, gzip: gzip.toString('base64') }));
  }

  async #store(key: string, generation: string, variant: string, stored: string): Promise<void> {
    try {
      await this.#redis!.run((r) => r.set(`${pagePrefix(key)}${generation}:${variant}`, stored, 'EX', this.#ttlSeconds));
    } catch {
      // A page not cached is only slower.
    }
  }

  /** Makes every cached variant of these keys unreachable. */
  invalidate(...keys: string[]): Promise<boolean> {
    return bumpGenerations(this.#redis, keys);
  }

  close(): void {
    this.#redis?.disconnect();
  }
}

/**
 * Pages this long are kept in Redis gzipped. A giant project's simple page is
 * tens of MB: stored whole, moving it in and out of Redis took longer than
 * the request path's command timeout, so it was never served from the cache,
 * and the timeouts counted against Redis's health.
 */
const STORE_GZIPPED_FROM = 256 * 1024;

function toStored(page: CachedPage): string {
  if (page.body.length < STORE_GZIPPED_FROM) return JSON.stringify(page);
  const { body, ...rest } = page;
  return JSON.stringify({ ...rest, gzip: gzipSync(body).toString('base64') });
}

function fromStored(stored: string): CachedPage {
  const raw = JSON.parse(stored) as CachedPage & { gzip?: string };
  if (raw.gzip === undefined) return raw;
  const { gzip, ...rest } = raw;
  return { ...rest, body: gunzipSync(Buffer.from(gzip, 'base64')).toString() };
}

function pagePrefix(key: string): string {
  return `banyan:cache:page:${key}:`;
}
