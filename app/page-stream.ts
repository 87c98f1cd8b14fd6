import type Koa from 'koa';
import { createHash } from 'node:crypto';
import { PassThrough, type Writable } from 'node:stream';
import { createGzip } from 'node:zlib';
import { pageHeaders, renderedPage, sendPage, type CacheCounter, type CachePolicy } from './http-cache.js';
import type { CachedPage, Lookup, PageCache } from './page-cache.js';

/** A page to render: its type and serial, known before the body, and the body in pieces. */
export interface PageSource {
  readonly type: string;
  readonly serial?: number | undefined;
  /** The body in order, a batch of rows' worth at a time. */
  readonly chunks: AsyncIterable<string> | Iterable<string>;
}

/** Where a rendered page may be stored: the cache, the key and variant it was looked up under. */
export interface PageStore {
  readonly cache: PageCache;
  readonly lookup: Lookup;
  readonly key: string;
  readonly variant: string;
}

/**
 * Pages that render to at most this many characters are sent whole, with an ETag and a
 * Content-Length, as before; longer ones (a giant's simple page or JSON API) stream.
 */
export const WHOLE_PAGE_MAX = 1024 * 1024;

/**
 * Sends a page from its source. A page that fits WHOLE_PAGE_MAX is sent whole (ETag,
 * Content-Length, 304s) and stored in `store`; a longer one is streamed as it is rendered,
 * without an ETag (which needs the whole body), gzipped when the client accepts it, and
 * stored gzipped once complete, so the next request gets it whole with its ETag. Memory
 * is a batch of rows plus what the client has not read yet (a stream's high-water mark),
 * whatever the page's size. An error before the first byte is thrown as usual; after it,
 * the response is cut, so a client sees a broken transfer, never a short page.
 */
export async function sendSource(ctx: Koa.Context, source: PageSource, policy: CachePolicy, store?: PageStore): Promise<void> {
  const chunks = source.chunks;
  const it =
    Symbol.asyncIterator in chunks
      ? chunks[Symbol.asyncIterator]()
      : (async function* () {
          yield* chunks;
        })();
  const head: string[] = [];
  let size = 0;
  for (;;) {
    if (size > WHOLE_PAGE_MAX) break;
    const next = await it.next();
    if (next.done) {
      const page = renderedPage(source.type, head.join(''), source.serial);
      if (store) await store.cache.put(store.key, store.lookup, store.variant, page);
      sendPage(ctx, page, policy);
      return;
    }
    head.push(next.value);
    size += next.value.length;
  }
  const gzip = pageHeaders(ctx, source.type, source.serial, policy, true);
  if (gzip) ctx.set('Content-Encoding', 'gzip');
  const out = new PassThrough();
  ctx.body = out;
  if (ctx.method === 'HEAD') {
    await it.return?.();
    out.end();
    return;
  }
  void pump(ctx, out, gzip, head, it, source, store);
}

async function pump(
  ctx: Koa.Context,
  out: PassThrough,
  gzipClient: boolean,
  head: string[],
  it: AsyncIterator<string>,
  source: PageSource,
  store: PageStore | undefined,
): Promise<void> {
  const hash = createHash('sha256');
  // One gzip stream serves both the client (when it accepts gzip) and the copy for the cache.
  const gz = gzipClient || store ? createGzip() : undefined;
  const stored: Buffer[] = [];
  if (gz && store) gz.on('data', (chunk: Buffer) => stored.push(chunk));
  if (gz && gzipClient) gz.pipe(out);
  const sinks: Writable[] = [...(gz ? [gz] : []), ...(gzipClient ? [] : [out])];
  const gone = () => out.destroyed || ctx.res.destroyed;
  try {
    const write = async (text: string) => {
      if (gone()) return;
      const bytes = Buffer.from(text);
      hash.update(bytes);
      for (const sink of sinks) if (!sink.write(bytes)) await drained(sink);
    };
    for (const text of head) await write(text);
    head.length = 0;
    for (;;) {
      if (gone()) {
        await it.return?.();
        gz?.destroy();
        return;
      }
      const next = await it.next();
      if (next.done) break;
      await write(next.value);
    }
    const finished = gz ? new Promise<void>((resolve, reject) => gz.once('end', resolve).once('error', reject)) : Promise.resolve();
    gz?.end();
    if (!gzipClient) out.end();
    await finished;
    if (store) {
      await store.cache.putGzipped(
        store.key,
        store.lookup,
        store.variant,
        { type: source.type, serial: source.serial, etag: `"${hash.digest('base64url').slice(0, 27)}"` },
        Buffer.concat(stored),
      );
    }
  } catch (err) {
    gz?.destroy();
    // Headers are gone: cutting the connection is the only way left to tell the client the page is not whole.
    out.destroy();
    ctx.res.destroy();
    ctx.app.emit('error', err, ctx);
  }
}

/** Resolves when `sink` wants more, or is gone. */
function drained(sink: Writable): Promise<void> {
  if (sink.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      sink.off('drain', done);
      sink.off('close', done);
      resolve();
    };
    sink.on('drain', done);
    sink.on('close', done);
  });
}

/** The cache lookup for a page, and the store to put it in when it is rendered. */
export async function lookupPage(
  ctx: Koa.Context,
  cache: PageCache | undefined,
  counted: CacheCounter,
  key: string,
  variant: string,
): Promise<{ hit?: CachedPage; store?: PageStore }> {
  const lookup = cache ? await cache.get(key, variant) : undefined;
  if (lookup?.page) {
    ctx.set('X-Banyan-Cache', 'hit');
    counted('hit');
    return { hit: lookup.page };
  }
  const result = lookup?.generation === undefined ? 'off' : 'miss';
  ctx.set('X-Banyan-Cache', result);
  counted(result);
  return lookup && cache && lookup.generation !== undefined ? { store: { cache, lookup, key, variant } } : {};
}

/**
 * Rendered parts joined into pieces of about PIECE_CHARS. A piece that size dies young: V8 puts
 * strings of a megabyte or more straight into its large-object space, where only a full
 * collection frees them, and a giant's page made of such batches grew the heap by hundreds of MB.
 */
export function* inPieces(parts: readonly string[], separator: string): Generator<string> {
  let from = 0;
  let size = 0;
  for (let i = 0; i < parts.length; i++) {
    size += parts[i]!.length;
    if (size >= PIECE_CHARS) {
      yield parts.slice(from, i + 1).join(separator);
      from = i + 1;
      size = 0;
    }
  }
  if (from < parts.length) yield parts.slice(from).join(separator);
}

const PIECE_CHARS = 64 * 1024;
