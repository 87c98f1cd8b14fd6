/**
 * The route table: what each route is, and how a table is compiled once per
 * version into a matcher and decides a request (validation is in
 * `route-validation.ts`). Pure functions, no I/O: the proxy, the store and
 * the CLI all build on these.
 *
 * Path patterns: segments separated by `/`. A literal segment matches itself;
 * `:name` matches any one non-empty segment; a final `*` matches the rest of
 * the path (zero or more segments). A route matches its path with or without
 * the final slash (`/simple/:project/` matches `/simple/requests/` and
 * `/simple/requests`, `/pypi` matches `/pypi/`), because backends commonly
 * serve both spellings the same and a retired route must not live on under
 * the other one; `match.strictSlash` makes a route match only as written.
 * A route written with the request's spelling beats one that matches it only
 * through the other spelling.
 *
 * Conditions besides the path: `methods` (GET also allows HEAD), `host`
 * (exact, or `*.suffix`; the port is ignored), and `query`, `headers` and
 * `cookies`, each a map of name → value. A query condition's value is exact
 * or `*` (present, any value); a header or cookie condition's is exact, `*`,
 * or a list (any of them). Header names are compared in any case; a header
 * sent several times matches when any of its values does. The Cookie
 * header is parsed only when a candidate route has cookie conditions.
 *
 * Which route wins (most specific first):
 *   1. Compare the patterns segment by segment from the left; at the first
 *      segment where they differ, a literal beats `:param`, which beats `*`.
 *   2. Among routes with the same pattern, the one with more query, header
 *      and cookie conditions wins (they pick out some requests of a path,
 *      as a beta cookie or a tenant header does); then the one with more of
 *      `methods` and `host`; then the one listed first.
 * A request that no route matches goes to legacy as `legacy.unmatched`.
 *
 * Where it goes: legacy answers legacy and shadow routes (and canary
 * sessions outside the percent); the route's `service` (default `app`)
 * answers new routes and canary sessions inside it; the proxy answers
 * retired routes and brownouts.
 */

import type { IncomingHttpHeaders } from 'node:http';
import type { FeatureExtractor } from './route-features.js';
import { DEFAULT_SERVICE, IMPLICIT_UPSTREAMS, LEGACY, type UpstreamSpec } from './upstreams.js';
import { canonical } from '../../lib/canonical-json.js';

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
  /** The share of sessions whose requests are copied, 0 to 100 (default 100); a session is compared whole or not at all. */
  readonly percent?: number;
  /** The service the copies go to (default: the route's service). */
  readonly service?: string;
  /** This route's copies in flight at once; beyond it a copy is skipped (default 8). */
  readonly maxInFlight?: number;
  /**
   * HTML answers: the facts of the page to compare, each a CSS selector read as text or `@attribute`,
   * then normalized (`"offered": "a#download@href|basename"`); see shadow-html-fields.ts.
   */
  readonly html?: { readonly compare?: Readonly<Record<string, string>> };
}

/** A header or cookie condition: an exact value, `*` for present with any value, or a list of accepted values. */
export type ValueCondition = string | readonly string[];

/** A route as operators write it (in the routes file, the API and the CLI). */
export interface Route {
  readonly name: string;
  readonly match: {
    readonly path: string;
    readonly methods?: readonly string[];
    readonly host?: string;
    /** Query-parameter conditions: `{ ":action": "rss" }`; the value `*` means present with any value. */
    readonly query?: Readonly<Record<string, string>>;
    /** Request-header conditions, by name (any case): `{ "x-tenant": "acme" }`, `"*"`, or a list of values. */
    readonly headers?: Readonly<Record<string, ValueCondition>>;
    /** Cookie conditions, by cookie name: `{ "beta": "1" }`, `"*"`, or a list of values. */
    readonly cookies?: Readonly<Record<string, ValueCondition>>;
    /** Match the path only as written: `/pypi` then does not match `/pypi/` (default false). */
    readonly strictSlash?: boolean;
  };
  readonly mode: Mode;
  /** canary: the share of sessions sent to the new app, 0 to 100. */
  readonly percent?: number;
  /** new, canary and shadow: the upstream that answers on the new side (default `app`). */
  readonly service?: string;
  /**
   * new and canary: serve safe methods elsewhere when the service fails: `true` for legacy, or the
   * name of another upstream.
   */
  readonly fallback?: boolean | string;
  /** retired (and brownouts): the answer the proxy gives itself. */
  readonly retired?: RetiredAnswer;
  readonly brownouts?: readonly Brownout[];
  readonly shadow?: ShadowOptions;
  /** Upstream time limits for this route, in milliseconds. */
  readonly timeouts?: { readonly headersMs?: number; readonly bodyMs?: number };
  /** Legacy feature extractors, for usage metrics (route-features.ts). */
  readonly features?: readonly FeatureExtractor[];
}

/** A whole table as operators write it (a routes file, `routes list --json`, the admin API): its upstreams and its routes. */
export interface TableSpec {
  readonly upstreams: readonly UpstreamSpec[];
  readonly routes: readonly Route[];
}

/** What the proxy does with one request. */
export interface Decision {
  readonly route: string;
  readonly mode: Mode;
  /** The side that answers the client; `proxy` for retired routes and brownouts. */
  readonly target: Backend | 'proxy';
  /** The upstream that answers: `legacy`, the route's service on the new side, or `proxy`. */
  readonly service: string;
  readonly spec: Route | undefined;
  readonly params: Readonly<Record<string, string>>;
}

/** A table compiled for matching, built once per version. */
export interface CompiledTable {
  readonly version: number;
  readonly routes: readonly Route[];
  /** The upstreams this version sends to (always including legacy). */
  readonly upstreams: readonly UpstreamSpec[];
  /** The most specific route matching this request, or undefined. */
  match(
    method: string,
    host: string | undefined,
    path: string,
    query: string,
    headers: IncomingHttpHeaders,
  ): { route: Route; params: Record<string, string> } | undefined;
}

/** A compiled header or cookie condition: the name (lower-cased for headers) and the accepted value(s), `*` for any. */
type ValueTest = readonly [name: string, accept: ValueCondition];

interface Candidate {
  readonly route: Route;
  readonly order: number;
  /** Query, header and cookie conditions: they rank first. */
  readonly picks: number;
  /** `methods` and `host`: they rank next. */
  readonly conditions: number;
  readonly paramNames: readonly string[];
  readonly methods: ReadonlySet<string> | undefined;
  readonly host: string | undefined;
  readonly query: readonly (readonly [string, string])[] | undefined;
  readonly headers: readonly ValueTest[] | undefined;
  readonly cookies: readonly ValueTest[] | undefined;
  /** Placed where the route's path is spelled with (or without) the final slash it was written without (or with). */
  readonly alias: boolean;
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

function childLiteral(node: Node, segment: string): Node {
  node.literal ??= new Map();
  let next = node.literal.get(segment);
  if (!next) node.literal.set(segment, (next = newNode()));
  return next;
}

/** Compiles a valid table into a segment trie: matching costs the path's depth, not the number of routes. */
export function compileTable(
  routes: readonly Route[],
  version: number,
  upstreams: readonly UpstreamSpec[] = IMPLICIT_UPSTREAMS,
): CompiledTable {
  const root = newNode();
  routes.forEach((route, order) => {
    const segments = route.match.path.slice(1).split('/');
    let node = root;
    let parent = root;
    const paramNames: string[] = [];
    let wildcard = false;
    for (const segment of segments) {
      if (segment === '*') {
        wildcard = true;
        break;
      }
      parent = node;
      if (segment.startsWith(':')) {
        paramNames.push(segment.slice(1));
        node = node.param ??= newNode();
      } else {
        node = childLiteral(node, segment);
      }
    }
    const query = route.match.query ? Object.entries(route.match.query) : undefined;
    const headers = route.match.headers ? Object.entries(route.match.headers).map(([k, v]): ValueTest => [k.toLowerCase(), v]) : undefined;
    const cookies = route.match.cookies ? Object.entries(route.match.cookies) : undefined;
    const candidate: Candidate = {
      route,
      order,
      paramNames,
      picks: (query?.length ?? 0) + (headers?.length ?? 0) + (cookies?.length ?? 0),
      conditions: (route.match.methods ? 1 : 0) + (route.match.host ? 1 : 0),
      methods: route.match.methods ? new Set(route.match.methods.flatMap((m) => (m === 'GET' ? ['GET', 'HEAD'] : [m]))) : undefined,
      host: route.match.host?.toLowerCase(),
      query,
      headers: headers?.length ? headers : undefined,
      cookies: cookies?.length ? cookies : undefined,
      alias: false,
    };
    (wildcard ? node.rest : node.exact).push(candidate);
    // The other spelling of the path gets the same route, as a second trie entry: matching stays one walk.
    if (!wildcard && !route.match.strictSlash && route.match.path !== '/') {
      const other = segments[segments.length - 1] === '' ? parent : childLiteral(node, '');
      other.exact.push({ ...candidate, alias: true });
    }
  });
  const sortCandidates = (node: Node) => {
    const bySpecificity = (a: Candidate, b: Candidate) =>
      Number(a.alias) - Number(b.alias) || b.picks - a.picks || b.conditions - a.conditions || a.order - b.order;
    node.exact.sort(bySpecificity);
    node.rest.sort(bySpecificity);
    node.literal?.forEach(sortCandidates);
    if (node.param) sortCandidates(node.param);
  };
  sortCandidates(root);

  return {
    version,
    routes,
    upstreams,
    match(method, host, path, query, headers) {
      const state: MatchState = {
        method,
        host,
        query,
        headers,
        parsed: undefined,
        cookies: undefined,
        segments: path.slice(1).split('/'),
        values: [],
      };
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
  readonly headers: IncomingHttpHeaders;
  parsed: URLSearchParams | undefined;
  /** The Cookie header by cookie name, parsed on first need. */
  cookies: Map<string, string[]> | undefined;
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
  if (c.headers) {
    for (const [name, accept] of c.headers) {
      const actual = state.headers[name];
      if (actual === undefined) return false;
      if (typeof actual === 'string' ? !accepted(actual, accept) : !actual.some((a) => accepted(a, accept))) return false;
    }
  }
  if (c.cookies) {
    state.cookies ??= parseCookies(state.headers.cookie);
    for (const [name, accept] of c.cookies) {
      const actual = state.cookies.get(name);
      if (!actual || !actual.some((a) => accepted(a, accept))) return false;
    }
  }
  return true;
}

function accepted(actual: string, accept: ValueCondition): boolean {
  return typeof accept === 'string' ? accept === '*' || actual === accept : accept.includes(actual);
}

/** `a=1; b="2"` → a → [1], b → [2] (quotes removed, values otherwise as sent; a name sent twice keeps both). */
function parseCookies(header: string | readonly string[] | undefined): Map<string, string[]> {
  const cookies = new Map<string, string[]>();
  if (header === undefined) return cookies;
  for (const line of typeof header === 'string' ? [header] : header) {
    for (const pair of line.split(';')) {
      const eq = pair.indexOf('=');
      if (eq < 0) continue;
      const name = pair.slice(0, eq).trim();
      if (!name) continue;
      let value = pair.slice(eq + 1).trim();
      if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
      const values = cookies.get(name);
      if (values) values.push(value);
      else cookies.set(name, [value]);
    }
  }
  return cookies;
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
export function decide(
  table: CompiledTable,
  method: string,
  host: string | undefined,
  path: string,
  query: string,
  headers: IncomingHttpHeaders,
  bucket: () => number,
  now: number,
): Decision {
  const hit = table.match(method, host, path, query, headers);
  if (!hit) return { route: UNMATCHED, mode: 'legacy', target: 'legacy', service: LEGACY, spec: undefined, params: {} };
  const { route, params } = hit;
  const target =
    route.mode === 'new'
      ? 'new'
      : route.mode === 'retired'
        ? 'proxy'
        : route.mode === 'canary'
          ? bucket() < Math.round((route.percent ?? 0) * 100)
            ? 'new'
            : 'legacy'
          : inBrownout(route, now)
            ? 'proxy'
            : 'legacy';
  const service = target === 'new' ? (route.service ?? DEFAULT_SERVICE) : target === 'proxy' ? 'proxy' : LEGACY;
  return { route: route.name, mode: route.mode, target, service, spec: route, params };
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

/**
 * One line per upstream and per route that a new table adds, removes or
 * changes, for dry runs and audit views. Upstreams are compared only when
 * both lists are given; their lines come first.
 */
export function describeChange(
  before: readonly Route[],
  after: readonly Route[],
  beforeUpstreams?: readonly UpstreamSpec[],
  afterUpstreams?: readonly UpstreamSpec[],
): string[] {
  const lines = beforeUpstreams && afterUpstreams ? describeUpstreams(beforeUpstreams, afterUpstreams) : [];
  const old = new Map(before.map((r) => [r.name, r]));
  for (const route of after) {
    const previous = old.get(route.name);
    if (!previous) lines.push(`add     ${route.name}: ${route.match.path} → ${summary(route)}`);
    else if (canonical(previous) !== canonical(route)) lines.push(`change  ${route.name}: ${routeDifference(previous, route)}`);
    old.delete(route.name);
  }
  for (const route of old.values()) lines.push(`remove  ${route.name}: ${route.match.path} (${summary(route)})`);
  return lines;
}

/** `legacy → new (fallback)`; when the summaries read the same, which fields changed: `legacy (service changed)`. */
function routeDifference(before: Route, after: Route): string {
  const was = summary(before);
  const now = summary(after);
  if (was !== now) return `${was} → ${now}`;
  const a = before as unknown as Record<string, unknown>;
  const b = after as unknown as Record<string, unknown>;
  const changed = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => canonical(a[k]) !== canonical(b[k]));
  return `${now} (${changed.join(', ')} changed)`;
}

/** `add     upstream files: env FILES_URL`, `change  upstream app: env APP_URL → dns http://app:8081; slowStartMs (default) → 10000`, `remove  upstream files`. */
function describeUpstreams(before: readonly UpstreamSpec[], after: readonly UpstreamSpec[]): string[] {
  const old = new Map(before.map((u) => [u.name, u]));
  const lines: string[] = [];
  for (const upstream of after) {
    const previous = old.get(upstream.name);
    if (!previous) lines.push(`add     upstream ${upstream.name}: ${upstreamSource(upstream)}`);
    else if (canonical(previous) !== canonical(upstream))
      lines.push(`change  upstream ${upstream.name}: ${upstreamDifferences(previous, upstream)}`);
    old.delete(upstream.name);
  }
  for (const upstream of old.values()) lines.push(`remove  upstream ${upstream.name}`);
  return lines;
}

/** Where an upstream's endpoints come from: `env APP_URL`, `dns http://app.internal:8081`, `endpoints http://a:1, http://b:1`. */
export function upstreamSource(u: UpstreamSpec): string {
  if (u.env !== undefined) return `env ${u.env}`;
  if (u.dns !== undefined) return `dns ${u.dns}`;
  return u.endpoints?.length ? `endpoints ${u.endpoints.join(', ')}` : 'no endpoints';
}

const SOURCE_KEYS = new Set(['name', 'endpoints', 'dns', 'env']);

function upstreamDifferences(a: UpstreamSpec, b: UpstreamSpec): string {
  const parts: string[] = [];
  if (upstreamSource(a) !== upstreamSource(b)) parts.push(`${upstreamSource(a)} → ${upstreamSource(b)}`);
  const fields = a as unknown as Record<string, unknown>;
  const next = b as unknown as Record<string, unknown>;
  const keys = [...new Set([...Object.keys(fields), ...Object.keys(next)])].filter((k) => !SOURCE_KEYS.has(k)).sort();
  const show = (v: unknown) => (v === undefined ? '(default)' : typeof v === 'object' && v !== null ? canonical(v) : String(v));
  for (const key of keys) {
    if (canonical(fields[key]) !== canonical(next[key])) parts.push(`${key} ${show(fields[key])} → ${show(next[key])}`);
  }
  return parts.join('; ');
}

/**
 * A short description of what a route does: `canary 10%`, `new (fallback)`, `new → files (fallback)`,
 * `retired 410`. A service other than the default is shown unless `withService` is false (where a
 * service column says it already).
 */
export function summary(route: Route, withService = true): string {
  const to = (service: string | undefined) => (withService && service !== undefined && service !== DEFAULT_SERVICE ? ` → ${service}` : '');
  const fallback = !route.fallback
    ? ''
    : typeof route.fallback === 'string' && route.fallback !== LEGACY
      ? ` (fallback to ${route.fallback})`
      : ' (fallback)';
  switch (route.mode) {
    case 'canary':
      return `canary ${route.percent}%${to(route.service)}${fallback}`;
    case 'new':
      return `new${to(route.service)}${fallback}`;
    case 'retired':
      return `retired ${route.retired?.status ?? ''}`.trim();
    case 'shadow':
      return `shadow${to(route.shadow?.service ?? route.service)}${route.brownouts?.length ? ` (${route.brownouts.length} brownouts)` : ''}`;
    case 'legacy':
      return route.brownouts?.length ? `${route.mode} (${route.brownouts.length} brownouts)` : route.mode;
  }
}
