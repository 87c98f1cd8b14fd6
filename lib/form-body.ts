import type { IncomingMessage } from 'node:http';
import { BanyanError } from './errors.js';

/** Reads a small application/x-www-form-urlencoded or JSON body into string fields. */
export async function readFields(req: IncomingMessage, limit = 64 * 1024): Promise<Record<string, string>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new BanyanError('too-large', `the form is over ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if ((req.headers['content-type'] ?? '').includes('application/json')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new BanyanError('bad-request', 'the body is not valid JSON');
    }
    if (typeof parsed !== 'object' || parsed === null) throw new BanyanError('bad-request', 'the body must be a JSON object');
    return Object.fromEntries(Object.entries(parsed).filter(([, v]) => typeof v === 'string')) as Record<string, string>;
  }
  return Object.fromEntries(new URLSearchParams(text));
}
