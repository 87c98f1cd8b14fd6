import type Koa from 'koa';
import { etagOf, type CachedPage } from './page-cache.js';

export interface CachePolicy {
  /** Cache-Control for browsers and clients. */
  readonly cacheControl: string;
  /** Surrogate-Key values, so a CDN can purge every page of a project at once. */
  readonly surrogateKeys: readonly string[];
  readonly vary?: string;
}

/** A rendered page from a body and content type. */
export function renderedPage(type: string, body: string, serial?: number): CachedPage {
  return { type, body, etag: etagOf(body), serial };
}

/** Sends a page with its ETag and caching headers, or 304 when the client's copy is current. */
export function sendPage(ctx: Koa.Context, page: CachedPage, policy: CachePolicy): void {
  ctx.status = 200;
  ctx.set('ETag', page.etag);
  ctx.set('Cache-Control', policy.cacheControl);
  if (policy.surrogateKeys.length > 0) ctx.set('Surrogate-Key', policy.surrogateKeys.join(' '));
  if (policy.vary) ctx.vary(policy.vary);
  if (page.serial !== undefined) ctx.set('X-PyPI-Last-Serial', String(page.serial));
  ctx.type = page.type;
  if (notModified(ctx, page.etag)) {
    ctx.status = 304;
    return;
  }
  ctx.body = page.body;
}

/**
 * RFC 9110 If-None-Match at the origin: true when any listed tag matches
 * (weak comparison) or the list is `*`. Unlike Koa's `ctx.fresh`, this does not
 * ignore a client's `Cache-Control: no-cache`: that asks caches to revalidate,
 * and answering the revalidation is exactly this.
 */
export function notModified(ctx: Koa.Context, etag: string): boolean {
  if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return false;
  const header = ctx.get('If-None-Match');
  if (!header) return false;
  if (header.trim() === '*') return true;
  const bare = etag.replace(/^W\//, '');
  return header.split(',').some((tag) => tag.trim().replace(/^W\//, '') === bare);
}
