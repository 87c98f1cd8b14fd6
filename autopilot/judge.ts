/**
 * The verdict on one step of a plan, from the fleet's evidence. Pure: the
 * pilot acts on it, `banyan routes promote --status` and the dashboard show it.
 */

import { quoted } from '../lib/quoted.js';
import type { Evidence, Side } from './evidence.js';
import { formatMs, type BudgetName, type Plan, type QueryCheck, type Step } from './plan-file.js';
import type { QueryResult } from './prometheus-checks.js';

/** One budget or condition, against the live number. */
export interface Check {
  readonly name: string;
  /** The live figure, as people read it ("0.4 % of 1,204"). */
  readonly value: string;
  /** What it must stay within, or reach. */
  readonly limit: string;
  /** true: holds; false: broken (or not reached yet, for a `gate`); undefined: too few requests to tell. */
  readonly ok: boolean | undefined;
  /** A gate must be reached to move on; a budget broken means rollback. */
  readonly kind: 'budget' | 'gate';
  /** A budget only watched: broken, it is reported as the rollback it would have been. */
  readonly dryRun?: true;
}

export type Action = 'wait' | 'advance' | 'hold' | 'rollback' | 'stop';

export interface Verdict {
  readonly action: Action;
  readonly checks: readonly Check[];
  /** For people and the audit log: what was decided and the numbers behind it. */
  readonly reason: string;
  /** Dry-run budgets broken now, each as the rollback reason it would have given. */
  readonly watched: readonly { readonly check: string; readonly reason: string }[];
}

export interface StepEvidence {
  /** Since the step started. */
  readonly step: Evidence;
  /** The budget window: the last `window` of the step. */
  readonly window: Evidence;
  /** Since the plan started: legacy's baseline when the window has too little legacy traffic. */
  readonly plan: Evidence;
  /** The plan's PromQL checks, as Prometheus answered them on this tick (canary and new steps). */
  readonly queries?: readonly QueryResult[];
}

const pct = (r: number) => `${(r * 100).toFixed(r !== 0 && r < 0.001 ? 3 : r < 0.1 ? 2 : 1)} %`;
const count = (n: number) => n.toLocaleString('en-US');
const ms = (v: number | undefined) => (v === undefined ? 'n/a' : v === Infinity ? '>30s' : `${v} ms`);

/** Judges `step` of `plan`, `elapsedMs` into it. */
export function judge(plan: Plan, step: Step, elapsedMs: number, evidence: StepEvidence, service = 'app'): Verdict {
  // The new side by its service's name: the index's app is "the new app", any other "the files service".
  const side = service === 'app' ? 'the new app' : `the ${service} service`;
  const held = elapsedMs >= step.holdMs;
  const time: Check = { name: 'time on step', value: formatMs(elapsedMs), limit: `≥ ${formatMs(step.holdMs)}`, ok: held, kind: 'gate' };
  if (plan.kind === 'retire') {
    if (step.kind !== 'brownout') return verdict(held ? 'advance' : 'wait', [time], held ? `${step.label} is over` : '');
    const seen = evidence.step.proxy;
    const calls: Check = {
      name: 'requests during the brownout',
      value: count(seen.requests),
      limit: `≤ ${count(plan.maxRequestsDuringBrownout)}`,
      ok: seen.requests <= plan.maxRequestsDuringBrownout,
      kind: 'budget',
    };
    if (!calls.ok) {
      const agents = seen.agents
        .slice(0, 3)
        .map((a) => `${quoted(a.agent)} (${count(a.requests)})`)
        .join(', ');
      return verdict(
        'stop',
        [time, calls],
        `${count(seen.requests)} requests came in during ${step.label} (the plan allows ${count(plan.maxRequestsDuringBrownout)}): ` +
          `someone still uses this route; top user agents: ${agents}`,
      );
    }
    return verdict(held ? 'advance' : 'wait', [time, calls], held ? `${step.label} passed with ${count(seen.requests)} requests` : '');
  }

  const spec = step.promote!;
  if (spec.mode === 'shadow') {
    const c = evidence.step.comparisons;
    const n = c.matches + c.mismatches;
    const enough: Check = {
      name: 'comparisons',
      value: count(n),
      limit: `≥ ${count(spec.minComparisons)}`,
      ok: n >= spec.minComparisons,
      kind: 'gate',
    };
    const rate = budget(spec.budgets.dryRun, 'mismatchRate', {
      name: 'mismatch rate (noise aside)',
      value: `${pct(c.mismatchRate)} (${count(c.mismatches)} of ${count(n)})`,
      limit: `≤ ${pct(spec.maxMismatchRate)}`,
      ok: n >= spec.minComparisons ? c.mismatchRate <= spec.maxMismatchRate : undefined,
      kind: 'budget',
    });
    const checks = [time, enough, rate];
    const broken = brokenBudgets([
      [
        rate,
        `shadow: ${count(c.mismatches)} of ${count(n)} comparisons differ (${pct(c.mismatchRate)}), above the plan's ${pct(spec.maxMismatchRate)}; see banyan routes shadow`,
      ],
    ]);
    if (broken.rollback) return verdict('rollback', checks, broken.rollback, broken.watched);
    const watched = broken.watched;
    if (held && enough.ok)
      return verdict(
        'advance',
        checks,
        `shadow passed: ${count(n)} comparisons, ${pct(c.mismatchRate)} mismatched (≤ ${pct(spec.maxMismatchRate)}) over ${formatMs(elapsedMs)}`,
        watched,
      );
    return verdict(
      held ? 'hold' : 'wait',
      checks,
      held ? `held on shadow: ${count(n)} of ${count(spec.minComparisons)} comparisons so far` : '',
      watched,
    );
  }

  const b = spec.budgets;
  const fresh = evidence.window.new;
  const attempts = fresh.requests + fresh.fallbacks;
  const judged = attempts >= b.minRequests;
  const base: Side | undefined =
    evidence.window.legacy.requests >= b.minRequests
      ? evidence.window.legacy
      : evidence.plan.legacy.requests >= b.minRequests
        ? evidence.plan.legacy
        : undefined;
  const baseWhere = base === evidence.window.legacy ? 'in the window' : 'since the plan started';
  const errorLimit = (base?.errorRate ?? 0) + b.errorRateMargin;
  const errors = budget(b.dryRun, 'errorRate', {
    name: 'new 5xx rate',
    value: `${pct(fresh.errorRate)} (${count(fresh.errors)} of ${count(fresh.requests)})`,
    limit: `≤ ${pct(errorLimit)} (legacy ${base ? pct(base.errorRate) : 'n/a'} + ${pct(b.errorRateMargin)})`,
    ok: judged ? fresh.errorRate <= errorLimit : undefined,
    kind: 'budget',
  });
  const p95Limit = base?.p95Ms !== undefined && base.p95Ms !== Infinity ? base.p95Ms * b.p95Factor + b.p95SlackMs : undefined;
  const latency = budget(b.dryRun, 'p95', {
    name: 'new p95 latency',
    value: ms(fresh.p95Ms),
    limit:
      p95Limit === undefined
        ? 'no legacy baseline yet'
        : `≤ ${+p95Limit.toFixed(1)} ms (legacy ${ms(base!.p95Ms)} × ${b.p95Factor} + ${b.p95SlackMs} ms)`,
    ok: judged && p95Limit !== undefined && fresh.p95Ms !== undefined ? fresh.p95Ms <= p95Limit : undefined,
    kind: 'budget',
  });
  const fallbacks = budget(b.dryRun, 'fallbackRate', {
    name: 'fallback rate',
    value: `${pct(fresh.fallbackRate)} (${count(fresh.fallbacks)} of ${count(attempts)})`,
    limit: `≤ ${pct(b.maxFallbackRate)}`,
    ok: judged ? fresh.fallbackRate <= b.maxFallbackRate : undefined,
    kind: 'budget',
  });
  const stepAttempts = evidence.step.new.requests + evidence.step.new.fallbacks;
  const volume: Check = {
    name: 'new requests on this step',
    value: count(stepAttempts),
    limit: `≥ ${count(spec.minRequests)}`,
    ok: stepAttempts >= spec.minRequests,
    kind: 'gate',
  };
  const queries = plan.checks.map((c) =>
    queryCheck(
      c,
      evidence.queries?.find((q) => q.name === c.name),
    ),
  );
  const checks = [time, volume, errors, latency, fallbacks, ...queries.map((q) => q.check)];
  const window = `over the last ${formatMs(Math.min(elapsedMs, b.windowMs))}`;
  const broken = brokenBudgets([
    [
      errors,
      () =>
        `${side} answered 5xx to ${pct(fresh.errorRate)} of requests (${count(fresh.errors)} of ${count(fresh.requests)}) ${window}, ` +
        `above legacy's ${base ? pct(base.errorRate) : '0 %'} ${base ? baseWhere : '(no legacy baseline)'} + the ${pct(b.errorRateMargin)} margin`,
    ],
    [
      latency,
      () =>
        `${side}'s p95 latency is ${ms(fresh.p95Ms)} ${window}, above legacy's ${ms(base!.p95Ms)} ${baseWhere} × ${b.p95Factor} + ${b.p95SlackMs} ms`,
    ],
    [
      fallbacks,
      () =>
        `${pct(fresh.fallbackRate)} of ${side}'s requests fell back (${count(fresh.fallbacks)} of ${count(attempts)}) ${window}, above the plan's ${pct(b.maxFallbackRate)}`,
    ],
    ...queries.map((q): [Check, () => string] => [q.check, () => `${q.broken} ${window}`]),
  ]);
  if (broken.rollback) return verdict('rollback', checks, broken.rollback, broken.watched);
  const watched = broken.watched;
  const unknown = queries.find((q) => q.check.ok === undefined && !q.check.dryRun);
  if (held && volume.ok && unknown) {
    // A check that cannot be evaluated never passes a step: no data is not good news.
    return verdict(
      'hold',
      checks,
      `held on ${step.label}: check "${unknown.name}" ${unknown.check.value}; a check that cannot be evaluated never passes a step`,
      watched,
    );
  }
  if (held && volume.ok) {
    const figures =
      `${count(stepAttempts)} requests on ${side} over ${formatMs(elapsedMs)}, 5xx ${pct(evidence.step.new.errorRate)}, p95 ${ms(evidence.step.new.p95Ms)}, ` +
      `fallbacks ${pct(evidence.step.new.fallbackRate)}; legacy 5xx ${base ? pct(base.errorRate) : 'n/a'}, p95 ${ms(base?.p95Ms)}`;
    return verdict('advance', checks, `${step.label} passed: ${figures}`, watched);
  }
  return verdict(
    held ? 'hold' : 'wait',
    checks,
    held ? `held on ${step.label}: ${count(stepAttempts)} of ${count(spec.minRequests)} requests on ${side} so far` : '',
    watched,
  );
}

const num = (v: number | undefined) => (v === undefined ? 'n/a' : String(+v.toPrecision(4)));

/** A PromQL check against its threshold or legacy's number; not judged (ok undefined) when it could not be evaluated. */
function queryCheck(c: QueryCheck, r: QueryResult | undefined): { name: string; check: Check; broken: string } {
  const problem = r === undefined ? 'not run yet' : r.problem;
  const value = r?.value;
  let limit: string;
  let ok: boolean | undefined;
  let broken: string;
  if (c.against === 'legacy') {
    const bound = r?.legacy === undefined ? undefined : r.legacy * c.factor + c.margin;
    limit = `≤ ${bound === undefined ? '' : `${num(bound)} (`}legacy ${num(r?.legacy)} × ${c.factor} + ${c.margin}${bound === undefined ? '' : ')'}`;
    ok = problem || bound === undefined || value === undefined ? undefined : value <= bound;
    broken = `check "${c.name}" is ${num(value)} against legacy's ${num(r?.legacy)} (at most × ${c.factor} + ${c.margin})`;
  } else {
    limit = [c.min === undefined ? '' : `≥ ${c.min}`, c.max === undefined ? '' : `≤ ${c.max}`].filter(Boolean).join(' and ');
    ok = problem || value === undefined ? undefined : (c.max === undefined || value <= c.max) && (c.min === undefined || value >= c.min);
    broken = `check "${c.name}" is ${num(value)}, ${c.max !== undefined && value !== undefined && value > c.max ? `above its max ${c.max}` : `below its min ${c.min}`}`;
  }
  const check: Check = {
    name: `check ${c.name}`,
    value: problem ? `cannot be evaluated: ${problem}` : num(value),
    limit,
    ok,
    kind: 'budget',
    ...(c.dryRun ? { dryRun: true as const } : {}),
  };
  return { name: c.name, check, broken };
}

/** A budget check, marked when the plan only watches it. */
function budget(dryRun: readonly BudgetName[], name: BudgetName, check: Check): Check {
  return dryRun.includes(name) ? { ...check, dryRun: true } : check;
}

/** The first broken budget that acts gives the rollback reason; broken dry-run budgets are only watched. */
function brokenBudgets(budgets: readonly [Check, string | (() => string)][]): { rollback?: string; watched: Verdict['watched'] } {
  const broken = budgets
    .filter(([c]) => c.ok === false)
    .map(([c, r]) => ({ check: c.name, dryRun: c.dryRun === true, reason: typeof r === 'string' ? r : r() }));
  const acting = broken.find((b) => !b.dryRun);
  return {
    ...(acting ? { rollback: acting.reason } : {}),
    watched: broken.filter((b) => b.dryRun).map(({ check, reason }) => ({ check, reason })),
  };
}

function verdict(action: Action, checks: Check[], reason: string, watched: Verdict['watched'] = []): Verdict {
  return { action, checks, reason, watched };
}
