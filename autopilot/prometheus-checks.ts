/**
 * A plan's `checks`, run against Prometheus's HTTP API (`/api/v1/query`).
 * Every way a check cannot be evaluated (no Prometheus configured, Prometheus
 * down or slow, a refused query, no data, more than one series) comes back as
 * a `problem`, which the judge treats as "not evaluated": it holds the step.
 */

import type { QueryCheck } from './plan-file.js';

/** One check's numbers: the new side's, legacy's for a check `against` legacy, or why there are none. */
export interface QueryResult {
  readonly name: string;
  readonly value?: number;
  readonly legacy?: number;
  readonly problem?: string;
}

export interface QueryScope {
  readonly route: string;
  /** The new side's service (`app`, `files`, …); legacy's is `legacy`. */
  readonly service: string;
  /** The judged window, as a Prometheus duration (`30s`). */
  readonly window: string;
  /** Since the plan started: legacy's side is read over this when the window has no legacy traffic (the route is all new). */
  readonly planWindow?: string;
}

/** `{route}`, `{service}` and `{window}` filled in. */
export function fillQuery(query: string, scope: QueryScope): string {
  return query.replace(/\{(route|service|window)\}/g, (_m, key: 'route' | 'service' | 'window') => scope[key]);
}

/** The window as Prometheus writes it: whole seconds, at least one. */
export function promDuration(ms: number): string {
  return `${Math.max(1, Math.ceil(ms / 1000))}s`;
}

/** Runs every check (and legacy's side of those `against` it); never throws. */
export async function runChecks(
  url: string | undefined,
  checks: readonly QueryCheck[],
  scope: QueryScope,
  timeoutMs = 3_000,
): Promise<QueryResult[]> {
  return Promise.all(
    checks.map(async (check) => {
      if (!url) return { name: check.name, problem: 'BANYAN_PROMETHEUS_URL is not set, so the query cannot run' };
      const ours = await queryNumber(url, fillQuery(check.query, scope), timeoutMs);
      if (typeof ours === 'string') return { name: check.name, problem: ours };
      if (check.against !== 'legacy') return { name: check.name, value: ours };
      let legacy = await queryNumber(url, fillQuery(check.query, { ...scope, service: 'legacy' }), timeoutMs);
      if (typeof legacy === 'string' && legacy.startsWith('no data') && scope.planWindow) {
        legacy = await queryNumber(url, fillQuery(check.query, { ...scope, service: 'legacy', window: scope.planWindow }), timeoutMs);
      }
      if (typeof legacy === 'string') return { name: check.name, value: ours, problem: `legacy's side: ${legacy}` };
      return { name: check.name, value: ours, legacy };
    }),
  );
}

/** One instant query's single number, or what went wrong, in words. */
async function queryNumber(url: string, query: string, timeoutMs: number): Promise<number | string> {
  let body: { status?: string; error?: string; data?: { resultType?: string; result?: unknown } };
  try {
    const res = await fetch(new URL(`/api/v1/query?query=${encodeURIComponent(query)}`, url), { signal: AbortSignal.timeout(timeoutMs) });
    body = (await res.json()) as typeof body;
  } catch (err) {
    return `Prometheus at ${url} did not answer (${(err as Error).message})`;
  }
  if (body.status !== 'success') return `Prometheus refused the query: ${body.error ?? 'no reason given'}`;
  const { resultType, result } = body.data ?? {};
  let raw: unknown;
  if (resultType === 'scalar') raw = (result as [number, string])[1];
  else if (resultType === 'vector' && Array.isArray(result)) {
    if (result.length === 0) return `no data for ${query}`;
    if (result.length > 1) return `the query gives ${result.length} series; it must give one number (wrap it in sum(…) or max(…))`;
    raw = (result[0] as { value: [number, string] }).value[1];
  } else return `the query gives a ${resultType ?? 'strange'} result; it must give one number`;
  const value = Number(raw);
  return Number.isFinite(value) ? value : `no data for ${query} (it gives ${String(raw)})`;
}
