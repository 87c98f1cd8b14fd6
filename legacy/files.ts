import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { FileStore } from '../lib/file-store.js';
import { notFound, type LegacyRequest } from './http.js';

/**
 * `/packages/<content address>`: the stored file, read from the store both
 * backends share. The old index served files with a length and a date and
 * nothing more: no ranges, no ETag, an hour of caching.
 */
export async function servePackage(r: LegacyRequest, store: FileStore, path: string): Promise<void> {
  const absolute = store.resolve(path);
  const info = absolute ? await stat(absolute).catch(() => undefined) : undefined;
  if (!absolute || !info?.isFile()) return notFound(r.res, `No file at /packages/${path}.`);
  r.res.writeHead(200, {
    'Content-Type': 'application/octet-stream',
    'Content-Length': info.size,
    'Last-Modified': info.mtime.toUTCString(),
    'Cache-Control': 'max-age=3600',
  });
  if (r.req.method === 'HEAD') {
    r.res.end();
    return;
  }
  const stream = createReadStream(absolute);
  stream.on('error', () => r.res.destroy());
  r.res.on('close', () => stream.destroy());
  stream.pipe(r.res);
}
