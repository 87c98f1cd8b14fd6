/**
 * The autopilot. It runs in every proxy: each one reports its evidence every
 * tick, and the one holding the lease (a row in PostgreSQL renewed every
 * tick, taken over when it expires) walks the plans. Every step, rollback
 * and stop is one transaction: the plan's new step and the route table
 * version that applies it commit together, and only while the lease is
 * still held, so a proxy that froze and woke up cannot act on an old view,
 * and a takeover never skips or repeats a step.
 */

import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { sql, type Kysely } from 'kysely';
import type { BanyanDatabase } from '../lib/schema.js';
import { latestTable, type Route, saveTableIn, type TableVersion } from '../routing/table/index.js';
import { EvidenceSampler, pruneSamples } from './evidence.js';
import { judge, type Check } from './judge.js';
import { stepsOf, type Plan } from './plan-file.js';
import {
  approvalsOf,
  serviceOf,
  activePlans,
  describeWatched,
  firstStep,
  parsePlan,
  routeForStep,
  stepEvidence,
  watchedOf,
  type PlanRow,
} from './plan-store.js';
import { postEvent } from './webhook.js';
import { canonical } from '../lib/canonical-json.js';

export const LEASE = 'autopilot';
export const AUTOPILOT_ACTOR = 'autopilot';

export type PlanEvent = 'step' | 'hold' | 'waiting' | 'dry-run' | 'rollback' | 'done' | 'stopped' | 'overridden';

/** How a plan ends, and the webhook event each ending sends. */
type EndStatus = 'done' | 'rolled-back' | 'stopped' | 'overridden';
const ENDING_EVENT: Record<EndStatus, PlanEvent> = {
  done: 'done',
  'rolled-back': 'rollback',
  stopped: 'stopped',
  overridden: 'overridden',
};

/** A plan's end: its status and why, with the route put back or forward when `route` is given. */
interface Ending {
  readonly status: EndStatus;
  readonly reason: string;
  readonly table: TableVersion | undefined;
  readonly route?: Route | undefined;
  readonly checks?: readonly Check[];
  /** The step it ends on (default: the one it is on). */
  readonly step?: number;
}

/** One change of a plan's row (and of the route, when `route` is given). */
interface Transition {
  readonly status: string;
  readonly event: PlanEvent;
  readonly reason: string;
  readonly table: TableVersion | undefined;
  readonly route?: Route | undefined;
  readonly checks: readonly Check[];
  readonly step: number;
}

/** What a webhook receives, one JSON object per event. */
export interface PlanEventBody {
  readonly event: PlanEvent;
  readonly route: string;
  readonly plan: string;
  readonly kind: string;
  readonly step: { readonly index: number; readonly of: number; readonly label: string } | null;
  readonly status: string;
  readonly reason: string;
  readonly tableVersion: number | null;
  readonly checks: readonly Check[];
  readonly at: string;
}

export interface AutopilotOptions {
  readonly db: Kysely<BanyanDatabase>;
  readonly tickMs: number;
  /** How long the lease lasts unrenewed: another proxy takes over this long after the holder dies or freezes. */
  readonly leaseMs: number;
  /** Receives every event, unless the plan names its own. */
  readonly webhook?: string | undefined;
  /** Signs every webhook body (`Banyan-Signature`, see webhook.ts): BANYAN_SECRET's newest; none, unsigned. */
  readonly webhookSecret?: string | undefined;
  /** Where plans' PromQL checks are queried (BANYAN_PROMETHEUS_URL). */
  readonly prometheusUrl?: string | undefined;
  /** This process's cumulative shadow comparison counts for a route. */
  readonly shadowCounts: (route: string) => { match: number; mismatch: number };
  /** After the autopilot stored a table version: apply it here and tell the other proxies. */
  readonly changed: (version: number) => Promise<void>;
  readonly log: (line: string) => void;
}

class LostLease extends Error {}
class PlanMoved extends Error {}

export class Autopilot {
  readonly instance = `${hostname()}/${process.pid}/${randomBytes(3).toString('hex')}`;
  readonly sampler = new EvidenceSampler(this.instance);
  readonly #o: AutopilotOptions;
  #timer: NodeJS.Timeout | undefined;
  #ticking: Promise<void> | undefined;
  #leader = false;
  #pruned = 0;
  #failures = 0;

  constructor(options: AutopilotOptions) {
    this.#o = options;
  }

  get leader(): boolean {
    return this.#leader;
  }

  start(): void {
    this.#timer = setInterval(() => {
      void this.tick();
    }, this.#o.tickMs);
    this.#timer.unref();
    void this.tick();
  }

  /** One tick: report evidence, hold or take the lease, and (holding it) walk every running plan. Never throws. */
  tick(): Promise<void> {
    this.#ticking ??= this.#tick()
      .catch((err: Error) => {
        // Logged once per outage, not every tick.
        if (this.#failures++ === 0) this.#o.log(`autopilot: ${err.message} (retrying every tick)`);
      })
      .finally(() => {
        this.#ticking = undefined;
      });
    return this.#ticking;
  }

  async #tick(): Promise<void> {
    const { db } = this.#o;
    const plans = await activePlans(db);
    this.sampler.watch(plans.map((p) => p.route));
    await this.sampler.flush(db, this.#o.shadowCounts);
    const leader = await this.#acquire();
    if (leader !== this.#leader)
      this.#o.log(leader ? `autopilot: ${this.instance} holds the lease and walks the plans` : 'autopilot: lease lost to another proxy');
    this.#leader = leader;
    this.#failures = 0;
    if (!leader) return;
    for (const row of plans) {
      if (row.status !== 'running') continue;
      try {
        await this.#walk(row);
      } catch (err) {
        if (err instanceof LostLease) return;
        if (!(err instanceof PlanMoved)) this.#o.log(`autopilot: plan ${row.id} (${row.route}): ${(err as Error).message}`);
      }
    }
    if (Date.now() - this.#pruned > 600_000) {
      this.#pruned = Date.now();
      await pruneSamples(db, new Date());
    }
  }

  /** Takes the lease if it is free or expired, or renews it; true when this proxy holds it. */
  async #acquire(): Promise<boolean> {
    const ms = this.#o.leaseMs;
    const got = await sql<{
      holder: string;
    }>`INSERT INTO autopilot_lease (name, holder, expires_at) VALUES (${LEASE}, ${this.instance}, now() + ${ms} * interval '1 millisecond')
      ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at,
        acquired_at = CASE WHEN autopilot_lease.holder = excluded.holder THEN autopilot_lease.acquired_at ELSE now() END
      WHERE autopilot_lease.holder = ${this.instance} OR autopilot_lease.expires_at < now()
      RETURNING holder`.execute(this.#o.db);
    return got.rows.length === 1;
  }

  async #walk(row: PlanRow): Promise<void> {
    const { db } = this.#o;
    const plan = parsePlan(row.kind as 'promote' | 'retire', row.plan);
    const steps = stepsOf(plan);
    const table = await latestTable(db);
    const route = table?.routes.find((r) => r.name === row.route);
    if (!table || !route) return this.#finish(row, plan, { status: 'stopped', reason: 'the route is no longer in the route table', table });
    if (row.step >= 0 && canonical(route) !== canonical(row.expected_route)) {
      return this.#finish(row, plan, {
        status: 'overridden',
        reason:
          `the route was changed outside the plan (table version ${table.version}, by ${table.actor}: ${table.reason}); ` +
          'a manual change wins, so the plan stopped',
        table,
      });
    }
    const now = Date.now();
    if (row.step < 0) {
      let first: number;
      try {
        first = firstStep(plan, route);
      } catch (err) {
        return this.#finish(row, plan, { status: 'stopped', reason: (err as Error).message, table });
      }
      if (this.#gated(row, steps, first)) return this.#await(row, plan, first, steps, []);
      return this.#move(row, plan, {
        step: first,
        route: routeForStep(plan, steps[first]!, route, now),
        reason: `step ${first + 1}/${steps.length}: ${steps[first]!.label} (plan ${row.id} starts${approvedBy(row, first)})`,
        table,
      });
    }
    const step = steps[row.step]!;
    const elapsed = now - new Date(row.step_started_at ?? now).getTime();
    const verdict = judge(plan, step, elapsed, await stepEvidence(db, row, step, new Date(now), this.#o.prometheusUrl), serviceOf(row));
    await this.#watch(row, plan, steps, verdict.watched, verdict.checks);
    switch (verdict.action) {
      case 'wait':
        return;
      case 'hold': {
        if (row.held) return;
        await this.#update(row, { held: true, reason: verdict.reason });
        return this.#emit(plan, row, { event: 'hold', reason: verdict.reason, version: null, checks: verdict.checks });
      }
      case 'rollback':
        return this.#finish(row, plan, {
          status: 'rolled-back',
          reason: `rollback to ${(row.start_route as Route).mode}: ${verdict.reason}`,
          table,
          route: row.start_route as Route,
          checks: verdict.checks,
        });
      case 'stop':
        return this.#finish(row, plan, {
          status: 'stopped',
          reason: `stopped, back to ${(row.start_route as Route).mode}: ${verdict.reason}`,
          table,
          route: row.start_route as Route,
          checks: verdict.checks,
        });
      case 'advance': {
        const next = row.step + 1;
        if (next >= steps.length)
          return this.#finish(row, plan, { status: 'done', reason: `done: ${verdict.reason}`, table, checks: verdict.checks });
        if (this.#gated(row, steps, next)) return this.#await(row, plan, next, steps, verdict.checks);
        const label = `step ${next + 1}/${steps.length}: ${steps[next]!.label} (${verdict.reason}${approvedBy(row, next)})`;
        // A retirement's last step is the retirement itself: the plan is done when it is applied.
        if (next === steps.length - 1 && plan.kind === 'retire') {
          return this.#finish(row, plan, {
            status: 'done',
            reason: label,
            table,
            route: routeForStep(plan, steps[next]!, route, now),
            checks: verdict.checks,
            step: next,
          });
        }
        return this.#move(row, plan, {
          step: next,
          route: routeForStep(plan, steps[next]!, route, now),
          reason: label,
          table,
          checks: verdict.checks,
        });
      }
    }
  }

  /** Whether step `step` asks for a person's approval that has not been given. */
  #gated(row: PlanRow, steps: readonly { promote?: { approve: boolean } }[], step: number): boolean {
    return steps[step]?.promote?.approve === true && !approvalsOf(row).some((a) => a.step === step);
  }

  /** The plan waits before step `step` until `--approve`; the step it is on is judged meanwhile. Said once. */
  async #await(row: PlanRow, plan: Plan, step: number, steps: readonly { label: string }[], checks: readonly Check[]): Promise<void> {
    if (row.awaiting === step) return;
    const reason = `waiting for approval before step ${step + 1}/${steps.length}: ${steps[step]!.label} (banyan routes ${row.kind} ${row.route} --approve)`;
    await this.#update(row, { awaiting: step, reason });
    this.#o.log(`autopilot: ${row.route}: ${reason}`);
    return this.#emit(plan, row, { event: 'waiting', reason, version: null, checks });
  }

  /** Records the rollbacks dry-run budgets would have made: the first per step and budget, so a long break is one entry. */
  async #watch(
    row: PlanRow,
    plan: Plan,
    steps: readonly { label: string }[],
    watched: readonly { check: string; reason: string }[],
    checks: readonly Check[],
  ): Promise<void> {
    const seen = watchedOf(row);
    const fresh = watched
      .filter((w) => !seen.some((s) => s.step === row.step && s.check === w.check))
      .map((w) => ({ step: row.step, check: w.check, at: new Date().toISOString(), reason: w.reason }));
    if (!fresh.length) return;
    await this.#update(row, { watched: JSON.stringify([...seen, ...fresh]) });
    row.watched = [...seen, ...fresh];
    for (const w of fresh) {
      this.#o.log(`autopilot: ${row.route}: dry run: ${describeWatched(w)}`);
      this.#emit(plan, row, { event: 'dry-run', reason: describeWatched(w), version: null, checks });
    }
  }

  /** The plan moves to step `step`, with the route as that step has it. */
  #move(
    row: PlanRow,
    plan: Plan,
    to: { step: number; route: Route; reason: string; table: TableVersion; checks?: readonly Check[] },
  ): Promise<void> {
    return this.#transition(row, plan, { ...to, status: 'running', event: 'step', checks: to.checks ?? [] });
  }

  /** The plan ends (done, rolled back, stopped, overridden), with the route put to `route` if given. */
  #finish(row: PlanRow, plan: Plan, end: Ending): Promise<void> {
    return this.#transition(row, plan, {
      status: end.status,
      event: ENDING_EVENT[end.status],
      reason: end.reason,
      table: end.table,
      route: end.route,
      checks: end.checks ?? [],
      step: end.step ?? row.step,
    });
  }

  /** One change of the plan (and of the route, if given): committed, applied here and announced, logged, and sent to the webhook. */
  async #transition(row: PlanRow, plan: Plan, change: Transition): Promise<void> {
    const { step, status, reason, route, table, event, checks } = change;
    const saved = await this.#commit(row, { step, status, reason, route, table });
    await this.#after(saved);
    this.#o.log(`autopilot: ${row.route}: ${reason}`);
    return this.#emit(plan, { ...row, step, status }, { event, reason, version: saved?.version ?? null, checks });
  }

  async #after(saved: TableVersion | undefined): Promise<void> {
    if (saved)
      await this.#o
        .changed(saved.version)
        .catch((err: Error) => this.#o.log(`autopilot: version ${saved.version} is stored but not yet announced: ${err.message}`));
  }

  /** Plan row and table version in one transaction, only while the lease is held and the plan is where this tick saw it. */
  async #commit(
    row: PlanRow,
    change: { step: number; status: string; reason: string; route?: Route | undefined; table: TableVersion | undefined },
  ): Promise<TableVersion | undefined> {
    return this.#o.db.transaction().execute(async (trx) => {
      await this.#holding(trx);
      const moved = change.step !== row.step;
      const updated = await trx
        .updateTable('cutover_plans')
        .set({
          status: change.status,
          step: change.step,
          reason: change.reason,
          updated_at: new Date(),
          ...(moved ? { step_started_at: new Date(), held: false, awaiting: null } : {}),
          ...(change.route ? { expected_route: JSON.stringify(change.route) } : {}),
        })
        .where('id', '=', row.id)
        .where('step', '=', row.step)
        .where('status', '=', 'running')
        .returning('id')
        .execute();
      if (updated.length !== 1) throw new PlanMoved();
      const { table, route } = change;
      if (!route || !table || canonical(table.routes.find((r) => r.name === row.route)) === canonical(route)) return undefined;
      return saveTableIn(trx, {
        routes: table.routes.map((r) => (r.name === row.route ? route : r)),
        actor: AUTOPILOT_ACTOR,
        reason: `${row.route}: ${change.reason}`,
        action: `autopilot ${row.kind}`,
        expectedVersion: table.version,
      });
    });
  }

  async #update(row: PlanRow, set: { held?: boolean; reason?: string; awaiting?: number; watched?: string }): Promise<void> {
    await this.#o.db.transaction().execute(async (trx) => {
      await this.#holding(trx);
      const updated = await trx
        .updateTable('cutover_plans')
        .set({ ...set, updated_at: new Date() })
        .where('id', '=', row.id)
        .where('step', '=', row.step)
        .where('status', '=', 'running')
        .returning('id')
        .execute();
      if (updated.length !== 1) throw new PlanMoved();
    });
  }

  async #holding(trx: Kysely<BanyanDatabase>): Promise<void> {
    const held =
      await sql`SELECT 1 FROM autopilot_lease WHERE name = ${LEASE} AND holder = ${this.instance} AND expires_at > now() FOR UPDATE`.execute(
        trx,
      );
    if (held.rows.length !== 1) {
      this.#leader = false;
      throw new LostLease();
    }
  }

  /** Posts the event to the plan's webhook (or the proxy's); a slow or failing receiver delays nothing. */
  #emit(
    plan: Plan,
    row: Pick<PlanRow, 'id' | 'route' | 'kind' | 'step' | 'status'>,
    what: { event: PlanEvent; reason: string; version: number | null; checks: readonly Check[] },
  ): void {
    const url = plan.webhook ?? this.#o.webhook;
    if (!url) return;
    const { event, reason, version, checks } = what;
    const steps = stepsOf(plan);
    const body: PlanEventBody = {
      event,
      route: row.route,
      plan: String(row.id),
      kind: row.kind,
      status: row.status,
      reason,
      tableVersion: version,
      checks,
      at: new Date().toISOString(),
      step: row.step >= 0 && steps[row.step] ? { index: row.step + 1, of: steps.length, label: steps[row.step]!.label } : null,
    };
    void postEvent(url, body, { secret: this.#o.webhookSecret, log: this.#o.log, what: `the ${event} event of ${row.route}` });
  }

  /** Stops ticking, reports the last counts, and gives the lease up so another proxy takes over at once. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#ticking;
    await this.sampler.flush(this.#o.db, this.#o.shadowCounts).catch(() => {});
    await sql`DELETE FROM autopilot_lease WHERE name = ${LEASE} AND holder = ${this.instance}`.execute(this.#o.db).catch(() => {});
  }
}

/** "; approved by …" when a person let the plan into step `step`. */
function approvedBy(row: PlanRow, step: number): string {
  const approval = approvalsOf(row).find((a) => a.step === step);
  return approval ? `; approved by ${approval.by}` : '';
}
