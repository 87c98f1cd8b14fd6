import { sql, type Kysely } from 'kysely';
import { RequestPathRedis } from '../lib/redis.js';
import type { IndexDatabase } from './schema.js';
import { writeHeaders, type WalPosition } from '../lib/lsn.js';

/** The cache key of a project's simple page, and of the project list. */
export const projectCacheKey = (normalized: string) => `simple:${normalized}`;
export const INDEX_CACHE_KEY = 'simple:_index';
/** The resource that reads of the project list declare (a project was added). */
export const INDEX_RESOURCE = 'index';
/** The resource that reads of one project declare. */
export const projectResource = (normalized: string) => `project:${normalized}`;

/** The Redis key holding a cache key's generation: pages are stored under it, a write bumps it. */
export function generationKey(key: string): string {
  return `banyan:cache:gen:${key}`;
}

/** Bumps cache generations in Redis; whoever caches pages under them (the new app) never serves the old ones again. */
export interface GenerationBumper {
  /** False when Redis did not answer. */
  invalidate(...keys: string[]): Promise<boolean>;
}

/**
 * A bare generation bumper, for writers that cache nothing themselves (the
 * legacy backend): it only makes the pages others cached unreachable.
 */
export class CacheGenerations implements GenerationBumper {
  readonly #redis: RequestPathRedis | undefined;

  constructor(redisUrl: string | undefined) {
    if (redisUrl) {
      this.#redis = new RequestPathRedis(redisUrl);
    }
  }

  invalidate(...keys: string[]): Promise<boolean> {
    return bumpGenerations(this.#redis, keys);
  }

  close(): void {
    this.#redis?.disconnect();
  }
}

/** Bumps the generations of `keys` in one round trip; false when Redis did not answer (true with no Redis). */
export async function bumpGenerations(redis: RequestPathRedis | undefined, keys: readonly string[]): Promise<boolean> {
  if (!redis || keys.length === 0) return true;
  try {
    await redis.run((r) => {
      const multi = r.multi();
      for (const key of keys) multi.incr(generationKey(key));
      return multi.exec();
    });
    return true;
  } catch {
    return false;
  }
}

/**
 * What every writer, in either backend, does after its commit, in this
 * order: take the WAL position, raise the written projects' fences, then bump
 * their cache generations. A reader that misses the cache because of the bump
 * must then see the fence, so it can never cache a page older than the write.
 */
export class WriteAnnouncer {
  constructor(
    readonly router: { currentPosition(): Promise<WalPosition> },
    readonly fences: { raise(resource: string, position: WalPosition): Promise<void> } | undefined,
    readonly cache: GenerationBumper | undefined,
  ) {}

  /** Returns the headers that report the commit's position (`X-Banyan-Write-LSN`, `X-Banyan-Write-Timeline`). */
  async announce(projects: readonly string[], indexChanged: boolean): Promise<Record<string, string>> {
    const lsn = await this.router.currentPosition();
    for (const p of projects) await this.fences?.raise(projectResource(p), lsn);
    if (indexChanged) await this.fences?.raise(INDEX_RESOURCE, lsn);
    const keys = projects.map(projectCacheKey);
    if (indexChanged) keys.push(INDEX_CACHE_KEY);
    if (this.cache && !(await this.cache.invalidate(...keys))) {
      console.error(
        `cache: could not invalidate ${keys.join(', ')} (Redis unreachable); cached pages expire on their own within their TTL`,
      );
    }
    return writeHeaders(lsn);
  }
}

/**
 * Serializes writes to one project across both backends, for the rest of the
 * transaction: the checks a writer makes and its inserts see one state.
 */
export async function lockProject(trx: Kysely<IndexDatabase>, normalized: string): Promise<void> {
  await sql`SELECT pg_advisory_xact_lock(hashtext(${`banyan-upload:${normalized}`}))`.execute(trx);
}

/** Appends to the project's journal and moves its `last_serial` there (what mirrors and `X-PyPI-Last-Serial` follow). */
export async function journal(
  trx: Kysely<IndexDatabase>,
  projectId: string,
  name: string,
  version: string | null,
  action: string,
  by: string | null,
): Promise<void> {
  const row = await trx
    .insertInto('journal')
    .values({ project_name: name, version, action, submitted_by: by })
    .returning('id')
    .executeTakeFirstOrThrow();
  await trx.updateTable('projects').set({ last_serial: row.id }).where('id', '=', projectId).execute();
}
