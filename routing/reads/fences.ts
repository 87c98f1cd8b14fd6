import { RequestPathRedis } from '../../lib/redis.js';
import type { ReadFence } from './db-router.js';

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
  readonly #redis: RequestPathRedis | undefined;
  readonly #ttlMs: number;
  readonly whenDown: FencesWhenDown;
  /** Fence reads or writes skipped because Redis did not answer. */
  skipped = 0;

  constructor(options: FenceStoreOptions) {
    this.#ttlMs = options.ttlMs ?? 60_000;
    this.whenDown = options.whenDown ?? 'skip';
    if (options.redisUrl) {
      this.#redis = new RequestPathRedis(options.redisUrl);
    }
  }

  /** Records that `resource` was written at `lsn`. */
  async raise(resource: string, lsn: bigint): Promise<void> {
    if (!this.#redis) return;
    try {
      await this.#redis.run((r) => r.eval(RAISE, 1, key(resource), lsn.toString(), String(this.#ttlMs)));
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
      const values = await this.#redis.run((r) => r.mget(resources.map(key)));
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


/**
 * What one request's reads must see: the session's pin (`X-Banyan-Min-LSN`,
 * from the proxy) and the fences of the resources it reads, whichever is
 * later. Both backends build their read handle from this.
 */
export async function requestFence(pin: ReadFence, fences: FenceStore | undefined, resources: readonly string[]): Promise<ReadFence> {
  const resourceFence = fences ? await fences.fenceFor(resources) : undefined;
  if (resourceFence === 'primary') return { primary: true };
  if (resourceFence === undefined || (pin.minLsn !== undefined && pin.minLsn >= resourceFence)) return pin;
  return { primary: pin.primary, minLsn: resourceFence };
}
