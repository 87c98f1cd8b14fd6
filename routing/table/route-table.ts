/**
 * The route table: what each route is, and how a table is compiled once per
 * version into a matcher and decides a request (validation is in
 * `route-validation.ts`). Pure functions, no I/O: the proxy, the store and
 * the CLI all build on these.
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

import type { FeatureExtractor } from './route-features.js';

export const MODES = ['legacy', 'shadow', 'canary', 'new', 'retired'] as const;
export type Mode = (typeof MODES)[number];
export type Backend = 'legacy' | 'new';

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
  /** Legacy feature extractors, for usage metrics (route-features.ts). */
  readonly features?: readonly FeatureExtractor[];
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
