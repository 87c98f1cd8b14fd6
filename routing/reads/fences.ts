import { RequestPathRedis } from '../../lib/redis.js';
import { laterPosition, type WalPosition } from '../../lib/lsn.js';
import type { ReadFence } from './db-router.js';

/** What to do with reads that declare a resource when Redis cannot be asked. */
export type FencesWhenDown = 'skip' | 'primary';

export interface FenceStoreOptions {
  readonly redisUrl: string | undefined;
  /** How long a fence lives: longer than any replica is allowed to lag. */
  readonly ttlMs?: number;
  readonly whenDown?: FencesWhenDown;
}

// Keeps the later of the stored and the new position, and refreshes the TTL. A position is "<lsn>" or
// "<lsn>:<timeline>": a newer timeline is later whatever its LSN; otherwise the higher LSN (as numbers).
const RAISE = `
local function parse(v)
  local lsn, tli = string.match(v, '^(%d+):(%d+)$')
  if lsn then return tonumber(lsn), tonumber(tli) end
  return tonumber(v), nil
end
local current = redis.call('GET', KEYS[1])
local later = true
if current then
  local cl, ct = parse(current)
  local nl, nt = parse(ARGV[1])
  if ct and nt and ct ~= nt then later = nt > ct else later = nl > cl end
end
if later then
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

  /** Records that `resource` was written at `position`. */
  async raise(resource: string, position: WalPosition): Promise<void> {
    if (!this.#redis) return;
    const value = position.timeline === undefined ? position.lsn.toString() : `${position.lsn}:${position.timeline}`;
    try {
      await this.#redis.run((r) => r.eval(RAISE, 1, key(resource), value, String(this.#ttlMs)));
    } catch {
      this.skipped++;
    }
  }

  /**
   * The latest fence over `resources`: a position, undefined when none is set, or
   * `primary` when Redis cannot be asked and such reads are configured to go there.
   */
  async fenceFor(resources: readonly string[]): Promise<WalPosition | undefined | 'primary'> {
    if (!this.#redis || resources.length === 0) return undefined;
    try {
      const values = await this.#redis.run((r) => r.mget(resources.map(key)));
      let latest: WalPosition | undefined;
      for (const v of values) {
        const position = v === null ? undefined : parseStored(v);
        if (position) latest = latest ? laterPosition(latest, position) : position;
      }
      return latest;
    } catch {
      this.skipped++;
      return this.whenDown === 'primary' ? 'primary' : undefined;
    }
  }

  close(): void {
    this.#redis?.disconnect();
  }
}

function parseStored(value: string): WalPosition | undefined {
  const match = /^(\d+)(?::(\d+))?$/.exec(value);
  if (!match) return undefined;
  return match[2] === undefined ? { lsn: BigInt(match[1]!) } : { lsn: BigInt(match[1]!), timeline: Number(match[2]) };
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
  if (resourceFence === undefined) return pin;
  const pinned: WalPosition | undefined = pin.minLsn === undefined ? undefined : { lsn: pin.minLsn, timeline: pin.timeline };
  if (pinned && laterPosition(resourceFence, pinned) === pinned) return pin;
  return { primary: pin.primary, minLsn: resourceFence.lsn, timeline: resourceFence.timeline };
}
