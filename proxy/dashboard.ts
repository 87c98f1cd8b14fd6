import { ACTIVE, activePlans, parsePlan, viewPlan, type PlanView } from '../autopilot/plan-store.js';
import { stepsOf, type PlanKind } from '../autopilot/plan-file.js';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql, type Kysely } from 'kysely';
import type { BanyanDatabase } from '../lib/schema.js';
import type { ProxyMetrics } from '../metrics/catalog.js';
import type { UsageLedger } from '../metrics/usage.js';
import type { Route } from '../routing/table/index.js';
import type { MismatchGroup, Shadower } from './shadow.js';
import type { UpstreamSnapshot } from './upstreams/index.js';

/** The dashboard page and the charting library it loads: plain files, no build step. */
export const DASHBOARD_HTML = fileURLToPath(new URL('./dashboard.html', import.meta.url));
// chart.js exports no subpath for its browser bundle: find it next to the package's main file.
export const CHART_JS = join(dirname(createRequire(import.meta.url).resolve('chart.js')), 'chart.umd.min.js');

export function readAsset(path: string): string {
  return readFileSync(path, 'utf8');
}

/** One point of the dashboard's charts. */
export interface Sample {
  readonly at: number;
  /** Requests answered in the interval, by backend. */
  readonly legacy: number;
  readonly new: number;
  /** Safe requests for the new app that legacy answered instead (breaker open, refused, reset…). */
  readonly fallbacks: number;
  /** Requests that matched no route (served by legacy, counted by normalized path). */
  readonly unmatched: number;
  /** The most-lagged replica's replay lag, seconds and bytes (null: no replica reporting). */
  readonly lagSeconds: number | null;
  readonly lagBytes: number | null;
}

/**
 * Samples, every few seconds, how many requests each backend answered (from
 * this process's counters) and the replicas' replay lag (from the primary's
 * pg_stat_replication), keeping the last hour for the dashboard's charts.
 */
export class DashboardSampler {
  readonly samples: Sample[] = [];
  #last: { legacy: number; new: number; fallbacks: number; unmatched: number } | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: Kysely<BanyanDatabase>,
    private readonly metrics: ProxyMetrics,
    private readonly everyMs = 5_000,
    private readonly keep = 720,
  ) {}

  start(): void {
    void this.sample();
    this.#timer = setInterval(() => void this.sample(), this.everyMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }

  async sample(): Promise<void> {
    const totals = { legacy: 0, new: 0, fallbacks: 0, unmatched: 0 };
    for (const v of (await this.metrics.requests.get()).values) {
      const backend = v.labels['backend'];
      if (backend === 'legacy' || backend === 'new') totals[backend] += v.value;
    }
    for (const v of (await this.metrics.fallbacks.get()).values) totals.fallbacks += v.value;
    for (const v of (await this.metrics.unmatched.get()).values) totals.unmatched += v.value;
    let lagSeconds: number | null = null;
    let lagBytes: number | null = null;
    try {
      const { rows } = await sql<{ seconds: number | null; bytes: string | null }>`
        SELECT extract(epoch FROM replay_lag)::float8 AS seconds, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::text AS bytes
          FROM pg_stat_replication`.execute(this.db);
      for (const r of rows) {
        lagSeconds = Math.max(lagSeconds ?? 0, r.seconds ?? 0);
        lagBytes = Math.max(lagBytes ?? 0, Number(r.bytes ?? 0));
      }
    } catch {
      // No permission or no primary: the chart shows a gap.
    }
    await this.#plans();
    const previous = this.#last ?? totals;
    this.#last = totals;
    this.samples.push({
      at: Date.now(),
      legacy: totals.legacy - previous.legacy,
      new: totals.new - previous.new,
      fallbacks: totals.fallbacks - previous.fallbacks,
      unmatched: totals.unmatched - previous.unmatched,
      lagSeconds,
      lagBytes,
    });
    if (this.samples.length > this.keep) this.samples.splice(0, this.samples.length - this.keep);
  }

  /** Each active plan's step, how long it has been on it and whether it is held, for alerts on a plan that is stuck. */
  async #plans(): Promise<void> {
    let rows: Awaited<ReturnType<typeof activePlans>>;
    try {
      rows = await activePlans(this.db);
    } catch {
      // No database now: the gauges keep their last values until it answers.
      return;
    }
    const { planStep, planStepAge, planHeld } = this.metrics;
    planStep.reset();
    planStepAge.reset();
    planHeld.reset();
    const now = Date.now();
    for (const row of rows) {
      let of = '?';
      try {
        of = String(stepsOf(parsePlan(row.kind as PlanKind, row.plan)).length);
      } catch {
        // A plan that no longer validates still shows its step.
      }
      planStep.set({ route: row.route, kind: row.kind, status: row.status, of }, row.step + 1);
      planStepAge.set(
        { route: row.route, kind: row.kind },
        row.step_started_at ? (now - new Date(row.step_started_at).getTime()) / 1e3 : 0,
      );
      planHeld.set({ route: row.route, kind: row.kind }, row.held ? 1 : 0);
    }
  }
}

export interface RouteRow {
  readonly name: string;
  readonly mode: string;
  readonly percent: number | null;
  /** The service its new side goes to (null for routes that only legacy or the proxy answers). */
  readonly service: string | null;
  readonly path: string;
  /** Requests by backend in the current and previous hour (hourly ledger buckets plus what is not yet flushed). */
  readonly lastHour: Record<string, number>;
  readonly lastDay: Record<string, number>;
  readonly lastSeen: string | null;
  /** Share of this process's answers on the route that were 5xx, since it started; null when none. */
  readonly errorRate: number | null;
  /** Shadow mismatches over compared requests; null when the route has not been shadowed. */
  readonly shadowMismatchRate: number | null;
  /** The most frequent shadow mismatch groups (what differs: a JSON path, a page's field), each with one example. */
  readonly shadowGroups: readonly MismatchGroup[];
}

/** Mismatch groups shown per route: the rest are in `banyan routes shadow NAME`. */
const DASHBOARD_GROUPS = 5;

/** Everything the dashboard shows, for `GET /api/dashboard`. */
export async function dashboardData(input: {
  db: Kysely<BanyanDatabase>;
  routes: readonly Route[];
  version: number;
  metrics: ProxyMetrics;
  usage: UsageLedger;
  shadow: Shadower;
  sampler: DashboardSampler;
  upstreams: readonly UpstreamSnapshot[];
  prometheusUrl?: string | undefined;
}): Promise<{
  version: number;
  generatedAt: string;
  routes: RouteRow[];
  upstreams: readonly UpstreamSnapshot[];
  samples: Sample[];
  plans: PlanView[];
}> {
  const now = Date.now();
  const hourStart = now - (now % 3_600_000);
  const windows = { lastHour: hourStart - 3_600_000, lastDay: hourStart - 23 * 3_600_000 };
  const counted = await input.db
    .selectFrom('usage_ledger')
    .select([
      'route',
      'backend',
      sql<string>`sum(requests) FILTER (WHERE bucket >= ${new Date(windows.lastHour)})`.as('hour'),
      sql<string>`sum(requests)`.as('day'),
      sql<Date>`max(last_seen)`.as('last_seen'),
    ])
    .where('feature', '=', '')
    .where('bucket', '>=', new Date(windows.lastDay))
    .groupBy(['route', 'backend'])
    .execute();
  const ever = await input.db
    .selectFrom('usage_ledger')
    .select(['route', sql<Date>`max(last_seen)`.as('last_seen')])
    .where('feature', '=', '')
    .groupBy('route')
    .execute();
  const lastSeen = new Map(ever.map((r) => [r.route, new Date(r.last_seen).getTime()]));
  const hour = new Map<string, Record<string, number>>();
  const day = new Map<string, Record<string, number>>();
  const add = (into: Map<string, Record<string, number>>, route: string, backend: string, n: number) => {
    const entry = into.get(route) ?? {};
    entry[backend] = (entry[backend] ?? 0) + n;
    into.set(route, entry);
  };
  for (const r of counted) {
    add(hour, r.route, r.backend, Number(r.hour ?? 0));
    add(day, r.route, r.backend, Number(r.day ?? 0));
  }
  for (const [route, pending] of input.usage.unflushedByRoute(windows.lastDay)) {
    for (const [backend, n] of Object.entries(pending.backends)) add(day, route, backend, n);
    lastSeen.set(route, Math.max(lastSeen.get(route) ?? 0, pending.lastSeen));
  }
  for (const [route, pending] of input.usage.unflushedByRoute(windows.lastHour)) {
    for (const [backend, n] of Object.entries(pending.backends)) add(hour, route, backend, n);
  }
  const errors = new Map<string, { total: number; failed: number }>();
  for (const v of (await input.metrics.requests.get()).values) {
    const route = String(v.labels['route']);
    const e = errors.get(route) ?? { total: 0, failed: 0 };
    e.total += v.value;
    if (v.labels['status_class'] === '5xx') e.failed += v.value;
    errors.set(route, e);
  }
  const routes = input.routes.map((r): RouteRow => {
    const e = errors.get(r.name);
    const report = input.shadow.report(r.name);
    const shadow = report.counts;
    const compared = shadow.match + shadow.mismatch + shadow.noise;
    const seen = lastSeen.get(r.name);
    return {
      name: r.name,
      mode: r.mode,
      percent: r.percent ?? null,
      service:
        r.mode === 'new' || r.mode === 'canary' || r.mode === 'shadow'
          ? ((r.mode === 'shadow' ? r.shadow?.service : undefined) ?? r.service ?? 'app')
          : null,
      path: `${r.match.methods ? `${r.match.methods.join(',')} ` : ''}${r.match.path}`,
      lastHour: hour.get(r.name) ?? {},
      lastDay: day.get(r.name) ?? {},
      lastSeen: seen ? new Date(seen).toISOString() : null,
      errorRate: e && e.total > 0 ? e.failed / e.total : null,
      shadowMismatchRate: compared > 0 ? shadow.mismatch / compared : null,
      shadowGroups: report.groups.slice(0, DASHBOARD_GROUPS),
    };
  });
  // Plans under way, and those that ended in the last hour (a rollback stays on the board for a while).
  const planRows = await input.db
    .selectFrom('cutover_plans')
    .selectAll()
    .where((eb) => eb.or([eb('status', 'in', ACTIVE), eb('updated_at', '>=', new Date(now - 3_600_000))]))
    .orderBy('id', 'desc')
    .limit(20)
    .execute()
    .catch(() => []);
  const plans = await Promise.all(planRows.map((row) => viewPlan(input.db, row, new Date(now), input.prometheusUrl)));
  return {
    version: input.version,
    generatedAt: new Date(now).toISOString(),
    routes,
    upstreams: input.upstreams,
    samples: input.sampler.samples,
    plans,
  };
}
