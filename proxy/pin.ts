import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { formatLsn, parseLsn, parseTimeline } from '../lib/lsn.js';

/** The cookie that pins a session to what it has written. */
export const PIN_COOKIE = 'banyan_pin';
/**
 * The same signed pin as a header, for clients that keep no cookies (API clients, single-page apps,
 * command-line tools): the proxy sends it after a write; a client that sends it back gets
 * read-your-writes as a browser does with the cookie. Like Cloudflare D1's session bookmarks.
 */
export const PIN_HEADER = 'banyan-pin';

/** A verified pin: the session must read at or past `lsn` until `expires`. */
export interface Pin {
  /** Random per session, stable across pins: the canary's session key. */
  readonly id: string;
  /** The write's WAL position, or undefined for a timed pin (read from the primary until it expires). */
  readonly lsn: bigint | undefined;
  /** The timeline `lsn` was written on, when known: after a failover it tells a surviving write from a lost one. */
  readonly timeline?: number | undefined;
  readonly expires: number;
}

export type PinCheck = { ok: true; pin: Pin } | { ok: false; reason: 'malformed' | 'forged' | 'expired' };

/**
 * `v2.<id>.<lsn>.<timeline>.<expires ms>.<HMAC-SHA256>` when the timeline is
 * known, else `v1.<id>.<lsn or T>.<expires ms>.<HMAC-SHA256>` (as before
 * timelines, and still read): signed with the newest secret; any secret of
 * the list verifies, so secrets can be rotated.
 */
export function signPin(pin: Pin, secret: string): string {
  const body =
    pin.lsn !== undefined && pin.timeline !== undefined
      ? `v2.${pin.id}.${formatLsn(pin.lsn)}.${pin.timeline}.${pin.expires}`
      : `v1.${pin.id}.${pin.lsn === undefined ? 'T' : formatLsn(pin.lsn)}.${pin.expires}`;
  return `${body}.${mac(body, secret)}`;
}

/** Checks a cookie value against every accepted secret and the clock. */
export function verifyPin(value: string, secrets: readonly string[], now: number): PinCheck {
  const parts = value.split('.');
  const v2 = parts[0] === 'v2' && parts.length === 6;
  if (!v2 && (parts.length !== 5 || parts[0] !== 'v1')) return { ok: false, reason: 'malformed' };
  const timelineText = v2 ? parts.splice(3, 1)[0]! : undefined;
  const [, id, lsnText, expiresText, given] = parts as [string, string, string, string, string];
  const body = v2 ? `v2.${id}.${lsnText}.${timelineText}.${expiresText}` : `v1.${id}.${lsnText}.${expiresText}`;
  const givenBytes = Buffer.from(given, 'base64url');
  const signed = secrets.some((secret) => {
    const expected = Buffer.from(mac(body, secret), 'base64url');
    return expected.length === givenBytes.length && timingSafeEqual(expected, givenBytes);
  });
  if (!signed) return { ok: false, reason: 'forged' };
  const expires = Number(expiresText);
  const lsn = lsnText === 'T' ? undefined : parseLsn(lsnText);
  const timeline = v2 ? parseTimeline(timelineText) : undefined;
  if (
    !/^[A-Za-z0-9_-]{8,64}$/.test(id) ||
    !Number.isSafeInteger(expires) ||
    (lsnText !== 'T' && lsn === undefined) ||
    (v2 && (timeline === undefined || lsn === undefined))
  ) {
    return { ok: false, reason: 'malformed' };
  }
  if (expires <= now) return { ok: false, reason: 'expired' };
  return { ok: true, pin: v2 ? { id, lsn, timeline, expires } : { id, lsn, expires } };
}

/** A new session id for a first pin. */
export function newPinId(): string {
  return randomBytes(12).toString('base64url');
}

/** The value of cookie `name` in a Cookie header, without parsing the others. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  const prefix = `${name}=`;
  let at = header.indexOf(prefix);
  while (at >= 0) {
    if (at === 0 || header[at - 1] === ' ' || header[at - 1] === ';') {
      const end = header.indexOf(';', at);
      return header.slice(at + prefix.length, end < 0 ? undefined : end).trim() || undefined;
    }
    at = header.indexOf(prefix, at + 1);
  }
  return undefined;
}

function mac(body: string, secret: string): string {
  return createHmac('sha256', secret).update(body).digest('base64url');
}
