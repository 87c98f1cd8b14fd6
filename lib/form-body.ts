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

/** How long a refused sender is held (not read, not reset) after its limit, before its connection is closed. */
const LINGER_MS = 2_000;

/**
 * A refused request body, closed the way nginx's lingering close does: the
 * answer carries `Connection: close` and goes out at once, followed by a FIN,
 * and what the client is still sending is read and dropped (never parsed or
 * stored), so a client that sends its whole body before reading (twine does)
 * still sees the answer. After `maxBytes` or `maxMs`, whichever comes first,
 * nothing more is read, and two seconds later the connection is closed: a
 * refused client cannot keep a socket and a reader busy for ever.
 *
 * Node would close the socket as soon as the answer is written; with bytes
 * still arriving that close is a reset, and a reset can make the peer (the
 * proxy, still forwarding the body) lose the answer before it read it: it
 * then saw a backend that failed, not a 413. So the answer ends with a FIN,
 * and the reset, if one comes, comes seconds later.
 */
export function dropBody(req: IncomingMessage, res: ServerResponse, limits: { maxBytes: number; maxMs?: number }): void {
  if (req.readableEnded) return;
  res.shouldKeepAlive = false;
  if (!res.headersSent) res.setHeader('Connection', 'close');
  const socket = req.socket as IncomingMessage['socket'] & { destroySoon?: () => void };
  socket.destroySoon = () => {
    if (socket.writable) socket.end();
  };
  let dropped = 0;
  const stop = () => {
    clearTimeout(timer);
    req.off('data', count);
    req.pause();
    setTimeout(() => socket.destroy(), LINGER_MS).unref();
  };
  const count = (chunk: Buffer) => {
    dropped += chunk.length;
    if (dropped > limits.maxBytes) stop();
  };
  const timer = setTimeout(stop, limits.maxMs ?? 30_000);
  timer.unref();
  req.on('data', count);
  // Sent whole: the client reads the answer and closes; a client that does not is closed a little later.
  req.once('end', () => {
    clearTimeout(timer);
    setTimeout(() => socket.destroy(), LINGER_MS).unref();
  });
  socket.once('close', () => clearTimeout(timer));
  req.resume();
}
