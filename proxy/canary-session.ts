import { randomBytes } from 'node:crypto';

/** The cookie that keeps a browser on one side of every canary for the session's life. */
export const SESSION_COOKIE = 'banyan_sid';

const SID = /^(\d{1,4})\.[A-Za-z0-9_-]{16}$/;

/**
 * The canary bucket a `banyan_sid` carries, or undefined for a value that is
 * not one of ours. The bucket travels in the cookie (rather than a hash of a
 * random id) so that a session keeps the bucket of its first request: the
 * same side before and after the cookie exists, whatever it writes and
 * whenever its read-your-writes pin expires. A client that picks its own
 * bucket only picks its own side.
 */
export function sessionBucket(sid: string): number | undefined {
  const m = SID.exec(sid);
  if (!m) return undefined;
  const bucket = Number(m[1]);
  return bucket < 10_000 ? bucket : undefined;
}

/** A new session id carrying `bucket`. */
export function newSession(bucket: number): string {
  return `${bucket}.${randomBytes(12).toString('base64url')}`;
}

/** The Set-Cookie value for a new session: a year, for every path, not readable by scripts. */
export function sessionCookie(sid: string, secure: boolean): string {
  return `${SESSION_COOKIE}=${sid}; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`;
}
