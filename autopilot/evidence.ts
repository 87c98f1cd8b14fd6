/**
 * The evidence the autopilot judges by. Every proxy counts, for the routes
 * under a plan only, what each backend answered (requests, 5xx, fallbacks, a
 * latency histogram), shadow comparisons and, during brownouts, who still
 * calls; it adds a row per route and backend to `cutover_samples` every tick.
 * The lease holder sums those rows over the fleet: one proxy's view is never
 * the verdict.
 */

import { sql, type Kysely } from 'kysely';
import type { BanyanDatabase, CutoverSamplesTable } from '../lib/schema.js';

/** Latency histogram bounds, in milliseconds; the last bucket is everything slower. */
export const LATENCY_BOUNDS_MS = [
  1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 10_000, 30_000,
];
const MAX_AGENTS = 20;

interface Tally {
  requests: number;
  errors: number;
  fallbacks: number;
  latency: number[];
  agents: Map<string, number>;
}

const newTally = (): Tally => ({
  requests: 0,
  errors: 0,
  fallbacks: 0,
  latency: new Array<number>(LATENCY_BOUNDS_MS.length + 1).fill(0),
  agents: new Map(),
});

/** One answered request, as the autopilot's evidence counts it. */
export interface ObservedRequest {
  readonly route: string;
  /** Who answered: legacy, new, or proxy (a brownout). */
  readonly served: string;
  readonly status: number;
  /** Time to the answer's first byte (see evidenceSeconds in proxy/request-accounting.ts). */
  readonly seconds: number;
  /** The new side failed it and legacy answered instead. */
  readonly fellBack: boolean;
  readonly userAgent: string | undefined;
}

/** This proxy's counts since its last flush, for the watched routes. */
export class EvidenceSampler {
  readonly #instance: string;
  #watched: ReadonlySet<string> = new Set();
  #tallies = new Map<string, Tally>();
  /** Cumulative shadow counts seen at the last flush, per route, to report the difference. */
  readonly #shadowSeen = new Map<string, { match: number; mismatch: number }>();

  constructor(instance: string) {
    this.#instance = instance;
  }

  /** The routes under an active plan; others are not counted. */
  watch(routes: Iterable<string>): void {
    this.#watched = new Set(routes);
  }

  get watched(): ReadonlySet<string> {
    return this.#watched;
  }

  /**
   * One answered request: `served` is who answered (`proxy` for a brownout), `fellBack` whether the new
   * app failed it and legacy answered instead (then it counts against the new side, not legacy's latency).
   */
  observe({ route, served, status, seconds, fellBack, userAgent }: ObservedRequest): void {
    if (!this.#watched.has(route)) return;
    const backend = fellBack ? 'new' : served;
    const key = `${route}\u0000${backend}`;
    let tally = this.#tallies.get(key);
    if (!tally) this.#tallies.set(key, (tally = newTally()));
    if (fellBack) {
      tally.fallbacks++;
      return;
    }
    tally.requests++;
    if (status >= 500 && status < 600) tally.errors++;
    const ms = seconds * 1000;
    let i = 0;
    while (i < LATENCY_BOUNDS_MS.length && ms > LATENCY_BOUNDS_MS[i]!) i++;
    tally.latency[i]!++;
    if (backend === 'proxy') {
      const agent = (userAgent ?? '(none)').slice(0, 200);
      const name = tally.agents.has(agent) || tally.agents.size < MAX_AGENTS ? agent : 'other';
      tally.agents.set(name, (tally.agents.get(name) ?? 0) + 1);
    }
  }

  /**
   * Adds this tick's counts to PostgreSQL and starts new ones. `shadowCounts` gives a route's cumulative
   * shadow comparison counts in this process. Counts that fail to land are kept for the next flush.
   */
  async flush(db: Kysely<BanyanDatabase>, shadowCounts: (route: string) => { match: number; mismatch: number }): Promise<void> {
    const tallies = this.#tallies;
    this.#tallies = new Map();
    // A row of cutover_samples as written: its agents as JSON text (or none), its id and time the database's.
    const list: (Omit<CutoverSamplesTable, 'id' | 'at' | 'agents'> & { agents: string | null })[] = [];
    for (const [key, t] of tallies) {
      const [route, backend] = key.split('\u0000') as [string, string];
      list.push({
        route,
        instance: this.#instance,
        backend,
        requests: t.requests,
        errors: t.errors,
        fallbacks: t.fallbacks,
        latency: t.latency,
        matches: 0,
        mismatches: 0,
        agents: t.agents.size ? JSON.stringify(Object.fromEntries(t.agents)) : null,
      });
    }
    const shadowDeltas = new Map<string, { match: number; mismatch: number }>();
    for (const route of this.#watched) {
      const now = shadowCounts(route);
      const before = this.#shadowSeen.get(route) ?? { match: 0, mismatch: 0 };
      const delta = { match: now.match - before.match, mismatch: now.mismatch - before.mismatch };
      if (delta.match > 0 || delta.mismatch > 0) {
        shadowDeltas.set(route, now);
        list.push({
          route,
          instance: this.#instance,
          backend: 'new',
          requests: 0,
          errors: 0,
          fallbacks: 0,
          latency: [],
          matches: delta.match,
          mismatches: delta.mismatch,
          agents: null,
        });
      } else if (!this.#shadowSeen.has(route)) {
        shadowDeltas.set(route, now);
      }
    }
    if (list.length === 0) {
      for (const [route, seen] of shadowDeltas) this.#shadowSeen.set(route, seen);
      return;
    }
    try {
      await db.insertInto('cutover_samples').values(list).execute();
      for (const [route, seen] of shadowDeltas) this.#shadowSeen.set(route, seen);
    } catch (err) {
      // Kept: added to the next tick's counts.
      for (const [key, t] of tallies) {
        const now = this.#tallies.get(key);
        if (!now) this.#tallies.set(key, t);
        else {
          now.requests += t.requests;
          now.errors += t.errors;
          now.fallbacks += t.fallbacks;
          t.latency.forEach((n, i) => {
            now.latency[i]! += n;
          });
          for (const [a, n] of t.agents) now.agents.set(a, (now.agents.get(a) ?? 0) + n);
        }
      }
      throw err;
    }
  }
}

/** One side's figures over a window, summed over every proxy. */
export interface Side {
  readonly requests: number;
  readonly errors: number;
  readonly fallbacks: number;
  /** 5xx answers per request. */
  readonly errorRate: number;
  /** Fallbacks per attempt (requests plus fallbacks). */
  readonly fallbackRate: number;
  /** The 95th percentile, as the upper bound of its histogram bucket (ms); undefined without requests. */
  readonly p95Ms: number | undefined;
}

export interface Evidence {
  readonly legacy: Side;
  readonly new: Side;
  /** Requests the proxy answered itself (brownouts), and who sent them, most first. */
  readonly proxy: Side & { readonly agents: { agent: string; requests: number }[] };
  readonly comparisons: { readonly matches: number; readonly mismatches: number; readonly mismatchRate: number };
}

/** The fleet's evidence for `route` from `since` (to now). */
export async function evidenceSince(db: Kysely<BanyanDatabase>, route: string, since: Date): Promise<Evidence> {
  const rows = await db
    .selectFrom('cutover_samples')
    .select(['backend', 'requests', 'errors', 'fallbacks', 'latency', 'matches', 'mismatches', 'agents'])
    .where('route', '=', route)
    .where('at', '>=', since)
    .execute();
  const sum = { legacy: newTally(), new: newTally(), proxy: newTally() } as Record<string, Tally>;
  let matches = 0;
  let mismatches = 0;
  for (const r of rows) {
    const t = sum[r.backend];
    if (!t) continue;
    t.requests += r.requests;
    t.errors += r.errors;
    t.fallbacks += r.fallbacks;
    r.latency.forEach((n, i) => {
      t.latency[i] = (t.latency[i] ?? 0) + n;
    });
    matches += r.matches;
    mismatches += r.mismatches;
    if (r.agents && typeof r.agents === 'object')
      for (const [a, n] of Object.entries(r.agents as Record<string, number>)) t.agents.set(a, (t.agents.get(a) ?? 0) + n);
  }
  const side = (t: Tally): Side => ({
    requests: t.requests,
    errors: t.errors,
    fallbacks: t.fallbacks,
    errorRate: t.requests ? t.errors / t.requests : 0,
    fallbackRate: t.requests + t.fallbacks ? t.fallbacks / (t.requests + t.fallbacks) : 0,
    p95Ms: percentile(t.latency, 0.95),
  });
  const agents = [...sum['proxy']!.agents]
    .map(([agent, requests]) => ({ agent, requests }))
    .sort((a, b) => b.requests - a.requests || a.agent.localeCompare(b.agent));
  return {
    legacy: side(sum['legacy']!),
    new: side(sum['new']!),
    proxy: { ...side(sum['proxy']!), agents },
    comparisons: { matches, mismatches, mismatchRate: matches + mismatches ? mismatches / (matches + mismatches) : 0 },
  };
}

/** The `q` quantile of a histogram over LATENCY_BOUNDS_MS, as its bucket's upper bound (Infinity past the last). */
export function percentile(histogram: readonly number[], q: number): number | undefined {
  const total = histogram.reduce((a, b) => a + b, 0);
  if (!total) return undefined;
  let seen = 0;
  for (let i = 0; i < histogram.length; i++) {
    seen += histogram[i]!;
    if (seen >= q * total) return LATENCY_BOUNDS_MS[i] ?? Infinity;
  }
  return Infinity;
}

/** Samples older than this are removed by the lease holder (a step's evidence never needs more). */
export const SAMPLE_RETENTION_MS = 8 * 86_400_000;

export async function pruneSamples(db: Kysely<BanyanDatabase>, now: Date): Promise<void> {
  await sql`DELETE FROM cutover_samples WHERE at < ${new Date(now.getTime() - SAMPLE_RETENTION_MS)}`.execute(db);
}
