import { sql, type Kysely } from 'kysely';
import type { BanyanDatabase } from '../lib/schema.js';
import type { Route } from '../routing/table/index.js';
import { NOT_USE } from './usage.js';

export interface UsageLine {
  readonly route: string;
  /** '' for the route as a whole, else a legacy feature such as `xmlrpc.search`. */
  readonly feature: string;
  /** Every request in the window, whatever its answer. */
  readonly requests: number;
  /** Requests that are evidence of use: every answer but a 4xx (aborted requests included). */
  readonly use: number;
  /** Share of all use through the proxy in the window, 0 to 1. */
  readonly share: number;
  /** Last use ever recorded (may be before the window); null when never. */
  readonly lastUsed: string | null;
  /** Last request of any kind, 4xx included. */
  readonly lastSeen: string | null;
  /** Requests per backend that answered (`legacy`, `new`, `proxy` for retired and refused). */
  readonly backends: Record<string, number>;
  /** Requests per service that answered (`legacy`, `app`, `files`, …, `proxy`). */
  readonly services: Record<string, number>;
  /** Requests per status class: `2xx` … `5xx`, `aborted`, and `unknown` for counts from before classes were kept. */
  readonly statuses: Record<string, number>;
  readonly topUserAgents: { readonly userAgent: string; readonly requests: number }[];
}

export interface UsageReport {
  readonly since: string;
  readonly until: string;
  readonly unusedSince: string;
  readonly totalRequests: number;
  /** Requests that count as use (all but 4xx). */
  readonly totalUse: number;
  /** Routes still served by legacy (legacy, shadow, canary, and unmatched paths), with their features. */
  readonly legacy: UsageLine[];
  /** Routes already served by the new app. */
  readonly new: UsageLine[];
  /** Retired routes that are still being called. */
  readonly retired: UsageLine[];
  /** Legacy routes and features with no use (4xx answers do not count) since `unusedSince`. */
  readonly candidates: { readonly route: string; readonly feature: string; readonly lastUsed: string | null; readonly mode: string }[];
}

/**
 * The retirement report: every route and legacy feature with requests in the
 * window, its share of traffic, last use, and top user agents; routes served
 * by the new app apart; and the legacy routes and features nobody has used
 * since `unusedSince`, which are the candidates to retire.
 */
export async function usageReport(
  db: Kysely<BanyanDatabase>,
  routes: readonly Route[],
  options: { since: Date; unusedSince: Date; now?: Date },
): Promise<UsageReport> {
  const now = options.now ?? new Date();
  const from = new Date(Math.floor(options.since.getTime() / 3_600_000) * 3_600_000);
  const totals = await db
    .selectFrom('usage_ledger')
    .select(['route', 'feature', 'backend', 'service', 'status_class', sql<string>`sum(requests)`.as('requests')])
    .where('bucket', '>=', from)
    .groupBy(['route', 'feature', 'backend', 'service', 'status_class'])
    .execute();
  const everSeen = await db
    .selectFrom('usage_ledger')
    .select([
      'route',
      'feature',
      sql<Date>`max(last_seen)`.as('last_seen'),
      sql<Date | null>`max(last_seen) FILTER (WHERE status_class NOT IN (${sql.join([...NOT_USE])}))`.as('last_used'),
    ])
    .groupBy(['route', 'feature'])
    .execute();
  const agents = await sql<{ route: string; feature: string; user_agent: string; requests: string }>`
    SELECT route, feature, user_agent, requests FROM (
      SELECT route, feature, user_agent, sum(requests) AS requests,
             row_number() OVER (PARTITION BY route, feature ORDER BY sum(requests) DESC, user_agent) AS rank
        FROM usage_user_agents WHERE bucket >= ${from} GROUP BY route, feature, user_agent) ranked
     WHERE rank <= 3 ORDER BY route, feature, rank`.execute(db);

  const key = (route: string, feature: string) => `${route}\u0000${feature}`;
  const notUse = new Set<string>(NOT_USE);
  const lines = new Map<
    string,
    {
      route: string;
      feature: string;
      requests: number;
      use: number;
      backends: Record<string, number>;
      services: Record<string, number>;
      statuses: Record<string, number>;
    }
  >();
  let total = 0;
  let totalUse = 0;
  for (const t of totals) {
    const n = Number(t.requests);
    const use = notUse.has(t.status_class) ? 0 : n;
    if (t.feature === '') {
      total += n;
      totalUse += use;
    }
    const line = lines.get(key(t.route, t.feature)) ?? {
      route: t.route,
      feature: t.feature,
      requests: 0,
      use: 0,
      backends: {},
      services: {},
      statuses: {},
    };
    line.requests += n;
    line.use += use;
    line.backends[t.backend] = (line.backends[t.backend] ?? 0) + n;
    line.services[t.service] = (line.services[t.service] ?? 0) + n;
    line.statuses[t.status_class] = (line.statuses[t.status_class] ?? 0) + n;
    lines.set(key(t.route, t.feature), line);
  }
  const iso = (d: Date | null) => (d === null ? null : new Date(d).toISOString());
  const lastSeen = new Map(everSeen.map((r) => [key(r.route, r.feature), iso(r.last_seen)]));
  const lastUsed = new Map(everSeen.map((r) => [key(r.route, r.feature), iso(r.last_used)]));
  const topAgents = new Map<string, { userAgent: string; requests: number }[]>();
  for (const a of agents.rows) {
    const list = topAgents.get(key(a.route, a.feature)) ?? [];
    list.push({ userAgent: a.user_agent, requests: Number(a.requests) });
    topAgents.set(key(a.route, a.feature), list);
  }
  const modes = new Map(routes.map((r) => [r.name, r.mode]));
  const section = (route: string) => {
    const mode = modes.get(route);
    return mode === 'new' ? 'new' : mode === 'retired' ? 'retired' : 'legacy';
  };
  const out: { legacy: UsageLine[]; new: UsageLine[]; retired: UsageLine[] } = { legacy: [], new: [], retired: [] };
  const ordered = [...lines.values()].sort((a, b) => {
    const ra = lines.get(key(a.route, ''))?.use ?? 0;
    const rb = lines.get(key(b.route, ''))?.use ?? 0;
    return (
      rb - ra || a.route.localeCompare(b.route) || (a.feature === '' ? -1 : b.feature === '' ? 1 : b.use - a.use || b.requests - a.requests)
    );
  });
  for (const l of ordered) {
    const k = key(l.route, l.feature);
    out[section(l.route)].push({
      route: l.route,
      feature: l.feature,
      requests: l.requests,
      use: l.use,
      share: totalUse ? l.use / totalUse : 0,
      lastUsed: lastUsed.get(k) ?? null,
      lastSeen: lastSeen.get(k) ?? null,
      backends: l.backends,
      services: l.services,
      statuses: l.statuses,
      topUserAgents: topAgents.get(k) ?? [],
    });
  }

  const since = options.unusedSince.getTime();
  const usedSince = (k: string) => {
    const at = lastUsed.get(k);
    return at != null && Date.parse(at) >= since;
  };
  const candidates: UsageReport['candidates'] = [];
  for (const r of routes) {
    if (section(r.name) !== 'legacy' || usedSince(key(r.name, ''))) continue;
    candidates.push({ route: r.name, feature: '', lastUsed: lastUsed.get(key(r.name, '')) ?? null, mode: r.mode });
  }
  // Features are only known once seen: those seen before and not used since.
  for (const r of everSeen) {
    const k = key(r.route, r.feature);
    if (r.feature === '' || section(r.route) !== 'legacy' || usedSince(k)) continue;
    candidates.push({ route: r.route, feature: r.feature, lastUsed: lastUsed.get(k) ?? null, mode: modes.get(r.route) ?? 'legacy' });
  }
  candidates.sort((a, b) => a.route.localeCompare(b.route) || a.feature.localeCompare(b.feature));
  return {
    since: options.since.toISOString(),
    until: now.toISOString(),
    unusedSince: options.unusedSince.toISOString(),
    totalRequests: total,
    totalUse,
    ...out,
    candidates,
  };
}
