/**
 * Checks a whole route table as operators write it: the routes, and the
 * upstreams they send to (`upstream-validation.ts`). Every problem is
 * reported, each naming the route (or upstream) and the field, so an
 * operator fixes them all in one go; nothing is applied unless the whole
 * table is valid.
 *
 * A table is `{"upstreams": [...], "routes": [...]}`, or a bare list of
 * routes, which means "these routes, with the upstreams in effect" (the
 * caller's `options.upstreams`: the current version's; IMPLICIT_UPSTREAMS
 * when there is none).
 */

import { isObject } from '../../lib/objects.js';
import { checkExtractors } from './route-features.js';
import { checkHtmlShadow } from './shadow-html-fields.js';
import { MODES, type Mode, type Route } from './route-table.js';
import { checkUpstreams, upstreamNames } from './upstream-validation.js';
import { DEFAULT_SERVICE, IMPLICIT_UPSTREAMS, LEGACY, type UpstreamSpec } from './upstreams.js';

/** The outcome of validating a table: its routes and upstreams, or every problem found. */
export type Validation = { ok: true; routes: Route[]; upstreams: UpstreamSpec[] } | { ok: false; problems: string[] };

export interface ValidationOptions {
  /** The upstreams in effect, for a table given as a bare list of routes (default IMPLICIT_UPSTREAMS). */
  readonly upstreams?: readonly UpstreamSpec[] | undefined;
}

const TABLE_KEYS = ['upstreams', 'routes'];
const ROUTE_KEYS = new Set([
  'name',
  'match',
  'mode',
  'percent',
  'service',
  'fallback',
  'retired',
  'brownouts',
  'shadow',
  'timeouts',
  'features',
]);
const MATCH_KEYS = ['path', 'methods', 'host', 'query', 'headers', 'cookies', 'strictSlash'];
const SHADOW_KEYS = ['ignore', 'headers', 'calibrate', 'maxBodyBytes', 'percent', 'service', 'maxInFlight', 'html'];
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;
const NAME = /^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$/;
/** An HTTP token (RFC 9110 §5.6.2): what header names are, and cookie names too (RFC 6265 §4.1.1). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** The modes whose requests (some or all, or copies) go to the route's service. */
const NEW_SIDE: readonly Mode[] = ['new', 'canary', 'shadow'];

/** Reports one problem of the route being checked: `field: text`. */
type Say = (field: string, text: string) => void;
type Fields = Record<string, unknown>;

/** The upstream names routes may use, and how problems list them. */
interface Names {
  readonly all: readonly string[];
  readonly listed: string;
}

export function validateTable(input: unknown, options: ValidationOptions = {}): Validation {
  const problems: string[] = [];
  let routes: unknown;
  let upstreams: readonly UpstreamSpec[] = options.upstreams ?? IMPLICIT_UPSTREAMS;
  if (Array.isArray(input)) {
    routes = input;
  } else if (isObject(input)) {
    for (const key of Object.keys(input))
      if (!TABLE_KEYS.includes(key)) problems.push(`table: ${key}: unknown field (known: ${TABLE_KEYS.join(', ')})`);
    routes = input['routes'];
    if (!Array.isArray(routes)) problems.push('routes: must be a JSON array of routes');
    if (input['upstreams'] !== undefined) {
      problems.push(...checkUpstreams(input['upstreams']));
      upstreams = Array.isArray(input['upstreams']) ? (input['upstreams'] as UpstreamSpec[]) : [];
    }
  } else {
    return { ok: false, problems: ['the table must be a JSON array of routes, or {"upstreams": [...], "routes": [...]}'] };
  }
  const all = upstreams.filter((u) => isObject(u) && typeof u.name === 'string').map((u) => u.name);
  const names: Names = { all, listed: upstreamNames(upstreams.filter((u) => isObject(u) && typeof u.name === 'string')) };
  if (Array.isArray(routes)) checkRoutes(routes, names, problems);
  return problems.length ? { ok: false, problems } : { ok: true, routes: routes as Route[], upstreams: [...upstreams] };
}

function checkRoutes(input: readonly unknown[], upstreams: Names, problems: string[]): void {
  // Across routes: the names taken, and each match's signature (two routes that match the same requests).
  const names = new Map<string, number>();
  const signatures = new Map<string, string>();
  input.forEach((raw, i) => {
    const label = typeof (raw as Route)?.name === 'string' ? `route ${i + 1} "${(raw as Route).name}"` : `route ${i + 1}`;
    const say: Say = (field, text) => problems.push(`${label}: ${field}: ${text}`);
    if (!isObject(raw)) {
      problems.push(`${label}: must be an object`);
      return;
    }
    for (const key of Object.keys(raw)) if (!ROUTE_KEYS.has(key)) say(key, `unknown field (known: ${[...ROUTE_KEYS].join(', ')})`);
    checkName(raw['name'], i, names, say);
    checkMatch(raw['match'], label, signatures, say);
    checkMode(raw, say);
    checkService(raw, upstreams, say);
    checkRetirement(raw, say);
    if (raw['shadow'] !== undefined) checkShadow(raw['shadow'], upstreams, say);
    if (raw['timeouts'] !== undefined) checkTimeouts(raw['timeouts'], say);
    if (raw['features'] !== undefined) for (const problem of checkExtractors(raw['features'])) say('features', problem);
  });
}

function checkName(name: unknown, i: number, names: Map<string, number>, say: Say): void {
  if (typeof name !== 'string' || !NAME.test(name)) {
    say('name', 'must be a dotted lower-case name such as "simple.detail" (letters, digits, _ and .)');
  } else if (names.has(name)) {
    say('name', `duplicates route ${names.get(name)! + 1}`);
  } else {
    names.set(name, i);
  }
}

function checkMatch(match: unknown, label: string, signatures: Map<string, string>, say: Say): void {
  if (!isObject(match)) {
    say('match', 'must be an object with at least "path"');
    return;
  }
  for (const key of Object.keys(match))
    if (!MATCH_KEYS.includes(key)) say(`match.${key}`, `unknown field (known: ${MATCH_KEYS.join(', ')})`);
  const pathProblem = typeof match['path'] === 'string' ? checkPattern(match['path']) : 'must be a path pattern starting with /';
  if (pathProblem) say('match.path', pathProblem);
  if (match['methods'] !== undefined) {
    if (!Array.isArray(match['methods']) || match['methods'].length === 0)
      say('match.methods', 'must be a non-empty list such as ["GET", "HEAD"]');
    else
      for (const m of match['methods'])
        if (!METHODS.includes(m as (typeof METHODS)[number])) say('match.methods', `"${m}" is not one of ${METHODS.join(', ')}`);
  }
  if (match['host'] !== undefined && (typeof match['host'] !== 'string' || !/^(\*\.)?[a-z0-9.-]+$/i.test(match['host']))) {
    say('match.host', 'must be a host name such as "pypi.example.org" or "*.example.org"');
  }
  if (match['query'] !== undefined) {
    const q = match['query'];
    if (!isObject(q) || Object.keys(q).length === 0) say('match.query', 'must be an object such as {":action": "rss"}');
    else
      for (const [k, v] of Object.entries(q))
        if (typeof v !== 'string' || k === '') say('match.query', `condition "${k}" must have a string value (use "*" for any)`);
  }
  if (match['headers'] !== undefined) checkValueConditions('headers', match['headers'], say);
  if (match['cookies'] !== undefined) checkValueConditions('cookies', match['cookies'], say);
  if (match['strictSlash'] !== undefined && typeof match['strictSlash'] !== 'boolean') {
    say('match.strictSlash', 'must be true (match the path only as written) or false (with or without the final slash)');
  }
  if (!pathProblem && typeof match['path'] === 'string') {
    const signature = JSON.stringify([
      normalizePattern(match['path']),
      [...((match['methods'] as string[]) ?? [])].sort(),
      match['host'] ?? null,
      conditionsSignature(match['query'], false),
      conditionsSignature(match['headers'], true),
      conditionsSignature(match['cookies'], false),
    ]);
    if (signatures.has(signature)) say('match', `is the same as ${signatures.get(signature)}; one of them could never match`);
    else signatures.set(signature, label);
  }
}

/**
 * `match.headers` and `match.cookies`: name → an exact value, `"*"` (present, any value), or a
 * non-empty list of accepted values. Header names are compared in any case, so two that differ
 * only by case are one condition given twice.
 */
function checkValueConditions(kind: 'headers' | 'cookies', conditions: unknown, say: Say): void {
  const field = `match.${kind}`;
  const example = kind === 'headers' ? '{"x-tenant": "acme"}' : '{"beta": "1"}';
  if (!isObject(conditions) || Object.keys(conditions).length === 0) {
    say(field, `must be an object such as ${example} (a value, "*" for any, or a list of values)`);
    return;
  }
  const seen = new Set<string>();
  for (const [name, value] of Object.entries(conditions)) {
    if (!TOKEN.test(name)) {
      say(field, `"${name}" is not a ${kind === 'headers' ? 'header' : 'cookie'} name (letters, digits and !#$%&'*+-.^_\`|~)`);
      continue;
    }
    if (kind === 'headers') {
      const lower = name.toLowerCase();
      if (seen.has(lower)) say(field, `"${name}" is given twice (header names are not case-sensitive)`);
      seen.add(lower);
      if (lower === 'host') say(field, '"host": use match.host');
      if (lower === 'cookie') say(field, '"cookie": use match.cookies');
    }
    const values = Array.isArray(value) ? value : [value];
    if ((Array.isArray(value) && value.length === 0) || values.some((v) => typeof v !== 'string')) {
      say(field, `"${name}" must be a string ("*" for any value) or a non-empty list of strings`);
    } else if (Array.isArray(value) && value.includes('*')) {
      say(field, `"${name}": "*" means any value, so it cannot be one of a list`);
      // eslint-disable-next-line no-control-regex -- control characters in a header value are refused on purpose
    } else if (values.some((v) => /[\u0000-\u001f\u007f]/.test(v as string))) {
      say(field, `"${name}": a value cannot contain control characters (no request could match it)`);
    }
  }
}

/** Conditions in a form that does not depend on key order, header-name case or the order of a list. */
function conditionsSignature(conditions: unknown, caseless: boolean): unknown {
  if (!isObject(conditions)) return null;
  return Object.entries(conditions)
    .map(([k, v]) => [caseless ? k.toLowerCase() : k, [...new Set((Array.isArray(v) ? v : [v]).map(String))].sort()] as const)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

function checkMode(r: Fields, say: Say): void {
  const mode = r['mode'];
  if (!MODES.includes(mode as Mode)) say('mode', `must be one of ${MODES.join(', ')}`);
  if (mode === 'canary') {
    if (typeof r['percent'] !== 'number' || !(r['percent'] >= 0 && r['percent'] <= 100))
      say('percent', 'canary needs a percent from 0 to 100');
  } else if (r['percent'] !== undefined) {
    say('percent', `only canary routes take a percent (this one is ${String(mode)})`);
  }
}

/**
 * The route's `service` and `fallback`. Both are kept on every mode, so a route that goes back to
 * legacy and forward again keeps its service and its safety net; only new, canary and shadow routes
 * act on the service, and only new and canary on the fallback.
 */
function checkService(r: Fields, upstreams: Names, say: Say): void {
  const mode = r['mode'] as Mode;
  const service = r['service'];
  const known = `(upstreams: ${upstreams.listed})`;
  if (service !== undefined) {
    if (typeof service !== 'string' || service === '') say('service', `must be the name of an upstream ${known}`);
    else if (service === LEGACY) say('service', `names the upstream that answers on the new side; legacy is the other side ${known}`);
    else if (!upstreams.all.includes(service)) say('service', `no upstream named "${service}" ${known}`);
  } else if (NEW_SIDE.includes(mode) && !upstreams.all.includes(DEFAULT_SERVICE)) {
    const shadowService = isObject(r['shadow']) ? r['shadow']['service'] : undefined;
    if (mode !== 'shadow' || shadowService === undefined) {
      say('service', `a ${mode} route needs one: there is no upstream named "${DEFAULT_SERVICE}", the default ${known}`);
    }
  }
  const fallback = r['fallback'];
  if (fallback === undefined || typeof fallback === 'boolean') return;
  const own = typeof service === 'string' ? service : DEFAULT_SERVICE;
  if (typeof fallback !== 'string' || fallback === '')
    say('fallback', `must be true (fall back to legacy), false, or the name of an upstream ${known}`);
  else if (!upstreams.all.includes(fallback)) say('fallback', `no upstream named "${fallback}" ${known}`);
  else if (fallback === own) say('fallback', `"${fallback}" is the route's own service; fall back to legacy (true) or to another upstream`);
}

/** The answer of a retired route, and brownouts (windows when a legacy route answers as retired). */
function checkRetirement(r: Fields, say: Say): void {
  const mode = r['mode'];
  if (r['retired'] !== undefined || mode === 'retired' || r['brownouts'] !== undefined) {
    const ret = r['retired'];
    if (!isObject(ret)) {
      say('retired', `${mode === 'retired' ? 'a retired route needs' : 'brownouts need'} retired: {"status": 410, "message": "…"}`);
    } else {
      if (typeof ret['status'] !== 'number' || !Number.isInteger(ret['status']) || ret['status'] < 400 || ret['status'] > 599)
        say('retired.status', 'must be an HTTP error status, 400 to 599 (410 Gone is usual)');
      if (typeof ret['message'] !== 'string' || ret['message'].trim() === '')
        say('retired.message', 'must say what replaced the route, for the people still calling it');
    }
  }
  if (r['brownouts'] === undefined) return;
  if (mode !== 'legacy' && mode !== 'shadow') say('brownouts', 'brownouts are for routes still served by legacy (mode legacy or shadow)');
  if (!Array.isArray(r['brownouts'])) {
    say('brownouts', 'must be a list of {"start": ISO time, "end": ISO time}');
    return;
  }
  r['brownouts'].forEach((b: unknown, j) => {
    const w = b as Fields | undefined;
    const start = Date.parse(String(w?.['start']));
    const end = Date.parse(String(w?.['end']));
    if (Number.isNaN(start) || Number.isNaN(end))
      say(`brownouts[${j}]`, 'start and end must be ISO 8601 times such as 2026-12-01T10:00:00Z');
    else if (end <= start) say(`brownouts[${j}]`, 'end must be after start');
  });
}

function checkShadow(sh: unknown, upstreams: Names, say: Say): void {
  if (typeof sh !== 'object' || sh === null) {
    say('shadow', 'must be an object');
    return;
  }
  const fields = sh as Fields;
  for (const key of ['ignore', 'headers'] as const) {
    if (fields[key] !== undefined && (!Array.isArray(fields[key]) || (fields[key] as unknown[]).some((x) => typeof x !== 'string')))
      say(`shadow.${key}`, 'must be a list of strings');
  }
  if (fields['calibrate'] !== undefined && typeof fields['calibrate'] !== 'boolean') say('shadow.calibrate', 'must be true or false');
  const max = fields['maxBodyBytes'];
  if (max !== undefined && (typeof max !== 'number' || !Number.isInteger(max) || max < 1 || max > 16 * 1024 * 1024)) {
    say('shadow.maxBodyBytes', 'must be a whole number of bytes from 1 to 16777216');
  }
  const percent = fields['percent'];
  if (percent !== undefined && (typeof percent !== 'number' || !(percent >= 0 && percent <= 100))) {
    say('shadow.percent', 'must be the share of sessions copied, from 0 to 100');
  }
  const inFlight = fields['maxInFlight'];
  if (inFlight !== undefined && (typeof inFlight !== 'number' || !Number.isInteger(inFlight) || inFlight < 1 || inFlight > 1024)) {
    say('shadow.maxInFlight', 'must be a whole number of copies from 1 to 1024');
  }
  const service = fields['service'];
  const known = `(upstreams: ${upstreams.listed})`;
  if (service !== undefined) {
    if (typeof service !== 'string' || service === '') say('shadow.service', `must be the name of an upstream ${known}`);
    else if (service === LEGACY) say('shadow.service', `copies go to the new side; legacy already answers the client ${known}`);
    else if (!upstreams.all.includes(service)) say('shadow.service', `no upstream named "${service}" ${known}`);
  }
  if (fields['html'] !== undefined) checkHtmlShadow(fields['html'], say);
  for (const key of Object.keys(fields))
    if (!SHADOW_KEYS.includes(key)) say(`shadow.${key}`, `is not a shadow setting (${SHADOW_KEYS.join(', ')})`);
}

function checkTimeouts(t: unknown, say: Say): void {
  const fields = t as Fields | undefined;
  for (const key of ['headersMs', 'bodyMs']) {
    const v = fields?.[key];
    if (v !== undefined && (typeof v !== 'number' || !(v > 0 && v <= 3_600_000)))
      say(`timeouts.${key}`, 'must be milliseconds, 1 to 3600000');
  }
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
