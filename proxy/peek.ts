import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { bodyFeature, type FeatureExtractor } from '../routing/table/index.js';

/**
 * Reads the start of a request body (at most 64 KiB, and only until the
 * feature is known), and returns the feature with a body that replays those
 * bytes and then streams the rest: the backend receives exactly what the
 * client sent. A body already read whole is looked at as it is.
 */
export async function peekFeature(
  req: IncomingMessage,
  extractors: readonly FeatureExtractor[],
  source: Readable | Buffer = req,
): Promise<{ feature: string | undefined; body: Readable | Buffer }> {
  const contentType = req.headers['content-type'] ?? '';
  if (Buffer.isBuffer(source)) return { feature: bodyFeature(extractors, contentType, source, true).feature, body: source };
  const iterator = source[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const seen: Buffer[] = [];
  let buffered: Buffer = Buffer.alloc(0);
  let ended = false;
  let feature: string | undefined;
  for (;;) {
    const found = bodyFeature(extractors, contentType, buffered, ended);
    if (found.done || ended) {
      feature = found.feature;
      break;
    }
    const next = await iterator.next();
    if (next.done) {
      ended = true;
      continue;
    }
    seen.push(next.value);
    buffered = seen.length === 1 ? next.value : Buffer.concat([buffered, next.value]);
  }
  async function* replay(): AsyncGenerator<Buffer> {
    yield* seen;
    if (ended) return;
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) yield next.value;
  }
  return { feature, body: Readable.from(replay(), { objectMode: false }) };
}
