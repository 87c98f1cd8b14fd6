import { formatLsn } from '../routing/lsn.js';
import type { DbRouter } from '../routing/db-router.js';
import type { FenceStore } from '../routing/fences.js';
import type { PageCache } from './page-cache.js';

/** The cache key of a project's simple page, and of the project list. */
export const projectCacheKey = (normalized: string) => `simple:${normalized}`;
export const INDEX_CACHE_KEY = 'simple:_index';
/** The resource that reads of the project list declare (a project was added). */
export const INDEX_RESOURCE = 'index';

/**
 * What every writer does after its commit, in this order: take the WAL
 * position, raise the written projects' fences, then bump their cache
 * generations. A reader that misses the cache because of the bump must then
 * see the fence, so it can never cache a page older than the write.
 */
export class WriteAnnouncer {
  constructor(readonly router: DbRouter, readonly fences: FenceStore | undefined, readonly cache: PageCache | undefined) {}

  /** Returns the commit's LSN as text, for `X-Banyan-Write-LSN`. */
  async announce(projects: readonly string[], indexChanged: boolean): Promise<string> {
    const lsn = await this.router.currentLsn();
    for (const p of projects) await this.fences?.raise(`project:${p}`, lsn);
    if (indexChanged) await this.fences?.raise(INDEX_RESOURCE, lsn);
    const keys = projects.map(projectCacheKey);
    if (indexChanged) keys.push(INDEX_CACHE_KEY);
    if (this.cache && !(await this.cache.invalidate(...keys))) {
      console.error(`cache: could not invalidate ${keys.join(', ')} (Redis unreachable); cached pages expire on their own within their TTL`);
    }
    return formatLsn(lsn);
  }
}
