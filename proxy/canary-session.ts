import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** The cookie that keeps a browser on one side of every canary for the session's life. */
export const SESSION_COOKIE = 'banyan_sid';

const SIGNED = /^(\d{1,4})\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{22})$/;
const UNSIGNED = /^(\d{1,4})\.[A-Za-z0-9_-]{16}$/;

/**
 * The canary bucket a `banyan_sid` carries, or undefined for a value that is
 * not one of ours. The bucket travels in the cookie (rather than a hash of a
 * random id) so that a session keeps the bucket of its first request: the
 * same side before and after the cookie exists, whatever it writes and
 * whenever its read-your-writes pin expires. With BANYAN_SECRET the cookie
 * is signed (`bucket.id.mac`, any secret of the list verifies), so a
 * hand-made one picks no side: it is ignored and a real one minted.
 */
export function sessionBucket(sid: string, secrets?: readonly string[]): number | undefined {
  const m = (secrets?.length ? SIGNED : UNSIGNED).exec(sid);
  if (!m) return undefined;
  if (secrets?.length) {
    const given = Buffer.from(m[3]!);
    const body = `${m[1]}.${m[2]}`;
    if (!secrets.some((secret) => timingSafeEqual(Buffer.from(mac(body, secret)), given))) return undefined;
  }
  const bucket = Number(m[1]);
  return bucket < 10_000 ? bucket : undefined;
}

/** A new session id carrying `bucket`, signed with `secret` when there is one. */
export function newSession(bucket: number, secret?: string): string {
  const body = `${bucket}.${randomBytes(12).toString('base64url')}`;
  return secret ? `${body}.${mac(body, secret)}` : body;
}

/** The Set-Cookie value for a new session: a year, for every path, not readable by scripts. */
export function sessionCookie(sid: string, secure: boolean): string {
  return `${SESSION_COOKIE}=${sid}; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`;
}

/** 128 bits of HMAC-SHA256, domain-separated from pins and previews. */
function mac(body: string, secret: string): string {
  return createHmac('sha256', `sid:${secret}`).update(body).digest('base64url').slice(0, 22);
}
