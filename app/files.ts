import type Router from '@koa/router';
import { createReadStream } from 'node:fs';
import { notModified } from './http-cache.js';
import type { FileStore } from '../lib/file-store.js';

/**
 * Parses a `Range` header against a size: one byte range, or `unsatisfiable`,
 * or undefined to send the whole file (no header, several ranges, or a unit
 * other than bytes, all of which RFC 9110 lets a server ignore).
 */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  if (!header) return undefined;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m) return undefined;
  const [, from, to] = m as unknown as [string, string, string];
  if (from === '' && to === '') return undefined;
  let start: number;
  let end: number;
  if (from === '') {
    const suffix = Number(to);
    if (suffix === 0) return 'unsatisfiable';
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(from);
    end = to === '' ? size - 1 : Math.min(Number(to), size - 1);
    if (to !== '' && Number(to) < start) return undefined;
  }
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}

/**
 * `/packages/<ab>/<cd>/<digest>/<filename>`: stored files, straight from the
 * content-addressed store. The path holds the SHA-256, so a file never
 * changes: its ETag is the digest, and it may be cached forever.
 */
export function fileRoutes(router: Router, store: FileStore): void {
  router.get('files', '/packages/*path', async (ctx) => {
    const raw = ctx.params['path'] as unknown;
    const path = Array.isArray(raw) ? raw.join('/') : String(raw ?? '');
    const absolute = store.resolve(path);
    const size = absolute ? await store.size(path) : undefined;
    if (!absolute || size === undefined) return ctx.throw(404, `no file at /packages/${path}`);
    const digest = path.slice(0, 2) + path.slice(3, 5) + path.slice(6, 66);
    ctx.set('ETag', `"${digest}"`);
    ctx.set('Cache-Control', 'public, max-age=31536000, immutable');
    ctx.set('Accept-Ranges', 'bytes');
    ctx.set('Content-Disposition', `attachment; filename="${path.slice(path.lastIndexOf('/') + 1)}"`);
    ctx.type = path.endsWith('.whl') || path.endsWith('.zip') ? 'application/zip' : 'application/octet-stream';
    ctx.status = 200;
    if (notModified(ctx, `"${digest}"`)) {
      ctx.status = 304;
      return;
    }
    const ifRange = ctx.get('If-Range');
    const range = ifRange && ifRange !== `"${digest}"` ? undefined : parseRange(ctx.get('Range') || undefined, size);
    if (range === 'unsatisfiable') {
      ctx.status = 416;
      ctx.set('Content-Range', `bytes */${size}`);
      ctx.body = `416 The range is outside the file (${size} bytes).\n`;
      return;
    }
    if (range) {
      ctx.status = 206;
      ctx.set('Content-Range', `bytes ${range.start}-${range.end}/${size}`);
      ctx.length = range.end - range.start + 1;
      if (ctx.method !== 'HEAD') ctx.body = createReadStream(absolute, { start: range.start, end: range.end });
      return;
    }
    ctx.length = size;
    if (ctx.method !== 'HEAD') ctx.body = createReadStream(absolute);
  });
}
