import { createHash } from 'node:crypto';
import { RequestPathRedis } from '../lib/redis.js';
import { bumpGenerations, generationKey, type GenerationBumper } from '../lib/write-announcer.js';

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

// One round trip: the key's generation, then the page stored under it.
const LOOKUP = `
local gen = redis.call('GET', KEYS[1]) or '0'
return {gen, redis.call('GET', ARGV[1] .. gen .. ':' .. ARGV[2])}`;

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
 */
export class PageCache implements GenerationBumper {
  readonly #redis: RequestPathRedis | undefined;
  readonly #ttlSeconds: number;

  constructor(redisUrl: string | undefined, ttlSeconds = 300) {
    this.#ttlSeconds = ttlSeconds;
    if (redisUrl) {
      this.#redis = new RequestPathRedis(redisUrl);
    }
  }

  async get(key: string, variant: string): Promise<Lookup> {
    if (!this.#redis) return { generation: undefined, page: undefined };
    try {
      const [generation, stored] = await this.#redis.run((r) => r.eval(LOOKUP, 1, generationKey(key), pagePrefix(key), variant)) as [string, string | null];
      return { generation, page: stored ? JSON.parse(stored) as CachedPage : undefined };
    } catch {
      return { generation: undefined, page: undefined };
    }
  }

  async put(key: string, lookup: Lookup, variant: string, page: CachedPage): Promise<void> {
    if (!this.#redis || lookup.generation === undefined) return;
    try {
      await this.#redis.run((r) => r.set(`${pagePrefix(key)}${lookup.generation}:${variant}`, JSON.stringify(page), 'EX', this.#ttlSeconds));
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

function pagePrefix(key: string): string {
  return `banyan:cache:page:${key}:`;
}
