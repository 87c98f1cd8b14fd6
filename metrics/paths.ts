/**
 * Labels for paths no route matched. Raw URLs would give every distinct URL
 * its own series; these are normalized into templates, then capped.
 */

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const HASH = /^[0-9a-f]{16,}$/i;
const NUMBER = /^\d+$/;
const VERSION = /\d+(?:\.\d+)+(?:[-_.]?(?:a|b|rc|alpha|beta|post|dev)\d*)*/gi;
const MAX_SEGMENTS = 6;
const MAX_SEGMENT_LENGTH = 40;

/**
 * `/pypi/Foo/1.2.3/json?x=1` → `/pypi/foo/:version/json`: numbers become
 * `:n`, UUIDs `:uuid`, long hex strings `:hash`, versions `:version` (also
 * inside file names), overlong segments `:long`; past six segments `/…`. The
 * query string is dropped.
 */
export function normalizePath(rawPath: string): string {
  const q = rawPath.indexOf('?');
  const path = q < 0 ? rawPath : rawPath.slice(0, q);
  const segments = path.split('/').slice(1);
  const out: string[] = [];
  for (let i = 0; i < segments.length; i++) {
    if (i === MAX_SEGMENTS) {
      out.push('…');
      break;
    }
    let s = segments[i]!;
    try {
      s = decodeURIComponent(s);
    } catch {
      // Keep undecodable segments as sent.
    }
    if (s === '') out.push('');
    else if (NUMBER.test(s)) out.push(':n');
    else if (UUID.test(s)) out.push(':uuid');
    else if (HASH.test(s)) out.push(':hash');
    else {
      const templated = s
        .toLowerCase()
        .replace(VERSION, ':version')
        .replace(/[^a-z0-9._:~-]/g, '_');
      out.push(templated.length > MAX_SEGMENT_LENGTH ? ':long' : templated);
    }
  }
  return `/${out.join('/')}`;
}

/** Normalized labels, at most `limit` distinct ones; the rest become `other`. */
export class CappedLabels {
  readonly #seen = new Set<string>();
  constructor(
    readonly limit: number,
    readonly overflow = 'other',
  ) {}

  label(value: string): string {
    if (this.#seen.has(value)) return value;
    if (this.#seen.size >= this.limit) return this.overflow;
    this.#seen.add(value);
    return value;
  }

  get size(): number {
    return this.#seen.size;
  }
}
