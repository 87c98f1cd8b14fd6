import type { IncomingMessage, ServerResponse } from 'node:http';
import { BanyanError } from './errors.js';
import { isObject } from './objects.js';

/**
 * A whole body (a request, an archive member) in memory, or undefined once it
 * goes over `limit` bytes: reading stops there, and the caller says why.
 */
export async function readUpTo(body: AsyncIterable<unknown>, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
    size += bytes.length;
    if (size > limit) return undefined;
    chunks.push(bytes);
  }
  return Buffer.concat(chunks);
}

/** Reads a small application/x-www-form-urlencoded or JSON body into string fields. */
export async function readFields(req: IncomingMessage, limit = 64 * 1024): Promise<Record<string, string>> {
  const bytes = await readUpTo(req, limit);
  if (!bytes) throw new BanyanError('too-large', `the form is over ${limit} bytes`);
  const text = bytes.toString('utf8');
  if ((req.headers['content-type'] ?? '').includes('application/json')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new BanyanError('bad-request', 'the body is not valid JSON');
    }
    if (!isObject(parsed)) throw new BanyanError('bad-request', 'the body must be a JSON object');
    return Object.fromEntries(Object.entries(parsed).filter(([, v]) => typeof v === 'string')) as Record<string, string>;
  }
  return Object.fromEntries(new URLSearchParams(text));
}

/**
 * A refused request body, closed the way nginx's lingering close does: the answer carries
 * `Connection: close` and goes out at once, and what the client is still sending is read and
 * dropped (never parsed or stored), so a client that sends its whole body before reading
 * (twine does) still sees the answer. After `maxBytes` or `maxMs`, whichever comes first, the
 * connection is cut: a refused client cannot keep a socket and a reader busy for ever.
 */
export function dropBody(req: IncomingMessage, res: ServerResponse, limits: { maxBytes: number; maxMs?: number }): void {
  if (req.readableEnded) return;
  res.shouldKeepAlive = false;
  if (!res.headersSent) res.setHeader('Connection', 'close');
  let dropped = 0;
  const cut = () => {
    clearTimeout(timer);
    req.off('data', count);
    req.socket.destroy();
  };
  const count = (chunk: Buffer) => {
    dropped += chunk.length;
    if (dropped > limits.maxBytes) cut();
  };
  const timer = setTimeout(cut, limits.maxMs ?? 30_000);
  timer.unref();
  req.on('data', count);
  req.once('end', () => clearTimeout(timer));
  req.once('close', () => clearTimeout(timer));
  req.resume();
}
