/**
 * Checks a whole route table as operators write it. Every problem is
 * reported, each naming the route and the field, so an operator fixes them
 * all in one go; nothing is applied unless the whole table is valid.
 */

import { isObject } from '../../lib/objects.js';
import { checkExtractors } from './route-features.js';
import { MODES, type Mode, type Route } from './route-table.js';

/** The outcome of validating a table: the routes, or every problem found. */
export type Validation = { ok: true; routes: Route[] } | { ok: false; problems: string[] };

const ROUTE_KEYS = new Set(['name', 'match', 'mode', 'percent', 'fallback', 'retired', 'brownouts', 'shadow', 'timeouts', 'features']);
const MATCH_KEYS = new Set(['path', 'methods', 'host', 'query']);
const SHADOW_KEYS = ['ignore', 'headers', 'calibrate', 'maxBodyBytes'];
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;
const NAME = /^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$/;

/** Reports one problem of the route being checked: `field: text`. */
type Say = (field: string, text: string) => void;
type Fields = Record<string, unknown>;

export function validateTable(input: unknown): Validation {
  const problems: string[] = [];
  if (!Array.isArray(input)) return { ok: false, problems: ['the table must be a JSON array of routes'] };
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
    checkRetirement(raw, say);
    if (raw['shadow'] !== undefined) checkShadow(raw['shadow'], say);
    if (raw['timeouts'] !== undefined) checkTimeouts(raw['timeouts'], say);
    if (raw['features'] !== undefined) for (const problem of checkExtractors(raw['features'])) say('features', problem);
  });
  return problems.length ? { ok: false, problems } : { ok: true, routes: input as Route[] };
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
    if (!isObject(q) || Object.keys(q).length === 0) say('match.query', 'must be an object such as {":action": "rss"}');
    else for (const [k, v] of Object.entries(q)) if (typeof v !== 'string' || k === '') say('match.query', `condition "${k}" must have a string value (use "*" for any)`);
  }
  if (!pathProblem && typeof match['path'] === 'string') {
    const signature = JSON.stringify([normalizePattern(match['path']), [...((match['methods'] as string[]) ?? [])].sort(), match['host'] ?? null, match['query'] ?? null]);
    if (signatures.has(signature)) say('match', `is the same as ${signatures.get(signature)}; one of them could never match`);
    else signatures.set(signature, label);
  }
}

function checkMode(r: Fields, say: Say): void {
  const mode = r['mode'];
  if (!MODES.includes(mode as Mode)) say('mode', `must be one of ${MODES.join(', ')}`);
  if (mode === 'canary') {
    if (typeof r['percent'] !== 'number' || !(r['percent'] >= 0 && r['percent'] <= 100)) say('percent', 'canary needs a percent from 0 to 100');
  } else if (r['percent'] !== undefined) {
    say('percent', `only canary routes take a percent (this one is ${String(mode)})`);
  }
  // Kept on every mode, so a route that goes back to legacy and forward again keeps its safety net;
  // only new and canary routes act on it.
  if (r['fallback'] !== undefined && typeof r['fallback'] !== 'boolean') say('fallback', 'must be true or false');
}

/** The answer of a retired route, and brownouts (windows when a legacy route answers as retired). */
function checkRetirement(r: Fields, say: Say): void {
  const mode = r['mode'];
  if (r['retired'] !== undefined || mode === 'retired' || r['brownouts'] !== undefined) {
    const ret = r['retired'];
    if (!isObject(ret)) {
      say('retired', `${mode === 'retired' ? 'a retired route needs' : 'brownouts need'} retired: {"status": 410, "message": "…"}`);
    } else {
      if (typeof ret['status'] !== 'number' || !Number.isInteger(ret['status']) || ret['status'] < 400 || ret['status'] > 599) say('retired.status', 'must be an HTTP error status, 400 to 599 (410 Gone is usual)');
      if (typeof ret['message'] !== 'string' || ret['message'].trim() === '') say('retired.message', 'must say what replaced the route, for the people still calling it');
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
    if (Number.isNaN(start) || Number.isNaN(end)) say(`brownouts[${j}]`, 'start and end must be ISO 8601 times such as 2026-12-01T10:00:00Z');
    else if (end <= start) say(`brownouts[${j}]`, 'end must be after start');
  });
}

function checkShadow(sh: unknown, say: Say): void {
  if (typeof sh !== 'object' || sh === null) {
    say('shadow', 'must be an object');
    return;
  }
  const fields = sh as Fields;
  for (const key of ['ignore', 'headers'] as const) {
    if (fields[key] !== undefined && (!Array.isArray(fields[key]) || (fields[key] as unknown[]).some((x) => typeof x !== 'string'))) say(`shadow.${key}`, 'must be a list of strings');
  }
  if (fields['calibrate'] !== undefined && typeof fields['calibrate'] !== 'boolean') say('shadow.calibrate', 'must be true or false');
  const max = fields['maxBodyBytes'];
  if (max !== undefined && (typeof max !== 'number' || !Number.isInteger(max) || max < 1 || max > 16 * 1024 * 1024)) {
    say('shadow.maxBodyBytes', 'must be a whole number of bytes from 1 to 16777216');
  }
  for (const key of Object.keys(fields)) if (!SHADOW_KEYS.includes(key)) say(`shadow.${key}`, `is not a shadow setting (${SHADOW_KEYS.join(', ')})`);
}

function checkTimeouts(t: unknown, say: Say): void {
  const fields = t as Fields | undefined;
  for (const key of ['headersMs', 'bodyMs']) {
    const v = fields?.[key];
    if (v !== undefined && (typeof v !== 'number' || !(v > 0 && v <= 3_600_000))) say(`timeouts.${key}`, 'must be milliseconds, 1 to 3600000');
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
