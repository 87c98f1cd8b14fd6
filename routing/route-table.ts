/**
 * The route table: what each route is, how a whole table is validated, and
 * how a table is compiled once per version into a matcher. Pure functions, no
 * I/O: the proxy, the store and the CLI all build on these.
 *
 * Path patterns: segments separated by `/`. A literal segment matches itself;
 * `:name` matches any one non-empty segment; a final `*` matches the rest of
 * the path (zero or more segments). `/simple/:project/` matches
 * `/simple/requests/` but not `/simple/requests`.
 *
 * Which route wins (most specific first):
 *   1. Compare the patterns segment by segment from the left; at the first
 *      segment where they differ, a literal beats `:param`, which beats `*`.
 *   2. Among routes with the same pattern, the one with more conditions
 *      (methods, host, query) wins; then the one listed first.
 * A request that no route matches goes to legacy as `legacy.unmatched`.
 */

import { checkExtractors, type FeatureExtractor } from './route-features.js';

export const MODES = ['legacy', 'shadow', 'canary', 'new', 'retired'] as const;
export type Mode = (typeof MODES)[number];
export type Backend = 'legacy' | 'new';

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;
const NAME = /^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$/;

/** How a route answers once it is retired (or during a brownout). */
export interface RetiredAnswer {
  readonly status: number;
  readonly message: string;
}

/** A window, in ISO 8601 times, during which a route answers as retired. */
export interface Brownout {
  readonly start: string;
  readonly end: string;
}

/** Shadow comparison settings. */
export interface ShadowOptions {
  /** JSON paths to ignore when comparing bodies, such as `info.last_serial` or `urls.*.upload_time`. */
  readonly ignore?: readonly string[];
  /** Response headers compared besides the status (default: content-type). */
  readonly headers?: readonly string[];
  /** Ask legacy twice and treat what differs between its two answers as noise. */
  readonly calibrate?: boolean;
  /** Bytes of each body kept for the comparison (default 1 MiB); a copy skipped under load keeps nothing. */
  readonly maxBodyBytes?: number;
}

/** A route as operators write it (in the routes file, the API and the CLI). */
export interface Route {
  readonly name: string;
  readonly match: {
    readonly path: string;
    readonly methods?: readonly string[];
    readonly host?: string;
    /** Query-parameter conditions: `{ ":action": "rss" }`; the value `*` means present with any value. */
    readonly query?: Readonly<Record<string, string>>;
  };
  readonly mode: Mode;
  /** canary: the share of sessions sent to the new app, 0 to 100. */
  readonly percent?: number;
  /** new and canary: serve safe methods from legacy when the new app fails. */
  readonly fallback?: boolean;
  /** retired (and brownouts): the answer the proxy gives itself. */
  readonly retired?: RetiredAnswer;
  readonly brownouts?: readonly Brownout[];
  readonly shadow?: ShadowOptions;
  /** Upstream time limits for this route, in milliseconds. */
  readonly timeouts?: { readonly headersMs?: number; readonly bodyMs?: number };
  /** Legacy feature extractors, for usage metrics (routing/route-features.ts). */
  readonly features?: readonly FeatureExtractor[];
}

/** The outcome of validating a table: the routes, or every problem found. */
export type Validation = { ok: true; routes: Route[] } | { ok: false; problems: string[] };

const ROUTE_KEYS = new Set(['name', 'match', 'mode', 'percent', 'fallback', 'retired', 'brownouts', 'shadow', 'timeouts', 'features']);
const MATCH_KEYS = new Set(['path', 'methods', 'host', 'query']);

/**
 * Checks a whole table. Every problem is reported, each naming the route and
 * the field, so an operator fixes them all in one go; nothing is applied
 * unless the whole table is valid.
 */
export function validateTable(input: unknown): Validation {
  const problems: string[] = [];
  if (!Array.isArray(input)) return { ok: false, problems: ['the table must be a JSON array of routes'] };
  const names = new Map<string, number>();
  const signatures = new Map<string, string>();
  input.forEach((raw, i) => {
    const label = typeof (raw as Route)?.name === 'string' ? `route ${i + 1} "${(raw as Route).name}"` : `route ${i + 1}`;
    const say = (field: string, text: string) => problems.push(`${label}: ${field}: ${text}`);
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      problems.push(`${label}: must be an object`);
      return;
    }
    const r = raw as Record<string, unknown>;
    for (const key of Object.keys(r)) if (!ROUTE_KEYS.has(key)) say(key, `unknown field (known: ${[...ROUTE_KEYS].join(', ')})`);
    if (typeof r['name'] !== 'string' || !NAME.test(r['name'])) {
      say('name', 'must be a dotted lower-case name such as "simple.detail" (letters, digits, _ and .)');
    } else if (names.has(r['name'])) {
      say('name', `duplicates route ${names.get(r['name'])! + 1}`);
    } else {
      names.set(r['name'], i);
    }
    const match = r['match'] as Record<string, unknown> | undefined;
    if (typeof match !== 'object' || match === null || Array.isArray(match)) {
      say('match', 'must be an object with at least "path"');
    } else {
      for (const key of Object.keys(match)) if (!MATCH_KEYS.has(key)) say(`match.${key}`, 'unknown field (known: path, methods, host, query)');
      const pathProblem = typeof match['path'] === 'string' ? checkPattern(match['path']) : 'must be a path pattern starting with /';
      if (pathProblem) say('match.path', pathProblem);
      if (match['methods'] !== undefined) {
        if (!Array.isArray(match['methods']) || match['methods'].length === 0) say('match.methods', 'must be a non-empty list such as ["GET", "HEAD"]');
        else for (const m of match['methods']) if (!METHODS.includes(m as (typeof METHODS)[number])) say('match.methods', `"${m}" is not one of ${METHODS.join(', ')}`);
      }
      if (match['host'] !== undefined && (typeof match['host'] !== 'string' || !/^(\*\.)?[a-z0-9.-]+$/i.test(match['host']))) {
        say('match.host', 'must be a host name such as "pypi.example.org" or "*.example.org"');
      }
      if (match['query'] !== undefined) {
        const q = match['query'];
        if (typeof q !== 'object' || q === null || Array.isArray(q) || Object.keys(q).length === 0) say('match.query', 'must be an object such as {":action": "rss"}');
        else for (const [k, v] of Object.entries(q)) if (typeof v !== 'string' || k === '') say('match.query', `condition "${k}" must have a string value (use "*" for any)`);
      }
      if (!pathProblem && typeof match['path'] === 'string') {
        const signature = JSON.stringify([normalizePattern(match['path']), [...((match['methods'] as string[]) ?? [])].sort(), match['host'] ?? null, match['query'] ?? null]);
        if (signatures.has(signature)) say('match', `is the same as ${signatures.get(signature)}; one of them could never match`);
        else signatures.set(signature, label);
      }
    }
    const mode = r['mode'];
    if (!MODES.includes(mode as Mode)) say('mode', `must be one of ${MODES.join(', ')}`);
    if (mode === 'canary') {
      if (typeof r['percent'] !== 'number' || !(r['percent'] >= 0 && r['percent'] <= 100)) say('percent', 'canary needs a percent from 0 to 100');
    } else if (r['percent'] !== undefined) {
      say('percent', `only canary routes take a percent (this one is ${String(mode)})`);
    }
    if (r['fallback'] !== undefined) {
      // Kept on every mode, so a route that goes back to legacy and forward again keeps its safety net;
      // only new and canary routes act on it.
      if (typeof r['fallback'] !== 'boolean') say('fallback', 'must be true or false');
    }
    const needsRetired = mode === 'retired' || r['brownouts'] !== undefined;
    if (r['retired'] !== undefined || needsRetired) {
      const ret = r['retired'] as Record<string, unknown> | undefined;
      if (typeof ret !== 'object' || ret === null) {
        say('retired', `${mode === 'retired' ? 'a retired route needs' : 'brownouts need'} retired: {"status": 410, "message": "…"}`);
      } else {
        if (typeof ret['status'] !== 'number' || !Number.isInteger(ret['status']) || ret['status'] < 400 || ret['status'] > 599) say('retired.status', 'must be an HTTP error status, 400 to 599 (410 Gone is usual)');
        if (typeof ret['message'] !== 'string' || ret['message'].trim() === '') say('retired.message', 'must say what replaced the route, for the people still calling it');
      }
    }
    if (r['brownouts'] !== undefined) {
      if (mode !== 'legacy' && mode !== 'shadow') say('brownouts', 'brownouts are for routes still served by legacy (mode legacy or shadow)');
      if (!Array.isArray(r['brownouts'])) say('brownouts', 'must be a list of {"start": ISO time, "end": ISO time}');
      else r['brownouts'].forEach((b: unknown, j) => {
        const w = b as Record<string, unknown>;
        const start = Date.parse(String(w?.['start']));
        const end = Date.parse(String(w?.['end']));
        if (Number.isNaN(start) || Number.isNaN(end)) say(`brownouts[${j}]`, 'start and end must be ISO 8601 times such as 2026-12-01T10:00:00Z');
        else if (end <= start) say(`brownouts[${j}]`, 'end must be after start');
      });
    }
    if (r['shadow'] !== undefined) {
      const sh = r['shadow'] as Record<string, unknown>;
      if (typeof sh !== 'object' || sh === null) say('shadow', 'must be an object');
      else {
        for (const key of ['ignore', 'headers'] as const) {
          if (sh[key] !== undefined && (!Array.isArray(sh[key]) || (sh[key] as unknown[]).some((x) => typeof x !== 'string'))) say(`shadow.${key}`, 'must be a list of strings');
        }
        if (sh['calibrate'] !== undefined && typeof sh['calibrate'] !== 'boolean') say('shadow.calibrate', 'must be true or false');
        const max = sh['maxBodyBytes'];
        if (max !== undefined && (typeof max !== 'number' || !Number.isInteger(max) || max < 1 || max > 16 * 1024 * 1024)) {
          say('shadow.maxBodyBytes', 'must be a whole number of bytes from 1 to 16777216');
        }
        for (const key of Object.keys(sh)) {
          if (!['ignore', 'headers', 'calibrate', 'maxBodyBytes'].includes(key)) say(`shadow.${key}`, 'is not a shadow setting (ignore, headers, calibrate, maxBodyBytes)');
        }
      }
    }
    if (r['timeouts'] !== undefined) {
      const t = r['timeouts'] as Record<string, unknown>;
      for (const key of ['headersMs', 'bodyMs']) {
        if (t?.[key] !== undefined && (typeof t[key] !== 'number' || !((t[key] as number) > 0 && (t[key] as number) <= 3_600_000))) say(`timeouts.${key}`, 'must be milliseconds, 1 to 3600000');
      }
    }
    if (r['features'] !== undefined) for (const problem of checkExtractors(r['features'])) say('features', problem);
  });
  return problems.length ? { ok: false, problems } : { ok: true, routes: input as Route[] };
}

function checkPattern(path: string): string | undefined {
  if (!path.startsWith('/')) return 'must start with /';
  const segments = path.slice(1).split('/');
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!;
    if (s === '*' && i !== segments.length - 1) return '* may only be the last segment';
    if (s.includes('*') && s !== '*') return `"${s}": * must be a whole segment`;
    if (s.startsWith(':') && !/^:[A-Za-z_][A-Za-z0-9_]*$/.test(s)) return `"${s}": a parameter is : followed by a name`;
    if (s === '' && i !== segments.length - 1) return 'has an empty segment (//)';
  }
  return undefined;
}

function normalizePattern(path: string): string {
  return path.replace(/:[A-Za-z0-9_]+/g, ':');
}

/** What the proxy does with one request. */
export interface Decision {
  readonly route: string;
  readonly mode: Mode;
  /** The backend that answers the client; `proxy` for retired routes and brownouts. */
  readonly target: Backend | 'proxy';
  readonly spec: Route | undefined;
  readonly params: Readonly<Record<string, string>>;
}

/** A table compiled for matching, built once per version. */
export interface CompiledTable {
  readonly version: number;
  readonly routes: readonly Route[];
  /** The most specific route matching this request, or undefined. */
  match(method: string, host: string | undefined, path: string, query: string): { route: Route; params: Record<string, string> } | undefined;
}

interface Candidate {
  readonly route: Route;
  readonly order: number;
  readonly conditions: number;
  readonly paramNames: readonly string[];
  readonly methods: ReadonlySet<string> | undefined;
  readonly host: string | undefined;
  readonly query: readonly (readonly [string, string])[] | undefined;
}

interface Node {
  literal: Map<string, Node> | undefined;
  param: Node | undefined;
  /** Routes ending here, most conditions first. */
  exact: Candidate[];
  /** Routes whose pattern ends with `*` here. */
  rest: Candidate[];
}

const newNode = (): Node => ({ literal: undefined, param: undefined, exact: [], rest: [] });

/** Compiles a valid table into a segment trie: matching costs the path's depth, not the number of routes. */
export function compileTable(routes: readonly Route[], version: number): CompiledTable {
  const root = newNode();
  routes.forEach((route, order) => {
    const segments = route.match.path.slice(1).split('/');
    let node = root;
    const paramNames: string[] = [];
    let wildcard = false;
    for (const segment of segments) {
      if (segment === '*') {
        wildcard = true;
        break;
      }
      if (segment.startsWith(':')) {
        paramNames.push(segment.slice(1));
        node = node.param ??= newNode();
      } else {
        node.literal ??= new Map();
        let next = node.literal.get(segment);
        if (!next) node.literal.set(segment, (next = newNode()));
        node = next;
      }
    }
    const query = route.match.query ? Object.entries(route.match.query) : undefined;
    const candidate: Candidate = {
      route, order, paramNames,
      conditions: (route.match.methods ? 1 : 0) + (route.match.host ? 1 : 0) + (query?.length ?? 0),
      methods: route.match.methods ? new Set(route.match.methods.flatMap((m) => (m === 'GET' ? ['GET', 'HEAD'] : [m]))) : undefined,
      host: route.match.host?.toLowerCase(),
      query,
    };
    (wildcard ? node.rest : node.exact).push(candidate);
  });
  const sortCandidates = (node: Node) => {
    const bySpecificity = (a: Candidate, b: Candidate) => b.conditions - a.conditions || a.order - b.order;
    node.exact.sort(bySpecificity);
    node.rest.sort(bySpecificity);
    node.literal?.forEach(sortCandidates);
    if (node.param) sortCandidates(node.param);
  };
  sortCandidates(root);

  return {
    version,
    routes,
    match(method, host, path, query) {
      const state: MatchState = { method, host, query, parsed: undefined, segments: path.slice(1).split('/'), values: [] };
      const hit = walk(root, 0, state);
      if (!hit) return undefined;
      const params: Record<string, string> = {};
      for (let i = 0; i < hit.paramNames.length; i++) params[hit.paramNames[i]!] = state.values[i]!;
      return { route: hit.route, params };
    },
  };
}

/** One request's matching state; kept in one object so matching allocates no closures. */
interface MatchState {
  readonly method: string;
  readonly host: string | undefined;
  readonly query: string;
  parsed: URLSearchParams | undefined;
  readonly segments: string[];
  readonly values: string[];
}

/** Depth-first, most specific branch first: literal, then :param, then a `*` ending here. */
function walk(node: Node, i: number, state: MatchState): Candidate | undefined {
  if (i === state.segments.length) {
    for (const c of node.exact) if (accepts(c, state)) return c;
  } else {
    const segment = state.segments[i]!;
    const next = node.literal?.get(segment);
    if (next) {
      const hit = walk(next, i + 1, state);
      if (hit) return hit;
    }
    if (node.param && segment !== '') {
      state.values.push(safeDecode(segment));
      const hit = walk(node.param, i + 1, state);
      if (hit) return hit;
      state.values.pop();
    }
  }
  for (const c of node.rest) if (accepts(c, state)) return c;
  return undefined;
}

function accepts(c: Candidate, state: MatchState): boolean {
  if (c.methods && !c.methods.has(state.method)) return false;
  if (c.host && !hostMatches(c.host, state.host)) return false;
  if (c.query) {
    state.parsed ??= new URLSearchParams(state.query);
    for (const [k, v] of c.query) {
      const actual = state.parsed.get(k);
      if (actual === null || (v !== '*' && actual !== v)) return false;
    }
  }
  return true;
}

function hostMatches(pattern: string, host: string | undefined): boolean {
  if (!host) return false;
  const bare = host.toLowerCase().replace(/:\d+$/, '');
  return pattern.startsWith('*.') ? bare.endsWith(pattern.slice(1)) : bare === pattern;
}

function safeDecode(segment: string): string {
  if (!segment.includes('%')) return segment;
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** The route for requests no route matches. */
export const UNMATCHED = 'legacy.unmatched';

/**
 * Decides a request: which route, and who answers. `bucket` is the session's
 * canary bucket (0–9999, see canaryBucket); `now` is for brownout windows.
 */
export function decide(table: CompiledTable, method: string, host: string | undefined, path: string, query: string,
  bucket: () => number, now: number): Decision {
  const hit = table.match(method, host, path, query);
  if (!hit) return { route: UNMATCHED, mode: 'legacy', target: 'legacy', spec: undefined, params: {} };
  const { route, params } = hit;
  const target = route.mode === 'new' ? 'new'
    : route.mode === 'retired' ? 'proxy'
      : route.mode === 'canary' ? (bucket() < Math.round((route.percent ?? 0) * 100) ? 'new' : 'legacy')
        : inBrownout(route, now) ? 'proxy' : 'legacy';
  return { route: route.name, mode: route.mode, target, spec: route, params };
}

function inBrownout(route: Route, now: number): boolean {
  if (!route.brownouts) return false;
  return route.brownouts.some((b) => now >= Date.parse(b.start) && now < Date.parse(b.end));
}

/**
 * A session's canary bucket, 0 to 9999: FNV-1a of the session key. The same
 * key always lands in the same bucket, so a session stays on one side, and a
 * canary's percent is the share of buckets below percent × 100.
 */
export function canaryBucket(sessionKey: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < sessionKey.length; i++) {
    hash ^= sessionKey.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  // FNV's low bits mix poorly for similar keys; finish with a murmur3 avalanche.
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return (hash >>> 0) % 10_000;
}

/** One line per route that a new table adds, removes or changes, for dry runs and audit views. */
export function describeChange(before: readonly Route[], after: readonly Route[]): string[] {
  const old = new Map(before.map((r) => [r.name, r]));
  const lines: string[] = [];
  for (const route of after) {
    const previous = old.get(route.name);
    if (!previous) lines.push(`add     ${route.name}: ${route.match.path} → ${summary(route)}`);
    else if (canonical(previous) !== canonical(route)) lines.push(`change  ${route.name}: ${summary(previous)} → ${summary(route)}`);
    old.delete(route.name);
  }
  for (const route of old.values()) lines.push(`remove  ${route.name}: ${route.match.path} (${summary(route)})`);
  return lines;
}

/** JSON with sorted keys: PostgreSQL's jsonb does not keep key order, so plain JSON.stringify would see changes that are not. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => (v && typeof v === 'object' && !Array.isArray(v)
    ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    : v));
}

/** A short description of what a route does: `canary 10%`, `new (fallback)`, `retired 410`. */
export function summary(route: Route): string {
  switch (route.mode) {
    case 'canary': return `canary ${route.percent}%${route.fallback ? ' (fallback)' : ''}`;
    case 'new': return `new${route.fallback ? ' (fallback)' : ''}`;
    case 'retired': return `retired ${route.retired?.status ?? ''}`.trim();
    default: return route.brownouts?.length ? `${route.mode} (${route.brownouts.length} brownouts)` : route.mode;
  }
}
