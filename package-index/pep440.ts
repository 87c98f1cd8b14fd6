/**
 * PEP 440 versions: parsing, normalization and ordering, the way pip and
 * Warehouse (through `packaging`) see them. Pure functions, no I/O.
 *
 * Numbers are kept as digit strings without leading zeros, so a version like
 * `2024.123456789012345678901` orders correctly without overflowing.
 */

const VERSION_PATTERN = new RegExp(
  '^\\s*v?' +
    '(?:(?<epoch>[0-9]+)!)?' +
    '(?<release>[0-9]+(?:\\.[0-9]+)*)' +
    '(?<pre>[-_.]?(?<pre_l>alpha|a|beta|b|preview|pre|c|rc)[-_.]?(?<pre_n>[0-9]+)?)?' +
    '(?<post>(?:-(?<post_n1>[0-9]+))|(?:[-_.]?(?<post_l>post|rev|r)[-_.]?(?<post_n2>[0-9]+)?))?' +
    '(?<dev>[-_.]?(?<dev_l>dev)[-_.]?(?<dev_n>[0-9]+)?)?' +
    '(?:\\+(?<local>[a-z0-9]+(?:[-_.][a-z0-9]+)*))?' +
    '\\s*$',
  'i',
);

export type PreLabel = 'a' | 'b' | 'rc';

export interface Version {
  readonly epoch: string;
  readonly release: readonly string[];
  readonly pre: readonly [PreLabel, string] | undefined;
  readonly post: string | undefined;
  readonly dev: string | undefined;
  /** Local segments, lower case; numeric ones as digit strings. */
  readonly local: readonly string[] | undefined;
}

const PRE_LABELS: Record<string, PreLabel> = { a: 'a', alpha: 'a', b: 'b', beta: 'b', c: 'rc', rc: 'rc', pre: 'rc', preview: 'rc' };

function num(digits: string | undefined, fallback = '0'): string {
  if (digits === undefined) return fallback;
  return digits.replace(/^0+(?=\d)/, '');
}

/** Parses a version, or returns undefined when it is not valid under PEP 440. */
export function parseVersion(text: string): Version | undefined {
  const m = VERSION_PATTERN.exec(text);
  if (!m?.groups) return undefined;
  const g = m.groups;
  // Sort keys give each number two digits of length; nobody numbers a release with 100 digits.
  if (/\d{100}/.test(text)) return undefined;
  const postNumber = g['post_n1'] ?? g['post_n2'];
  return {
    epoch: num(g['epoch']),
    release: g['release']!.split('.').map((s) => num(s)),
    pre: g['pre_l'] ? [PRE_LABELS[g['pre_l'].toLowerCase()]!, num(g['pre_n'])] : undefined,
    post: g['post'] ? num(postNumber) : undefined,
    dev: g['dev'] ? num(g['dev_n']) : undefined,
    local: g['local']
      ? g['local']
          .toLowerCase()
          .split(/[-_.]/)
          .map((s) => (/^\d+$/.test(s) ? num(s) : s))
      : undefined,
  };
}

/** The normalized form (`1.0-Alpha_1` → `1.0a1`), as `str(packaging.version.Version(...))`. */
export function normalizeVersion(v: Version): string {
  return format(v, v.release);
}

/**
 * The canonical form Warehouse uses to tell releases apart: normalized, with
 * trailing zeros of the release removed, so `1.0` and `1.0.0` are one release.
 */
export function canonicalVersion(v: Version): string {
  return format(v, stripZeros(v.release));
}

function format(v: Version, release: readonly string[]): string {
  let out = v.epoch !== '0' ? `${v.epoch}!` : '';
  out += release.join('.');
  if (v.pre) out += `${v.pre[0]}${v.pre[1]}`;
  if (v.post !== undefined) out += `.post${v.post}`;
  if (v.dev !== undefined) out += `.dev${v.dev}`;
  if (v.local) out += `+${v.local.join('.')}`;
  return out;
}

function stripZeros(release: readonly string[]): readonly string[] {
  let end = release.length;
  while (end > 1 && release[end - 1] === '0') end--;
  return release.slice(0, end);
}

/** Pre-releases and dev releases (PEP 440: not chosen unless asked for or nothing else exists). */
export function isPrerelease(v: Version): boolean {
  return v.pre !== undefined || v.dev !== undefined;
}

/**
 * A string whose byte order (SQL `COLLATE "C"`) is PEP 440 order, so the
 * database can sort and page through thousands of releases with an index.
 * Each number is written as its length (2 digits) then its digits.
 */
export function sortKey(v: Version): string {
  const n = (digits: string) => `${String(digits.length).padStart(2, '0')}${digits}`;
  let key = n(v.epoch);
  for (const segment of stripZeros(v.release)) key += `1${n(segment)}`;
  key += '0';
  // packaging's _cmpkey: a dev release with no pre/post sorts before any pre-release.
  if (!v.pre && v.post === undefined && v.dev !== undefined) key += '0';
  else if (v.pre) key += `1${v.pre[0] === 'a' ? 'a' : v.pre[0] === 'b' ? 'b' : 'c'}${n(v.pre[1])}`;
  else key += '2';
  key += v.post === undefined ? '0' : `1${n(v.post)}`;
  key += v.dev === undefined ? '2' : `1${n(v.dev)}`;
  if (!v.local) return `${key}0`;
  key += '1';
  // Numeric local segments sort after alphanumeric ones; '!' ends a word and sorts before any letter or digit.
  for (const s of v.local) key += /^\d+$/.test(s) ? `2${n(s)}` : `1${s}!`;
  return `${key}0`;
}
