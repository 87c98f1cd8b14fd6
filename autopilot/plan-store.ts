/**
 * Cutover plans in PostgreSQL: starting one, pausing, resuming and aborting
 * it, and what it looks like now. The pilot (autopilot/pilot.ts) walks them.
 */

import { quoted } from '../lib/quoted.js';
import { sql, type Kysely, type Selectable } from 'kysely';
import { BanyanError } from '../lib/errors.js';
import type { CutoverPlansTable, BanyanDatabase } from '../lib/schema.js';
import { changeRoute, latestTable, type Route, saveTableIn } from '../routing/table/index.js';
import { evidenceSince } from './evidence.js';
import { judge, type StepEvidence, type Verdict } from './judge.js';
import { promDuration, runChecks } from './prometheus-checks.js';
import { formatMs, stepsOf, validatePromotePlan, validateRetirePlan, type Plan, type PlanKind, type Step } from './plan-file.js';
import { canonical } from '../lib/canonical-json.js';

export type PlanRow = Selectable<CutoverPlansTable>;
export const ACTIVE = ['running', 'paused'] as const;

/** The service a plan's route sends its new side to, as the autopilot last wrote the route. */
export function serviceOf(row: Pick<Selectable<CutoverPlansTable>, 'expected_route' | 'start_route'>): string {
  return ((row.expected_route ?? row.start_route) as Route | null)?.service ?? 'app';
}

export function parsePlan(kind: PlanKind, raw: unknown): Plan {
  return kind === 'promote' ? validatePromotePlan(raw) : validateRetirePlan(raw);
}

/** The route as step `step` of the plan has it, built from the route as it is (`now` places a brownout's window). */
export function routeForStep(plan: Plan, step: Step, route: Route, now: number): Route {
  const { brownouts: _, ...rest } = route;
  const without = rest as Route;
  switch (step.kind) {
    case 'shadow':
      return changeRoute(route, { mode: 'shadow' });
    case 'canary':
      return changeRoute(route, { mode: 'canary', percent: step.promote!.percent });
    case 'new':
      return changeRoute(route, { mode: 'new' });
    case 'brownout': {
      const retired = plan.kind === 'retire' ? plan.retired : undefined;
      return {
        ...without,
        retired,
        brownouts: [{ start: new Date(now).toISOString(), end: new Date(now + step.holdMs).toISOString() }],
      } as Route;
    }
    case 'gap': {
      const { retired: _r, ...plain } = without;
      return plain as Route;
    }
    case 'retired':
      return changeRoute(without, { mode: 'retired', retired: plan.kind === 'retire' ? plan.retired : undefined });
  }
}

/** Where a promotion starts for a route in this state: the first step not behind it. */
export function firstStep(plan: Plan, route: Route): number {
  if (plan.kind === 'retire') {
    if (route.mode !== 'legacy' && route.mode !== 'shadow') {
      throw new BanyanError(
        'cannot-retire',
        `${route.name} is ${route.mode}; only a route served by legacy (legacy or shadow) is retired this way`,
        route.mode === 'retired'
          ? 'it already is retired'
          : 'move it back to legacy first, or retire it with banyan routes set --mode retired',
      );
    }
    return 0;
  }
  if (route.mode === 'new' || route.mode === 'retired') {
    throw new BanyanError(
      'cannot-promote',
      `${route.name} is already ${route.mode}; there is nothing to promote`,
      'see banyan routes show',
    );
  }
  if (route.mode === 'legacy' || route.mode === 'shadow') return 0;
  // A canary goes on from the first step at or past its share.
  return plan.steps.findIndex((s) => (s.mode === 'canary' && s.percent! >= route.percent!) || s.mode === 'new');
}

/** Starts a plan for `routeName`; the lease holder applies its first step on its next tick. */
export async function startPlan(
  db: Kysely<BanyanDatabase>,
  kind: PlanKind,
  routeName: string,
  raw: unknown,
  actor: string,
): Promise<{ id: string; plan: Plan; steps: Step[]; first: number }> {
  const plan = parsePlan(kind, raw);
  const table = await latestTable(db);
  const route = table?.routes.find((r) => r.name === routeName);
  if (!route) throw new BanyanError('no-such-route', `no route named "${routeName}"`, 'see `banyan routes list`');
  const first = firstStep(plan, route);
  if (plan.kind === 'retire') await checkUnused(db, routeName, plan.unused);
  try {
    const row = await db
      .insertInto('cutover_plans')
      .values({
        route: routeName,
        kind,
        plan: JSON.stringify(raw),
        status: 'running',
        step: -1,
        start_route: JSON.stringify(route),
        actor,
        reason: `started by ${actor} at step ${first + 1}`,
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    return { id: String(row.id), plan, steps: stepsOf(plan), first };
  } catch (err) {
    if ((err as { code?: string }).code === '23505') {
      throw new BanyanError(
        'plan-exists',
        `${routeName} already has a plan under way`,
        `see banyan routes ${kind} ${routeName} --status; stop it with --abort first`,
      );
    }
    throw err;
  }
}

/** A retirement starts only on evidence: the usage ledger shows the route (almost) unused for the window. */
async function checkUnused(db: Kysely<BanyanDatabase>, route: string, unused: { forMs: number; maxRequests: number }): Promise<void> {
  const since = new Date(Date.now() - unused.forMs);
  const used = await sql<{ requests: string | null }>`SELECT sum(requests) AS requests FROM usage_ledger
    WHERE route = ${route} AND bucket >= date_trunc('hour', ${since}::timestamptz) AND status_class <> '4xx'`.execute(db);
  const requests = Number(used.rows[0]?.requests ?? 0);
  if (requests <= unused.maxRequests) return;
  const agents = await sql<{ user_agent: string; requests: string }>`SELECT user_agent, sum(requests) AS requests FROM usage_user_agents
    WHERE route = ${route} AND bucket >= date_trunc('hour', ${since}::timestamptz) GROUP BY user_agent ORDER BY 2 DESC LIMIT 3`.execute(db);
  throw new BanyanError(
    'route-in-use',
    `${route} served ${requests.toLocaleString('en-US')} requests in the last ${formatMs(unused.forMs)} ` +
      `(the plan allows ${unused.maxRequests}); top user agents: ${agents.rows.map((a) => `${quoted(a.user_agent)} (${a.requests})`).join(', ') || 'unknown'}`,
    'nothing was started; see banyan report usage, and tell those callers first',
  );
}

/** The route's plan under way, else its newest one. */
export async function planFor(db: Kysely<BanyanDatabase>, route: string): Promise<PlanRow | undefined> {
  return db
    .selectFrom('cutover_plans')
    .selectAll()
    .where('route', '=', route)
    .orderBy(sql`status IN ('running', 'paused')`, 'desc')
    .orderBy('id', 'desc')
    .limit(1)
    .executeTakeFirst();
}

export async function activePlans(db: Kysely<BanyanDatabase>): Promise<PlanRow[]> {
  return db.selectFrom('cutover_plans').selectAll().where('status', 'in', ACTIVE).orderBy('id').execute();
}

/** Who let a plan into a step that asks for approval. */
export interface Approval {
  readonly step: number;
  readonly by: string;
  readonly at: string;
}

/** A rollback a dry-run budget would have made. */
export interface Watched {
  readonly step: number;
  readonly check: string;
  readonly at: string;
  readonly reason: string;
}

export const approvalsOf = (row: Pick<PlanRow, 'approvals'>): Approval[] =>
  Array.isArray(row.approvals) ? (row.approvals as Approval[]) : [];
export const watchedOf = (row: Pick<PlanRow, 'watched'>): Watched[] => (Array.isArray(row.watched) ? (row.watched as Watched[]) : []);

/** "would have rolled back at 14:02: …", as `--status`, the dashboard and the webhook say it. */
export function describeWatched(w: Watched): string {
  return `would have rolled back at ${w.at.slice(11, 16)}: ${w.reason}`;
}

/**
 * `--pause`, `--resume`, `--abort`, `--approve` from an operator. Pause leaves
 * the route where it is and stops judging; resume starts the step's hold
 * again; abort ends the plan and puts the route back as it was before the
 * plan; approve lets a plan that waits at a gate into its next step.
 */
export async function controlPlan(
  db: Kysely<BanyanDatabase>,
  route: string,
  action: 'pause' | 'resume' | 'abort' | 'approve',
  actor: string,
): Promise<{ row: PlanRow; version?: number }> {
  return db.transaction().execute(async (trx) => {
    const row = await trx
      .selectFrom('cutover_plans')
      .selectAll()
      .where('route', '=', route)
      .where('status', 'in', ACTIVE)
      .forUpdate()
      .executeTakeFirst();
    if (!row) throw new BanyanError('no-plan', `${route} has no plan under way`, `start one: banyan routes promote ${route}`);
    if (action === 'pause' && row.status === 'paused')
      throw new BanyanError('already-paused', `${route}'s plan is already paused`, `resume it: --resume`);
    if (action === 'resume' && row.status === 'running') throw new BanyanError('not-paused', `${route}'s plan is running, not paused`);
    if (action === 'approve') {
      if (row.awaiting === null) {
        throw new BanyanError(
          'not-awaiting',
          `${route}'s plan is not waiting for approval`,
          `see banyan routes ${row.kind} ${route} --status; a step with "approve": true waits when the plan reaches it`,
        );
      }
      const label = stepsOf(parsePlan(row.kind as PlanKind, row.plan))[row.awaiting]?.label ?? `step ${row.awaiting + 1}`;
      const approvals = [...approvalsOf(row), { step: row.awaiting, by: actor, at: new Date().toISOString() }];
      const updated = await trx
        .updateTable('cutover_plans')
        .set({
          approvals: JSON.stringify(approvals),
          reason: `step ${row.awaiting + 1} (${label}) approved by ${actor}`,
          updated_at: new Date(),
        })
        .where('id', '=', row.id)
        .returningAll()
        .executeTakeFirstOrThrow();
      return { row: updated };
    }
    let version: number | undefined;
    if (action === 'abort') {
      const table = await latestTable(trx);
      const current = table?.routes.find((r) => r.name === route);
      if (table && current && canonical(current) !== canonical(row.start_route)) {
        const saved = await saveTableIn(trx, {
          routes: table.routes.map((r) => (r.name === route ? (row.start_route as Route) : r)),
          actor,
          reason: `abort the ${row.kind} plan ${row.id}: back to ${(row.start_route as Route).mode} as before the plan`,
          action: 'autopilot abort',
          expectedVersion: table.version,
        });
        version = saved.version;
      }
    }
    const status = action === 'pause' ? 'paused' : action === 'resume' ? 'running' : 'aborted';
    const updated = await trx
      .updateTable('cutover_plans')
      .set({
        status,
        reason: `${action === 'abort' ? 'aborted' : `${action}d`} by ${actor}`,
        updated_at: new Date(),
        ...(action === 'resume' ? { step_started_at: new Date(), held: false } : {}),
      })
      .where('id', '=', row.id)
      .returningAll()
      .executeTakeFirstOrThrow();
    return { row: updated, ...(version !== undefined ? { version } : {}) };
  });
}

/** What a plan is doing: its step, the live numbers against its budgets, and when the next step can come. */
export interface PlanView {
  readonly id: string;
  readonly route: string;
  readonly kind: PlanKind;
  readonly status: string;
  readonly step: number;
  readonly steps: readonly string[];
  readonly stepLabel: string;
  readonly elapsedMs: number;
  /** Until the step's hold is over (0: waiting on evidence, or done). */
  readonly nextInMs: number;
  readonly verdict: Verdict | undefined;
  readonly reason: string;
  readonly updatedAt: string;
  readonly lease: { holder: string; expiresInMs: number } | undefined;
  /** The gate the plan waits at: the step it goes to once approved. */
  readonly awaiting: { readonly step: number; readonly label: string } | undefined;
  readonly approvals: readonly Approval[];
  /** Every budget only watched (`--dry-run`). */
  readonly dryRun: boolean;
  /** What the dry-run budgets would have done, each as "would have rolled back at 14:02: …". */
  readonly watched: readonly string[];
}

/**
 * The evidence a step is judged on: since the step began, the budget window, and since the plan began;
 * on canary and new steps, the plan's PromQL checks too, over the same window.
 */
export async function stepEvidence(
  db: Kysely<BanyanDatabase>,
  row: PlanRow,
  step: Step,
  now: Date,
  prometheusUrl?: string,
): Promise<StepEvidence> {
  const began = row.step_started_at ?? now;
  const windowMs = step.promote?.budgets.windowMs ?? 0;
  const windowStart = new Date(Math.max(began.getTime(), now.getTime() - windowMs));
  const plan = parsePlan(row.kind as PlanKind, row.plan);
  const checks = plan.kind === 'promote' && (step.kind === 'canary' || step.kind === 'new') ? plan.checks : [];
  const [stepE, windowE, planE, queries] = await Promise.all([
    evidenceSince(db, row.route, began),
    evidenceSince(db, row.route, windowStart),
    evidenceSince(db, row.route, new Date(row.created_at)),
    checks.length
      ? runChecks(prometheusUrl, checks, {
          route: row.route,
          service: serviceOf(row),
          window: promDuration(now.getTime() - windowStart.getTime()),
          planWindow: promDuration(now.getTime() - new Date(row.created_at).getTime()),
        })
      : undefined,
  ]);
  return { step: stepE, window: windowE, plan: planE, ...(queries ? { queries } : {}) };
}

/** What a plan is doing now; `prometheusUrl` runs its checks for the view (without it they show as not evaluated). */
export async function viewPlan(db: Kysely<BanyanDatabase>, row: PlanRow, now = new Date(), prometheusUrl?: string): Promise<PlanView> {
  const plan = parsePlan(row.kind as PlanKind, row.plan);
  const steps = stepsOf(plan);
  const step = row.step >= 0 ? steps[row.step] : undefined;
  const elapsedMs = step && row.step_started_at ? now.getTime() - new Date(row.step_started_at).getTime() : 0;
  const verdict =
    step && row.status === 'running'
      ? judge(plan, step, elapsedMs, await stepEvidence(db, row, step, now, prometheusUrl), serviceOf(row))
      : undefined;
  const lease = await db.selectFrom('autopilot_lease').select(['holder', 'expires_at']).where('name', '=', 'autopilot').executeTakeFirst();
  return {
    id: String(row.id),
    route: row.route,
    kind: row.kind as PlanKind,
    status: row.status,
    step: row.step,
    steps: steps.map((s) => s.label),
    stepLabel: step?.label ?? (row.status === 'running' ? 'starting' : '—'),
    elapsedMs,
    nextInMs: step && row.status === 'running' ? Math.max(0, step.holdMs - elapsedMs) : 0,
    verdict,
    reason: row.reason,
    updatedAt: new Date(row.updated_at).toISOString(),
    lease: lease ? { holder: lease.holder, expiresInMs: new Date(lease.expires_at).getTime() - now.getTime() } : undefined,
    awaiting: row.awaiting !== null && steps[row.awaiting] ? { step: row.awaiting, label: steps[row.awaiting]!.label } : undefined,
    approvals: approvalsOf(row),
    dryRun: plan.kind === 'promote' && plan.dryRun,
    watched: watchedOf(row).map(describeWatched),
  };
}
