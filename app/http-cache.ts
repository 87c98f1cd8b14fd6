import type Koa from 'koa';
import { gzipSync } from 'node:zlib';
import { etagOf, type CachedPage } from './page-cache.js';

export interface CachePolicy {
  /** Cache-Control for browsers and clients. */
  readonly cacheControl: string;
  /** Surrogate-Key values, so a CDN can purge every page of a project at once. */
  readonly surrogateKeys: readonly string[];
  readonly vary?: string;
  /** A read API any page may fetch (`Access-Control-Allow-Origin: *`). */
  readonly cors?: boolean;
}

/** Told whether each cached page was a hit, a miss, or served with the cache off. */
export type CacheCounter = (result: 'hit' | 'miss' | 'off') => void;

/** A rendered page from a body and content type. */
export function renderedPage(type: string, body: string, serial?: number): CachedPage {
  return { type, body, etag: etagOf(body), serial };
}

/** Pages at least this long go gzipped to clients that accept it (pip does; so do browsers). */
const GZIP_MIN_BYTES = 1_024;
/** Gzipped bodies by ETag: a cached page is compressed once, not on every hit. */
const gzipped = new Map<string, Buffer>();
const GZIP_MEMO = 256;

/**
 * Sends a page with its ETag and caching headers, or 304 when the client's copy is current.
 * A page of 1 KiB or more goes gzipped when the client accepts it, with an ETag of its own
 * (`"…-gzip"`: another representation) and `Vary: Accept-Encoding`.
 */
export function sendPage(ctx: Koa.Context, page: CachedPage, policy: CachePolicy): void {
  const bytes = bytesOf(page);
  const compressible = bytes.length >= GZIP_MIN_BYTES;
  const gzip = pageHeaders(ctx, page.type, page.serial, policy, compressible);
  const etag = gzip ? page.etag.replace(/"$/, '-gzip"') : page.etag;
  ctx.set('ETag', etag);
  if (notModified(ctx, etag)) {
    ctx.status = 304;
    return;
  }
  if (!gzip) {
    ctx.body = bytes;
    return;
  }
  let body = gzipped.get(etag);
  if (!body) {
    body = gzipSync(page.body);
    if (gzipped.size >= GZIP_MEMO) gzipped.delete(gzipped.keys().next().value!);
    gzipped.set(etag, body);
  }
  ctx.set('Content-Encoding', 'gzip');
  ctx.body = body;
}

/**
 * A page's status and headers, but its ETag: the caching policy, the serial and the type.
 * Returns whether the body goes gzipped (`compressible` and the client accepts it).
 */
export function pageHeaders(
  ctx: Koa.Context,
  type: string,
  serial: number | undefined,
  policy: CachePolicy,
  compressible: boolean,
): boolean {
  ctx.status = 200;
  ctx.set('Cache-Control', policy.cacheControl);
  if (policy.surrogateKeys.length > 0) ctx.set('Surrogate-Key', policy.surrogateKeys.join(' '));
  if (policy.vary) ctx.vary(policy.vary);
  if (compressible) ctx.vary('Accept-Encoding');
  if (serial !== undefined) ctx.set('X-PyPI-Last-Serial', String(serial));
  if (policy.cors) ctx.set('Access-Control-Allow-Origin', '*');
  ctx.type = type;
  return compressible && acceptsGzip(ctx.get('Accept-Encoding'));
}

// Each page's UTF-8 bytes, encoded once per page object: a page the process holds is sent again and again,
// and a string body is measured and encoded on every send (three passes over a 500 KB page).
const encoded = new WeakMap<CachedPage, Buffer>();

function bytesOf(page: CachedPage): Buffer {
  let bytes = encoded.get(page);
  if (!bytes) encoded.set(page, (bytes = Buffer.from(page.body)));
  return bytes;
}

/** Whether an Accept-Encoding header allows gzip (by name or `*`, with q above 0). */
export function acceptsGzip(header: string): boolean {
  let gzip: number | undefined;
  let any: number | undefined;
  for (const part of header.split(',')) {
    const [name = '', ...params] = part.split(';').map((s) => s.trim().toLowerCase());
    const q = Number(params.find((p) => p.startsWith('q='))?.slice(2) ?? 1);
    if (name === 'gzip' || name === 'x-gzip') gzip = q;
    else if (name === '*') any = q;
  }
  return (gzip ?? any ?? 0) > 0;
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
