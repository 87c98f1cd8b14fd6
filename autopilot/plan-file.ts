/**
 * Cutover plans: what the autopilot does with one route, step by step, and
 * the budgets it holds the new app to. Pure: validation and expansion into
 * concrete steps, no I/O. A plan file is JSON; every duration is a string
 * such as "30s", "10m" or "1d".
 *
 * A promotion walks a route from where it is towards `new`:
 *
 *   { "steps": [ { "mode": "shadow", "hold": "10m", "minComparisons": 1000, "maxMismatchRate": 0.005 },
 *                { "mode": "canary", "percent": 1, "hold": "15m", "minRequests": 200 }, …,
 *                { "mode": "new", "hold": "1h", "minRequests": 1000 } ],
 *     "budgets": { "errorRateMargin": 0.005, "p95Factor": 1.5, "p95SlackMs": 10, "maxFallbackRate": 0.01,
 *                  "minRequests": 100, "window": "5m" },
 *     "webhook": "https://hooks.example/banyan" }
 *
 * A step with `"approve": true` is not entered until a person says so
 * (`banyan routes promote NAME --approve`). `"dryRun": true` on the plan, or
 * on a `budgets` object (or a list of its budgets: `["p95", "errorRate"]`),
 * makes those budgets watched only: a break is recorded and reported as the
 * rollback it would have been, and the plan goes on.
 *
 * `checks` are PromQL queries judged on canary and new steps, each against a
 * threshold or against the same query for legacy:
 *
 *   "checks": [{ "name": "p99", "query": "histogram_quantile(0.99, sum by (le) (rate(…{route=\"{route}\", service=\"{service}\"}[{window}])))",
 *                "against": "legacy", "factor": 1.5, "margin": 0.01 }]
 *
 * A retirement walks it the other way: brownouts of growing length with gaps
 * between them, then `retired`:
 *
 *   { "unused": { "for": "30d", "maxRequests": 0 }, "brownouts": ["10m", "1h", "1d"], "gap": "1d",
 *     "maxRequestsDuringBrownout": 0, "retired": { "status": 410, "message": "…" } }
 */

import { parseDuration } from '../lib/duration.js';
import { BanyanError } from '../lib/errors.js';
import { isObject } from '../lib/objects.js';

export type PlanKind = 'promote' | 'retire';

/** What the new side is held to, measured against legacy on the same route and window. */
export interface Budgets {
  /** The new side's 5xx rate may exceed legacy's by at most this (0.005 = half a percentage point). */
  readonly errorRateMargin: number;
  /** The new side's p95 latency may be at most legacy's times this… */
  readonly p95Factor: number;
  /** …plus this many milliseconds (sub-millisecond backends differ by noise alone). */
  readonly p95SlackMs: number;
  /** The share of the new side's requests that fell back to legacy stays under this. */
  readonly maxFallbackRate: number;
  /** No verdict on fewer requests than this on the new side within the window. */
  readonly minRequests: number;
  /** Budgets are judged on the last `window` of the step (or the whole step, if shorter). */
  readonly windowMs: number;
  /** Budgets only watched: a break is recorded as the rollback it would have been, and nothing is done. */
  readonly dryRun: readonly BudgetName[];
}

/** The budgets by name, as `dryRun` lists them. */
export const BUDGET_NAMES = ['errorRate', 'p95', 'fallbackRate', 'mismatchRate'] as const;
export type BudgetName = (typeof BUDGET_NAMES)[number];

export interface PromoteStep {
  readonly mode: 'shadow' | 'canary' | 'new';
  readonly percent?: number;
  /** The least time spent on the step. */
  readonly holdMs: number;
  /** canary, new: requests the new side must have answered on this step before the next. */
  readonly minRequests: number;
  /** shadow: comparisons needed, and the mismatch rate (noise aside) allowed. */
  readonly minComparisons: number;
  readonly maxMismatchRate: number;
  readonly budgets: Budgets;
  /** The plan waits before this step until a person approves it. */
  readonly approve: boolean;
}

/** A PromQL query the new side is held to, on canary and new steps. */
export interface QueryCheck {
  readonly name: string;
  /** PromQL with `{route}`, `{service}` and `{window}` filled in; it must come to one number. */
  readonly query: string;
  /** A threshold: the number stays at or below `max`, at or above `min`… */
  readonly max?: number;
  readonly min?: number;
  /** …or, `against` legacy, at most legacy's number (the same query with `{service}` = legacy) × `factor` + `margin`. */
  readonly against?: 'legacy';
  readonly factor: number;
  readonly margin: number;
  /** Only watched: a break is reported as the rollback it would have been. */
  readonly dryRun: boolean;
}

/** What a check's query may have filled in. */
export const CHECK_PLACEHOLDERS = ['route', 'service', 'window'] as const;

export interface PromotePlan {
  readonly kind: 'promote';
  readonly steps: readonly PromoteStep[];
  readonly checks: readonly QueryCheck[];
  readonly webhook?: string;
  /** Every budget only watched (`--dry-run`). */
  readonly dryRun: boolean;
}

export interface RetirePlan {
  readonly kind: 'retire';
  /** The route must have served at most `maxRequests` real requests (4xx aside) over `forMs` to start. */
  readonly unused: { readonly forMs: number; readonly maxRequests: number };
  readonly brownoutsMs: readonly number[];
  readonly gapMs: number;
  /** More requests than this during one brownout stops the retirement. */
  readonly maxRequestsDuringBrownout: number;
  readonly retired: { readonly status: number; readonly message: string };
  readonly webhook?: string;
}

export type Plan = PromotePlan | RetirePlan;

/** The promotion plan used without --plan, as README.md shows it. */
export const DEFAULT_PROMOTE_PLAN = {
  steps: [
    { mode: 'shadow', hold: '10m', minComparisons: 1000, maxMismatchRate: 0.005 },
    { mode: 'canary', percent: 1, hold: '15m', minRequests: 200 },
    { mode: 'canary', percent: 5, hold: '15m', minRequests: 500 },
    { mode: 'canary', percent: 25, hold: '30m', minRequests: 1000 },
    { mode: 'canary', percent: 50, hold: '30m', minRequests: 1000 },
    { mode: 'new', hold: '1h', minRequests: 1000 },
  ],
  budgets: { errorRateMargin: 0.005, p95Factor: 1.5, p95SlackMs: 10, maxFallbackRate: 0.01, minRequests: 100, window: '5m' },
} as const;

/** The retirement plan used without --plan. */
export const DEFAULT_RETIRE_PLAN = {
  unused: { for: '30d', maxRequests: 0 },
  brownouts: ['10m', '1h', '1d'],
  gap: '1d',
  maxRequestsDuringBrownout: 0,
  retired: { status: 410, message: 'This feature has been retired.' },
} as const;

const DEFAULT_BUDGETS = DEFAULT_PROMOTE_PLAN.budgets;

/** Collects every problem, each naming its field, so a plan is fixed in one go. */
class Problems {
  readonly list: string[] = [];
  say(field: string, what: string): void {
    this.list.push(`${field}: ${what}`);
  }
  duration(value: unknown, field: string, fallback?: string): number {
    if (value === undefined && fallback !== undefined) return parseDuration(fallback, field);
    if (typeof value !== 'string') {
      this.say(field, `must be a duration such as "30s", "10m" or "1d"${value === undefined ? ' (missing)' : ''}`);
      return 0;
    }
    try {
      return parseDuration(value, field);
    } catch {
      this.say(field, `must be a duration such as "30s", "10m" or "1d", not "${value}"`);
      return 0;
    }
  }
  number(value: unknown, field: string, fallback: number, check: (n: number) => boolean, range: string): number {
    if (value === undefined) return fallback;
    if (typeof value !== 'number' || !Number.isFinite(value) || !check(value)) {
      this.say(field, `must be ${range}, not ${JSON.stringify(value)}`);
      return fallback;
    }
    return value;
  }
  keys(value: Record<string, unknown>, field: string, known: readonly string[]): void {
    for (const key of Object.keys(value))
      if (!known.includes(key)) this.say(field ? `${field}.${key}` : key, `unknown field (known: ${known.join(', ')})`);
  }
}

const rate = (n: number) => n >= 0 && n <= 1;
const whole = (n: number) => Number.isInteger(n) && n >= 0;

function budgetsOf(p: Problems, raw: unknown, field: string, base: Budgets): Budgets {
  if (raw === undefined) return base;
  if (!isObject(raw)) {
    p.say(field, 'must be an object');
    return base;
  }
  p.keys(raw, field, ['errorRateMargin', 'p95Factor', 'p95SlackMs', 'maxFallbackRate', 'minRequests', 'window', 'dryRun']);
  return {
    errorRateMargin: p.number(
      raw['errorRateMargin'],
      `${field}.errorRateMargin`,
      base.errorRateMargin,
      rate,
      'a rate from 0 to 1 (0.005 is 0.5 %)',
    ),
    p95Factor: p.number(raw['p95Factor'], `${field}.p95Factor`, base.p95Factor, (n) => n >= 1, 'a factor of at least 1'),
    p95SlackMs: p.number(raw['p95SlackMs'], `${field}.p95SlackMs`, base.p95SlackMs, (n) => n >= 0, 'milliseconds, 0 or more'),
    maxFallbackRate: p.number(raw['maxFallbackRate'], `${field}.maxFallbackRate`, base.maxFallbackRate, rate, 'a rate from 0 to 1'),
    minRequests: p.number(
      raw['minRequests'],
      `${field}.minRequests`,
      base.minRequests,
      (n) => Number.isInteger(n) && n >= 1,
      'a whole number of at least 1',
    ),
    windowMs: raw['window'] === undefined ? base.windowMs : p.duration(raw['window'], `${field}.window`),
    dryRun: dryRunOf(p, raw['dryRun'], `${field}.dryRun`, base.dryRun),
  };
}

function dryRunOf(p: Problems, raw: unknown, field: string, base: readonly BudgetName[]): readonly BudgetName[] {
  if (raw === undefined) return base;
  if (raw === true) return BUDGET_NAMES;
  if (raw === false) return [];
  if (Array.isArray(raw) && raw.length && raw.every((n) => BUDGET_NAMES.includes(n as BudgetName))) return raw as BudgetName[];
  p.say(field, `must be true, false or a list of budgets (${BUDGET_NAMES.join(', ')}), not ${JSON.stringify(raw)}`);
  return base;
}

function flagOf(p: Problems, raw: unknown, field: string): boolean {
  if (raw === undefined) return false;
  if (typeof raw !== 'boolean') p.say(field, `must be true or false, not ${JSON.stringify(raw)}`);
  return raw === true;
}

/** Checks a promotion plan (the parsed JSON of a plan file); every problem names its field. */
export function validatePromotePlan(raw: unknown): PromotePlan {
  const p = new Problems();
  if (!isObject(raw)) throw invalid(['the plan must be a JSON object with "steps"']);
  p.keys(raw, '', ['steps', 'budgets', 'checks', 'webhook', 'dryRun']);
  const dryRun = flagOf(p, raw['dryRun'], 'dryRun');
  const budgets = budgetsOf(p, raw['budgets'], 'budgets', {
    ...DEFAULT_BUDGETS,
    windowMs: parseDuration(DEFAULT_BUDGETS.window, 'window'),
    dryRun: dryRun ? BUDGET_NAMES : [],
  });
  const steps: PromoteStep[] = [];
  if (!Array.isArray(raw['steps']) || raw['steps'].length === 0) p.say('steps', 'must be a list of at least one step');
  else
    raw['steps'].forEach((s: unknown, i) => {
      const field = `steps[${i}]`;
      if (!isObject(s)) return p.say(field, 'must be an object such as {"mode": "canary", "percent": 5, "hold": "10m"}');
      p.keys(s, field, ['mode', 'percent', 'hold', 'minRequests', 'minComparisons', 'maxMismatchRate', 'budgets', 'approve']);
      const mode = s['mode'];
      if (mode !== 'shadow' && mode !== 'canary' && mode !== 'new')
        return p.say(`${field}.mode`, `must be shadow, canary or new, not ${JSON.stringify(mode)}`);
      let percent: number | undefined;
      if (mode === 'canary') {
        percent = p.number(s['percent'], `${field}.percent`, NaN, (n) => n > 0 && n < 100, 'a number above 0 and below 100');
        if (s['percent'] === undefined) p.say(`${field}.percent`, 'a canary step needs a percent (above 0, below 100)');
        const before = steps.at(-1);
        if (before?.mode === 'canary' && before.percent! >= percent)
          p.say(`${field}.percent`, `must be above the step before's ${before.percent}`);
      } else if (s['percent'] !== undefined) p.say(`${field}.percent`, `only canary steps have a percent, not ${mode}`);
      const before = steps.at(-1);
      const order = { shadow: 0, canary: 1, new: 2 } as const;
      if (before && order[before.mode] > order[mode])
        p.say(`${field}.mode`, `${mode} cannot come after ${before.mode}: a promotion only moves towards new`);
      if (mode !== 'shadow' && (s['minComparisons'] !== undefined || s['maxMismatchRate'] !== undefined))
        p.say(field, 'minComparisons and maxMismatchRate are for shadow steps');
      steps.push({
        mode,
        percent,
        holdMs: p.duration(s['hold'], `${field}.hold`),
        minRequests: p.number(s['minRequests'], `${field}.minRequests`, 0, whole, 'a whole number, 0 or more'),
        minComparisons: p.number(
          s['minComparisons'],
          `${field}.minComparisons`,
          mode === 'shadow' ? 100 : 0,
          whole,
          'a whole number, 0 or more',
        ),
        maxMismatchRate: p.number(s['maxMismatchRate'], `${field}.maxMismatchRate`, 0.005, rate, 'a rate from 0 to 1'),
        budgets: budgetsOf(p, s['budgets'], `${field}.budgets`, budgets),
        approve: flagOf(p, s['approve'], `${field}.approve`),
      });
    });
  if (steps.length && steps.at(-1)!.mode !== 'new')
    p.say('steps', 'the last step must be {"mode": "new", …}: a promotion ends with the route on the new app');
  const webhook = webhookOf(p, raw['webhook']);
  if (dryRun)
    steps.forEach((s, i) => {
      if (s.budgets.dryRun.length < BUDGET_NAMES.length)
        p.say(`steps[${i}].budgets.dryRun`, 'a dry-run plan watches every budget; leave dryRun out here');
    });
  const checks = checksOf(p, raw['checks'], dryRun);
  if (p.list.length) throw invalid(p.list);
  return { kind: 'promote', steps, checks, dryRun, ...(webhook ? { webhook } : {}) };
}

function checksOf(p: Problems, raw: unknown, dryRun: boolean): QueryCheck[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) {
    p.say('checks', 'must be a list such as [{"name": "p99", "query": "…", "max": 0.5}]');
    return [];
  }
  const checks: QueryCheck[] = [];
  raw.forEach((c: unknown, i) => {
    const field = `checks[${i}]`;
    if (!isObject(c)) return p.say(field, 'must be an object such as {"name": "p99", "query": "…", "max": 0.5}');
    p.keys(c, field, ['name', 'query', 'max', 'min', 'against', 'factor', 'margin', 'dryRun']);
    const name = c['name'];
    if (typeof name !== 'string' || !name.trim()) p.say(`${field}.name`, 'must be a non-empty text');
    else if (checks.some((k) => k.name === name)) p.say(`${field}.name`, `"${name}" is the name of another check`);
    const query = c['query'];
    if (typeof query !== 'string' || !query.trim()) p.say(`${field}.query`, 'must be a PromQL query');
    else {
      const unknown = [...query.matchAll(/\{(\w+)\}/g)]
        .map((m) => m[1]!)
        .filter((w) => !(CHECK_PLACEHOLDERS as readonly string[]).includes(w));
      if (unknown.length)
        p.say(`${field}.query`, `{${unknown[0]}} is not filled in (known: ${CHECK_PLACEHOLDERS.map((w) => `{${w}}`).join(', ')})`);
      if (c['against'] === 'legacy' && !query.includes('{service}'))
        p.say(`${field}.query`, 'a check against legacy must use {service}, so the same query runs for each side');
    }
    const against = c['against'];
    if (against !== undefined && against !== 'legacy') p.say(`${field}.against`, `must be "legacy", not ${JSON.stringify(against)}`);
    const number = (key: string, fallback: number, check: (n: number) => boolean, range: string) =>
      p.number(c[key], `${field}.${key}`, fallback, check, range);
    const any = (n: number) => Number.isFinite(n);
    const max = c['max'] === undefined ? undefined : number('max', NaN, any, 'a number');
    const min = c['min'] === undefined ? undefined : number('min', NaN, any, 'a number');
    if (against === 'legacy') {
      if (max !== undefined || min !== undefined)
        p.say(field, 'a check gives a threshold (max, min) or a comparison against legacy (factor, margin), not both');
    } else {
      if (max === undefined && min === undefined) p.say(field, 'needs a threshold ("max" or "min") or "against": "legacy"');
      if (c['factor'] !== undefined || c['margin'] !== undefined) p.say(field, 'factor and margin are for a check "against": "legacy"');
    }
    const own = flagOf(p, c['dryRun'], `${field}.dryRun`);
    if (dryRun && c['dryRun'] === false) p.say(`${field}.dryRun`, 'a dry-run plan watches every check; leave dryRun out here');
    checks.push({
      name: String(name),
      query: String(query),
      ...(max !== undefined ? { max } : {}),
      ...(min !== undefined ? { min } : {}),
      ...(against === 'legacy' ? { against } : {}),
      factor: number('factor', 1, (n) => n > 0, 'a factor above 0'),
      margin: number('margin', 0, (n) => n >= 0, 'a number, 0 or more'),
      dryRun: dryRun || own,
    });
  });
  return checks;
}

/** Checks a retirement plan; every problem names its field. */
export function validateRetirePlan(raw: unknown): RetirePlan {
  const p = new Problems();
  if (!isObject(raw)) throw invalid(['the plan must be a JSON object with "brownouts"']);
  p.keys(raw, '', ['unused', 'brownouts', 'gap', 'maxRequestsDuringBrownout', 'retired', 'webhook']);
  const unused = isObject(raw['unused']) ? raw['unused'] : {};
  if (raw['unused'] !== undefined && !isObject(raw['unused']))
    p.say('unused', 'must be an object such as {"for": "30d", "maxRequests": 0}');
  p.keys(unused, 'unused', ['for', 'maxRequests']);
  const brownouts: number[] = [];
  if (!Array.isArray(raw['brownouts']) || raw['brownouts'].length === 0)
    p.say('brownouts', 'must be a list of at least one duration, such as ["10m", "1h"]');
  else raw['brownouts'].forEach((b: unknown, i) => brownouts.push(p.duration(b, `brownouts[${i}]`)));
  const retired = isObject(raw['retired']) ? raw['retired'] : {};
  if (raw['retired'] !== undefined && !isObject(raw['retired']))
    p.say('retired', 'must be an object such as {"status": 410, "message": "…"}');
  p.keys(retired, 'retired', ['status', 'message']);
  const status = p.number(
    retired['status'],
    'retired.status',
    410,
    (n) => Number.isInteger(n) && n >= 400 && n <= 599,
    'a 4xx or 5xx status',
  );
  const message = retired['message'] ?? DEFAULT_RETIRE_PLAN.retired.message;
  if (typeof message !== 'string' || !message.trim()) p.say('retired.message', 'must be a non-empty text');
  const webhook = webhookOf(p, raw['webhook']);
  const plan: RetirePlan = {
    kind: 'retire',
    unused: {
      forMs: p.duration(unused['for'], 'unused.for', DEFAULT_RETIRE_PLAN.unused.for),
      maxRequests: p.number(unused['maxRequests'], 'unused.maxRequests', 0, whole, 'a whole number, 0 or more'),
    },
    brownoutsMs: brownouts,
    gapMs: p.duration(raw['gap'], 'gap', DEFAULT_RETIRE_PLAN.gap),
    maxRequestsDuringBrownout: p.number(
      raw['maxRequestsDuringBrownout'],
      'maxRequestsDuringBrownout',
      0,
      whole,
      'a whole number, 0 or more',
    ),
    retired: { status, message: String(message) },
    ...(webhook ? { webhook } : {}),
  };
  if (p.list.length) throw invalid(p.list);
  return plan;
}

function webhookOf(p: Problems, raw: unknown): string | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw !== 'string' || !/^https?:\/\/[^\s]+$/.test(raw) || !URL.canParse(raw)) {
    p.say('webhook', `must be an http:// or https:// URL, not ${JSON.stringify(raw)}`);
    return undefined;
  }
  return raw;
}

function invalid(problems: string[]): BanyanError {
  return new BanyanError(
    'invalid-plan',
    `the plan was refused:\n  ${problems.join('\n  ')}`,
    'nothing was started; fix these and try again',
  );
}

/** One concrete step of either kind, as the autopilot walks it. */
export interface Step {
  readonly label: string;
  readonly kind: 'shadow' | 'canary' | 'new' | 'brownout' | 'gap' | 'retired';
  readonly holdMs: number;
  readonly promote?: PromoteStep;
}

/** The steps a plan walks, in order; a retirement's brownouts alternate with gaps and end retired. */
export function stepsOf(plan: Plan): Step[] {
  if (plan.kind === 'promote') {
    return plan.steps.map((s) => ({
      label: s.mode === 'canary' ? `canary ${s.percent}%` : s.mode,
      kind: s.mode,
      holdMs: s.holdMs,
      promote: s,
    }));
  }
  const steps: Step[] = [];
  plan.brownoutsMs.forEach((ms, i) => {
    steps.push({ label: `brownout ${i + 1} of ${plan.brownoutsMs.length} (${formatMs(ms)})`, kind: 'brownout', holdMs: ms });
    steps.push({ label: `gap after brownout ${i + 1}`, kind: 'gap', holdMs: plan.gapMs });
  });
  steps.push({ label: 'retired', kind: 'retired', holdMs: 0 });
  return steps;
}

/** 90000 → "1m30s"; for reasons and tables. */
export function formatMs(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)}ms`;
  const parts: string[] = [];
  let s = Math.round(ms / 1000);
  for (const [unit, size] of [
    ['d', 86_400],
    ['h', 3_600],
    ['m', 60],
    ['s', 1],
  ] as const) {
    if (s >= size) {
      parts.push(`${Math.floor(s / size)}${unit}`);
      s %= size;
    }
  }
  return parts.slice(0, 2).join('');
}
