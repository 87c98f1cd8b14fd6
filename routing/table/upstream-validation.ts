/**
 * Checks a table's `upstreams` list as operators write it. Like the routes'
 * checks, every problem is reported and each names the upstream and the
 * field (`upstream 2 "files": endpoints[0]: …`), so one round of fixes is
 * enough. Pure: nothing is resolved or connected to here.
 */

import { isIP } from 'node:net';
import { isObject } from '../../lib/objects.js';
import { BALANCES, LEGACY, type UpstreamSpec } from './upstreams.js';

export const UPSTREAM_KEYS = [
  'name',
  'endpoints',
  'dns',
  'env',
  'resolveEveryMs',
  'balance',
  'session',
  'health',
  'outlier',
  'slowStartMs',
] as const;
const HEALTH_KEYS = ['path', 'intervalMs', 'timeoutMs', 'healthy', 'unhealthy'] as const;
const OUTLIER_KEYS = ['consecutiveFailures', 'ejectMs'] as const;
/** Like route names, but one segment: they label metrics and appear in `service` fields. */
export const UPSTREAM_NAME = /^[a-z][a-z0-9_-]*$/;
const ENV_NAME = /^[A-Z_][A-Z0-9_]*$/;
/** What the proxy answers itself is labelled `proxy`; no upstream may take the name. */
const RESERVED = new Set(['proxy']);
const MAX_MS = 3_600_000;
const ORIGIN_EXAMPLE = 'an endpoint is an origin such as http://10.0.0.5:8081';

type Say = (field: string, text: string) => void;

/** Every problem of an `upstreams` list; empty when it is valid. */
export function checkUpstreams(input: unknown): string[] {
  const problems: string[] = [];
  if (!Array.isArray(input) || input.length === 0) {
    return ['upstreams: must be a list of upstreams such as [{"name": "legacy", "env": "LEGACY_URL"}, {"name": "app", "env": "APP_URL"}]'];
  }
  const names = new Map<string, number>();
  input.forEach((raw: unknown, i) => {
    const name = isObject(raw) && typeof raw['name'] === 'string' ? raw['name'] : undefined;
    const label = name !== undefined ? `upstream ${i + 1} "${name}"` : `upstream ${i + 1}`;
    const say: Say = (field, text) => problems.push(field ? `${label}: ${field}: ${text}` : `${label}: ${text}`);
    if (!isObject(raw)) {
      problems.push(`${label}: must be an object such as {"name": "app", "env": "APP_URL"}`);
      return;
    }
    for (const key of Object.keys(raw)) {
      if (!(UPSTREAM_KEYS as readonly string[]).includes(key)) say(key, `unknown field (known: ${UPSTREAM_KEYS.join(', ')})`);
    }
    if (name === undefined || !UPSTREAM_NAME.test(name)) {
      say('name', 'must be a lower-case name such as "files" (letters, digits, _ and -; one word, no dots)');
    } else if (RESERVED.has(name)) {
      say('name', `"${name}" is reserved: it labels the answers the proxy gives itself`);
    } else if (names.has(name)) {
      say('', `duplicates upstream ${names.get(name)! + 1}`);
    } else {
      names.set(name, i);
    }
    checkSource(raw, say);
    if (raw['balance'] !== undefined && !BALANCES.includes(raw['balance'] as (typeof BALANCES)[number])) {
      say('balance', `must be ${BALANCES.join(' or ')}`);
    }
    if (raw['session'] !== undefined && typeof raw['session'] !== 'boolean') say('session', 'must be true or false');
    if (raw['health'] !== undefined) checkHealth(raw['health'], say);
    if (raw['outlier'] !== undefined) checkOutlier(raw['outlier'], say);
    if (raw['slowStartMs'] !== undefined && !wholeIn(raw['slowStartMs'], 0, MAX_MS))
      say('slowStartMs', `must be milliseconds, 0 to ${MAX_MS}`);
  });
  if (!input.some((u) => isObject(u) && u['name'] === LEGACY)) {
    problems.push(`upstreams: "${LEGACY}" is required: it answers every request no route claims, and what falls back lands there`);
  }
  return problems;
}

/** The names of a list of upstreams, as problems list them: `legacy, app, files`. */
export function upstreamNames(upstreams: readonly UpstreamSpec[]): string {
  return upstreams.map((u) => u.name).join(', ');
}

/** Exactly one of endpoints, dns and env, each well formed. */
function checkSource(u: Record<string, unknown>, say: Say): void {
  const given = (['endpoints', 'dns', 'env'] as const).filter((k) => u[k] !== undefined);
  if (given.length !== 1) {
    say('', `needs endpoints, dns or env (exactly one${given.length ? `; it has ${given.join(' and ')}` : ''})`);
  }
  if (u['endpoints'] !== undefined) {
    const list = u['endpoints'];
    if (!Array.isArray(list) || list.length === 0) {
      say('endpoints', 'must be a non-empty list of URLs such as ["http://10.0.0.5:8081", "http://10.0.0.6:8081"]');
    } else {
      const seen = new Map<string, number>();
      list.forEach((e: unknown, j) => {
        const problem = originProblem(e);
        if (problem) return say(`endpoints[${j}]`, problem);
        const origin = new URL(e as string).origin;
        if (seen.has(origin)) say(`endpoints[${j}]`, `"${e as string}" duplicates endpoints[${seen.get(origin)}]`);
        else seen.set(origin, j);
      });
    }
  }
  if (u['dns'] !== undefined) {
    const problem = originProblem(u['dns']);
    if (problem) {
      say('dns', problem.replace(ORIGIN_EXAMPLE, 'dns is one URL whose host name is resolved, such as http://app.internal:8081'));
    } else {
      const host = new URL(u['dns'] as string).hostname.replace(/^\[|\]$/g, '');
      if (isIP(host))
        say('dns', `"${u['dns'] as string}" has an IP address, nothing to resolve; give the addresses as endpoints, or a host name here`);
    }
  }
  if (u['env'] !== undefined && (typeof u['env'] !== 'string' || !ENV_NAME.test(u['env']))) {
    say(
      'env',
      `${typeof u['env'] === 'string' ? `"${u['env']}"` : 'it'} must be an environment variable name such as APP_URL (A-Z, 0-9 and _, not starting with a digit)`,
    );
  }
  if (u['resolveEveryMs'] !== undefined) {
    if (u['dns'] === undefined) say('resolveEveryMs', 'only a dns upstream is resolved again');
    else if (!wholeIn(u['resolveEveryMs'], 1, MAX_MS)) say('resolveEveryMs', `must be milliseconds, 1 to ${MAX_MS}`);
  }
}

/** What keeps a value from being an endpoint origin (http or https, a host, maybe a port; nothing else), or undefined. */
function originProblem(value: unknown): string | undefined {
  if (typeof value !== 'string') return `must be a URL; ${ORIGIN_EXAMPLE}`;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `"${value}" is not a URL; ${ORIGIN_EXAMPLE}`;
  }
  // Never echo credentials back: problems end up in logs and in the audit of a refused change.
  if (url.username || url.password) return `has credentials (user:password@), which do not belong in the route table; ${ORIGIN_EXAMPLE}`;
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return `"${value}" is not http or https; ${ORIGIN_EXAMPLE}`;
  if (!url.hostname) return `"${value}" has no host; ${ORIGIN_EXAMPLE}`;
  if (url.pathname !== '/' && url.pathname !== '') return `"${value}" has a path; ${ORIGIN_EXAMPLE}`;
  if (url.search || value.includes('?')) return `"${value}" has a query; ${ORIGIN_EXAMPLE}`;
  if (url.hash || value.includes('#')) return `"${value}" has a fragment; ${ORIGIN_EXAMPLE}`;
  return undefined;
}

function checkHealth(h: unknown, say: Say): void {
  if (!isObject(h)) {
    say('health', 'must be an object such as {"path": "/_health"}');
    return;
  }
  for (const key of Object.keys(h)) {
    if (!(HEALTH_KEYS as readonly string[]).includes(key)) say(`health.${key}`, `unknown field (known: ${HEALTH_KEYS.join(', ')})`);
  }
  if (typeof h['path'] !== 'string' || !h['path'].startsWith('/') || /[\s#]/.test(h['path'])) {
    say('health.path', 'must be a path starting with / such as "/_health"');
  }
  for (const key of ['intervalMs', 'timeoutMs'] as const) {
    if (h[key] !== undefined && !wholeIn(h[key], 1, MAX_MS)) say(`health.${key}`, `must be milliseconds, 1 to ${MAX_MS}`);
  }
  for (const key of ['healthy', 'unhealthy'] as const) {
    if (h[key] !== undefined && !wholeIn(h[key], 1, 100)) say(`health.${key}`, 'must be a number of checks in a row, 1 to 100');
  }
}

function checkOutlier(o: unknown, say: Say): void {
  if (o === false) return;
  if (!isObject(o)) {
    say('outlier', 'must be an object such as {"consecutiveFailures": 5, "ejectMs": 10000}, or false to turn passive ejection off');
    return;
  }
  for (const key of Object.keys(o)) {
    if (!(OUTLIER_KEYS as readonly string[]).includes(key)) say(`outlier.${key}`, `unknown field (known: ${OUTLIER_KEYS.join(', ')})`);
  }
  if (o['consecutiveFailures'] !== undefined && !wholeIn(o['consecutiveFailures'], 1, 100)) {
    say('outlier.consecutiveFailures', 'must be a number of failures in a row, 1 to 100');
  }
  if (o['ejectMs'] !== undefined && !wholeIn(o['ejectMs'], 1, MAX_MS)) say('outlier.ejectMs', `must be milliseconds, 1 to ${MAX_MS}`);
}

function wholeIn(v: unknown, min: number, max: number): boolean {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
}
