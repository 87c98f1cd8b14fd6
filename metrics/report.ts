import { sql, type Kysely } from 'kysely';
import type { Database } from '../lib/schema.js';
import type { Route } from '../routing/route-table.js';

export interface UsageLine {
  readonly route: string;
  /** '' for the route as a whole, else a legacy feature such as `xmlrpc.search`. */
  readonly feature: string;
  readonly requests: number;
  /** Share of all requests through the proxy in the window, 0 to 1. */
  readonly share: number;
  /** Last request ever recorded (may be before the window); null when never. */
  readonly lastSeen: string | null;
  readonly backends: Record<string, number>;
  readonly topUserAgents: { readonly userAgent: string; readonly requests: number }[];
}

export interface UsageReport {
  readonly since: string;
  readonly until: string;
  readonly unusedSince: string;
  readonly totalRequests: number;
  /** Routes still served by legacy (legacy, shadow, canary, and unmatched paths), with their features. */
  readonly legacy: UsageLine[];
  /** Routes already served by the new app. */
  readonly new: UsageLine[];
  /** Retired routes that are still being called. */
  readonly retired: UsageLine[];
  /** Legacy routes and features with no request since `unusedSince`. */
  readonly candidates: { readonly route: string; readonly feature: string; readonly lastSeen: string | null; readonly mode: string }[];
}

/**
 * The retirement report: every route and legacy feature with requests in the
 * window, its share of traffic, last use, and top user agents; routes served
 * by the new app apart; and the legacy routes and features nobody has used
 * since `unusedSince`, which are the candidates to retire.
 */
export async function usageReport(db: Kysely<Database>, routes: readonly Route[], options: { since: Date; unusedSince: Date; now?: Date }): Promise<UsageReport> {
  const now = options.now ?? new Date();
  const from = new Date(Math.floor(options.since.getTime() / 3_600_000) * 3_600_000);
  const totals = await db.selectFrom('usage_ledger')
    .select(['route', 'feature', 'backend', sql<string>`sum(requests)`.as('requests')])
    .where('bucket', '>=', from).groupBy(['route', 'feature', 'backend']).execute();
  const everSeen = await db.selectFrom('usage_ledger')
    .select(['route', 'feature', sql<Date>`max(last_seen)`.as('last_seen')]).groupBy(['route', 'feature']).execute();
  const recent = await db.selectFrom('usage_ledger')
    .select(['route', 'feature']).where('last_seen', '>=', options.unusedSince).groupBy(['route', 'feature']).execute();
  const agents = await sql<{ route: string; feature: string; user_agent: string; requests: string }>`
    SELECT route, feature, user_agent, requests FROM (
      SELECT route, feature, user_agent, sum(requests) AS requests,
             row_number() OVER (PARTITION BY route, feature ORDER BY sum(requests) DESC, user_agent) AS rank
        FROM usage_user_agents WHERE bucket >= ${from} GROUP BY route, feature, user_agent) ranked
     WHERE rank <= 3 ORDER BY route, feature, rank`.execute(db);

  const key = (route: string, feature: string) => `${route}\u0000${feature}`;
  const lines = new Map<string, { route: string; feature: string; requests: number; backends: Record<string, number> }>();
  let total = 0;
  for (const t of totals) {
    const n = Number(t.requests);
    if (t.feature === '') total += n;
    const line = lines.get(key(t.route, t.feature)) ?? { route: t.route, feature: t.feature, requests: 0, backends: {} };
    line.requests += n;
    line.backends[t.backend] = (line.backends[t.backend] ?? 0) + n;
    lines.set(key(t.route, t.feature), line);
  }
  const lastSeen = new Map(everSeen.map((r) => [key(r.route, r.feature), new Date(r.last_seen).toISOString()]));
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
    const ra = lines.get(key(a.route, ''))?.requests ?? 0;
    const rb = lines.get(key(b.route, ''))?.requests ?? 0;
    return rb - ra || a.route.localeCompare(b.route) || (a.feature === '' ? -1 : b.feature === '' ? 1 : b.requests - a.requests);
  });
  for (const l of ordered) {
    out[section(l.route)].push({
      route: l.route, feature: l.feature, requests: l.requests, share: total ? l.requests / total : 0,
      lastSeen: lastSeen.get(key(l.route, l.feature)) ?? null, backends: l.backends, topUserAgents: topAgents.get(key(l.route, l.feature)) ?? [],
    });
  }

  const used = new Set(recent.map((r) => key(r.route, r.feature)));
  const candidates: UsageReport['candidates'] = [];
  for (const r of routes) {
    if (section(r.name) !== 'legacy' || used.has(key(r.name, ''))) continue;
    candidates.push({ route: r.name, feature: '', lastSeen: lastSeen.get(key(r.name, '')) ?? null, mode: r.mode });
  }
  // Features are only known once seen: those seen before and not since.
  for (const r of everSeen) {
    if (r.feature === '' || section(r.route) !== 'legacy' || used.has(key(r.route, r.feature))) continue;
    candidates.push({ route: r.route, feature: r.feature, lastSeen: new Date(r.last_seen).toISOString(), mode: modes.get(r.route) ?? 'legacy' });
  }
  candidates.sort((a, b) => a.route.localeCompare(b.route) || a.feature.localeCompare(b.feature));
  return {
    since: options.since.toISOString(), until: now.toISOString(), unusedSince: options.unusedSince.toISOString(),
    totalRequests: total, ...out, candidates,
  };
}
