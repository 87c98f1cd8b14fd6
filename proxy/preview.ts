import { createHmac, timingSafeEqual } from 'node:crypto';

/** The cookie that sends one browser to the new app on one route (`banyan routes preview`). */
export const PREVIEW_COOKIE = 'banyan_preview';
/** The proxy's own path that turns a preview link into the cookie. */
export const PREVIEW_PATH = '/_banyan/preview';

/**
 * `p1.<route, base64url>.<expires ms>.<HMAC-SHA256>`: a preview of one route,
 * signed with BANYAN_SECRET (domain-separated from pins, so neither can pass
 * for the other); any secret of the list verifies, for rotation.
 */
export function signPreview(route: string, expires: number, secret: string): string {
  const body = `p1.${Buffer.from(route).toString('base64url')}.${expires}`;
  return `${body}.${mac(body, secret)}`;
}

// Exactly what signPreview writes: base64url decoding skips characters it does not know, so a looser
// check would accept `<valid token>; Domain=evil` and the cookie it sets would carry the extra attributes.
const TOKEN = /^p1\.[A-Za-z0-9_-]{1,400}\.\d{1,16}\.[A-Za-z0-9_-]{43}$/;

/** The route a preview token is for, when it is genuine, exactly as signed, and not expired. */
export function verifyPreview(token: string, secrets: readonly string[], now: number): { route: string; expires: number } | undefined {
  if (!TOKEN.test(token)) return undefined;
  const parts = token.split('.');
  const body = parts.slice(0, 3).join('.');
  const given = Buffer.from(parts[3]!, 'base64url');
  const genuine = secrets.some((secret) => {
    const expected = Buffer.from(mac(body, secret), 'base64url');
    return expected.length === given.length && timingSafeEqual(expected, given);
  });
  const expires = Number(parts[2]);
  if (!genuine || !Number.isSafeInteger(expires) || expires <= now) return undefined;
  return { route: Buffer.from(parts[1]!, 'base64url').toString('utf8'), expires };
}

const SITE = 'http://banyan.invalid';

/**
 * Where a preview link may send the browser afterwards: a path on this site, never another site.
 * Browsers drop tabs and newlines from a URL and read `\` as `/`, so `/\t/evil.example` is
 * `//evil.example`: a `next` with any control character, space or backslash is refused, and what is
 * left must resolve to this site.
 */
export function safeNext(next: string | undefined): string {
  // eslint-disable-next-line no-control-regex -- a control character in a redirect target is refused on purpose
  if (!next || !next.startsWith('/') || next.startsWith('//') || /[\x00-\x20\x7f\\]/.test(next)) return '/';
  try {
    return new URL(next, SITE).origin === SITE ? next : '/';
  } catch {
    return '/';
  }
}

function mac(body: string, secret: string): string {
  return createHmac('sha256', `preview:${secret}`).update(body).digest('base64url');
}
