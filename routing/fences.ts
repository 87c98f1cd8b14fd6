import { Redis } from 'ioredis';

/** What to do with reads that declare a resource when Redis cannot be asked. */
export type FencesWhenDown = 'skip' | 'primary';

export interface FenceStoreOptions {
  readonly redisUrl: string | undefined;
  /** How long a fence lives: longer than any replica is allowed to lag. */
  readonly ttlMs?: number;
  readonly whenDown?: FencesWhenDown;
}

// Keeps the higher of the stored and the new LSN (as numbers), and refreshes the TTL.
const RAISE = `
local current = redis.call('GET', KEYS[1])
if (not current) or tonumber(current) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1`;

/**
 * Resource fences: a write to `project:<name>` records its LSN in Redis, and
 * every client's read that declares that resource must see at least that LSN,
 * not only the writer's session (`twine upload` in one process, `pip install`
 * in another). Redis being down degrades this feature, never availability.
 */
export class FenceStore {
  readonly #redis: Redis | undefined;
  readonly #ttlMs: number;
  readonly whenDown: FencesWhenDown;
  /** Fence reads or writes skipped because Redis did not answer. */
  skipped = 0;

  constructor(options: FenceStoreOptions) {
    this.#ttlMs = options.ttlMs ?? 60_000;
    this.whenDown = options.whenDown ?? 'skip';
    if (options.redisUrl) {
      this.#redis = new Redis(options.redisUrl, {
        enableOfflineQueue: false, maxRetriesPerRequest: 0, connectTimeout: 500, commandTimeout: 250,
        retryStrategy: (times) => Math.min(times * 200, 2_000),
      });
      this.#redis.on('error', () => {});
    }
  }

  /** Records that `resource` was written at `lsn`. */
  async raise(resource: string, lsn: bigint): Promise<void> {
    if (!this.#redis) return;
    try {
      await this.#redis.eval(RAISE, 1, key(resource), lsn.toString(), String(this.#ttlMs));
    } catch {
      this.skipped++;
    }
  }

  /**
   * The highest fence over `resources`: an LSN, undefined when none is set, or
   * `primary` when Redis cannot be asked and such reads are configured to go there.
   */
  async fenceFor(resources: readonly string[]): Promise<bigint | undefined | 'primary'> {
    if (!this.#redis || resources.length === 0) return undefined;
    try {
      const values = await this.#redis.mget(resources.map(key));
      let highest: bigint | undefined;
      for (const v of values) {
        if (v === null) continue;
        const lsn = BigInt(v);
        if (highest === undefined || lsn > highest) highest = lsn;
      }
      return highest;
    } catch {
      this.skipped++;
      return this.whenDown === 'primary' ? 'primary' : undefined;
    }
  }

  close(): void {
    this.#redis?.disconnect();
  }
}

function key(resource: string): string {
  return `banyan:fence:${resource}`;
}

