import type { IncomingMessage } from 'node:http';

/** A request target made unambiguous: what the route table decides on and what the backend receives. */
export type NormalizedTarget = { readonly ok: true; readonly target: string } | { readonly ok: false; readonly reason: string };

// Anything that may need work: a dot (segments), a percent sign, a backslash, a doubled slash, a control character.
// eslint-disable-next-line no-control-regex -- control characters send a path to the careful parser on purpose
const NEEDS_WORK = /[.%\\\x00-\x1f\x7f]|\/\//;
const UNRESERVED = /[A-Za-z0-9\-._~]/;

/**
 * Normalizes a request target the way Envoy's `normalize_path` and
 * `merge_slashes` do, so that one target gets one decision and the backend
 * serves exactly what was decided: absolute-form (`http://host/p`) becomes
 * its path, percent-encoded unreserved characters are decoded, runs of `/`
 * become one, and dot-segments are removed (RFC 3986 §5.2.4, `%2e` included).
 * What stays ambiguous is refused: a backslash, an encoded `/` or `\`, a
 * control character or NUL, a malformed `%`, a target that is not a path,
 * and a `#`: a fragment is never part of a request target (RFC 9110 §4.1),
 * and backends disagree on whether `/pypi#x` is `/pypi`.
 * The query is passed on untouched.
 */
export function normalizeTarget(raw: string): NormalizedTarget {
  if (raw.includes('#')) return { ok: false, reason: 'the request target has a # (a fragment is not sent to a server)' };
  let target = raw;
  if (target[0] !== '/') {
    const absolute = /^https?:\/\/[^/?#]*/i.exec(target);
    if (!absolute) return { ok: false, reason: 'the request target must be a path starting with /' };
    target = target.slice(absolute[0].length) || '/';
    if (target[0] === '?') target = `/${target}`;
  }
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  if (!NEEDS_WORK.test(path)) return { ok: true, target };
  // eslint-disable-next-line no-control-regex -- a control character in a path is refused on purpose
  if (/[\\\x00-\x1f\x7f]/.test(path)) return { ok: false, reason: 'the path has a backslash or a control character' };
  let decoded = '';
  for (let i = 0; i < path.length; i++) {
    const c = path[i]!;
    if (c !== '%') {
      decoded += c;
      continue;
    }
    const hex = path.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return { ok: false, reason: 'the path has a malformed percent-encoding' };
    const ch = String.fromCharCode(parseInt(hex, 16));
    if (ch === '/' || ch === '\\') return { ok: false, reason: 'the path has an encoded slash or backslash' };
    if (ch < ' ' || ch === '\x7f') return { ok: false, reason: 'the path has an encoded control character or NUL' };
    decoded += UNRESERVED.test(ch) ? ch : `%${hex.toUpperCase()}`;
    i += 2;
  }
  const clean = removeDotSegments(decoded.replace(/\/{2,}/g, '/'));
  return { ok: true, target: q < 0 ? clean : clean + target.slice(q) };
}

/** RFC 3986 §5.2.4 for an absolute path: `.` and `..` segments resolved, never above the root. */
function removeDotSegments(path: string): string {
  const out: string[] = [];
  const segments = path.split('/');
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i]!;
    if (s === '.' || s === '..') {
      if (s === '..') out.pop();
      // A trailing dot-segment leaves a directory: keep the final slash.
      if (i === segments.length - 1) out.push('');
      continue;
    }
    out.push(s);
  }
  return `/${out.join('/')}`;
}

/**
 * Makes the request target unambiguous in place (the backend receives what
 * the route table decided on), or says why it cannot be: an ambiguous path,
 * or more than one Host header.
 */
export function settleTarget(req: IncomingMessage): string | undefined {
  const target = normalizeTarget(req.url ?? '/');
  if (!target.ok) return target.reason;
  if (target.target !== req.url) req.url = target.target;
  const raw = req.rawHeaders;
  let hosts = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 4 && name.toLowerCase() === 'host' && ++hosts > 1) return 'the request has more than one Host header';
  }
  return undefined;
}
