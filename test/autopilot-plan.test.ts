import { expect } from 'chai';
import type { Evidence, Side } from '../autopilot/evidence.js';
import { percentile } from '../autopilot/evidence.js';
import { judge } from '../autopilot/judge.js';
import { DEFAULT_PROMOTE_PLAN, DEFAULT_RETIRE_PLAN, stepsOf, validatePromotePlan, validateRetirePlan } from '../autopilot/plan-file.js';
import { firstStep, routeForStep } from '../autopilot/plan-store.js';
import { canonical } from '../lib/canonical-json.js';
import { type Route, validateTable } from '../routing/table/index.js';

const side = (requests: number, errors = 0, p95Ms: number | undefined = 5, fallbacks = 0): Side => ({
  requests,
  errors,
  fallbacks,
  errorRate: requests ? errors / requests : 0,
  fallbackRate: requests + fallbacks ? fallbacks / (requests + fallbacks) : 0,
  p95Ms,
});
const evidence = (legacy: Side, fresh: Side, comparisons = { matches: 0, mismatches: 0 }, proxy = side(0)): Evidence => ({
  legacy,
  new: fresh,
  proxy: { ...proxy, agents: [] },
  comparisons: {
    ...comparisons,
    mismatchRate:
      comparisons.matches + comparisons.mismatches ? comparisons.mismatches / (comparisons.matches + comparisons.mismatches) : 0,
  },
});
const all = (e: Evidence) => ({ step: e, window: e, plan: e });

describe('cutover plans', () => {
  it('accepts the default plans and expands them into steps', () => {
    expect(stepsOf(validatePromotePlan(DEFAULT_PROMOTE_PLAN)).map((s) => s.label)).to.deep.equal([
      'shadow',
      'canary 1%',
      'canary 5%',
      'canary 25%',
      'canary 50%',
      'new',
    ]);
    expect(stepsOf(validateRetirePlan(DEFAULT_RETIRE_PLAN)).map((s) => s.label)).to.deep.equal([
      'brownout 1 of 3 (10m)',
      'gap after brownout 1',
      'brownout 2 of 3 (1h)',
      'gap after brownout 2',
      'brownout 3 of 3 (1d)',
      'gap after brownout 3',
      'retired',
    ]);
  });

  it('refuses a bad plan, naming every field that is wrong', () => {
    const refuse = (plan: unknown) => {
      try {
        validatePromotePlan(plan);
        return [];
      } catch (err) {
        return (err as Error).message.split('\n  ').slice(1);
      }
    };
    expect(
      refuse({
        steps: [
          { mode: 'canary', percent: 50, hold: '1m' },
          { mode: 'canary', percent: 20, hold: '1m' },
          { mode: 'shadow', hold: '1m' },
          { mode: 'new', hold: '1m' },
        ],
      }),
    ).to.deep.equal([
      "steps[1].percent: must be above the step before's 50",
      'steps[2].mode: shadow cannot come after canary: a promotion only moves towards new',
    ]);
    expect(
      refuse({ steps: [{ mode: 'new', hold: '1m' }], budgets: { p95Factor: 0.5, window: 'a while', extra: 1 }, webhook: 'ftp://x' }),
    ).to.deep.equal([
      'budgets.extra: unknown field (known: errorRateMargin, p95Factor, p95SlackMs, maxFallbackRate, minRequests, window, dryRun)',
      'budgets.p95Factor: must be a factor of at least 1, not 0.5',
      'budgets.window: must be a duration such as "30s", "10m" or "1d", not "a while"',
      'webhook: must be an http:// or https:// URL, not "ftp://x"',
    ]);
    expect(() => validatePromotePlan([])).to.throw('the plan must be a JSON object with "steps"');
    expect(
      refuse({
        steps: [
          { mode: 'canary', percent: 5, hold: '1m', approve: 'yes' },
          { mode: 'new', hold: '1m', budgets: { dryRun: ['p99'] } },
        ],
        dryRun: 1,
      }),
    ).to.deep.equal([
      'dryRun: must be true or false, not 1',
      'steps[0].approve: must be true or false, not "yes"',
      'steps[1].budgets.dryRun: must be true, false or a list of budgets (errorRate, p95, fallbackRate, mismatchRate), not ["p99"]',
    ]);
    expect(refuse({ steps: [{ mode: 'new', hold: '1m', budgets: { dryRun: false } }], dryRun: true })).to.deep.equal([
      'steps[0].budgets.dryRun: a dry-run plan watches every budget; leave dryRun out here',
    ]);
    const gated = validatePromotePlan({
      steps: [
        { mode: 'canary', percent: 25, hold: '1m', approve: true },
        { mode: 'new', hold: '1m', budgets: { dryRun: ['p95'] } },
      ],
    });
    expect(gated.steps.map((s) => [s.approve, s.budgets.dryRun])).to.deep.equal([
      [true, []],
      [false, ['p95']],
    ]);
    expect(validatePromotePlan({ steps: [{ mode: 'new', hold: '1m' }], dryRun: true }).steps[0]!.budgets.dryRun).to.have.length(4);
    expect(() => validateRetirePlan({ brownouts: [], retired: { status: 200 } })).to.throw(
      /brownouts: must be a list of at least one duration[\s\S]*retired\.status: must be a 4xx or 5xx status, not 200/,
    );
  });

  it('starts a promotion at the first step not behind the route, and refuses what cannot be promoted or retired', () => {
    const plan = validatePromotePlan(DEFAULT_PROMOTE_PLAN);
    const route = (extra: Partial<Route>) => ({ name: 'r', match: { path: '/r' }, mode: 'legacy', ...extra }) as Route;
    expect(firstStep(plan, route({}))).to.equal(0);
    expect(firstStep(plan, route({ mode: 'canary', percent: 10 }))).to.equal(3);
    expect(() => firstStep(plan, route({ mode: 'new' }))).to.throw('r is already new; there is nothing to promote');
    expect(() => firstStep(validateRetirePlan(DEFAULT_RETIRE_PLAN), route({ mode: 'canary', percent: 5 }))).to.throw(
      'r is canary; only a route served by legacy',
    );
  });

  it('writes each step as a valid route: a brownout window from now, a gap without it, then retired', () => {
    const plan = validateRetirePlan({ brownouts: ['10m'], gap: '1h', retired: { status: 410, message: 'Gone.' } });
    const [brownout, gap, retired] = stepsOf(plan);
    const route = { name: 'r', match: { path: '/r' }, mode: 'legacy' } as Route;
    const now = Date.parse('2026-12-01T10:00:00Z');
    const during = routeForStep(plan, brownout!, route, now);
    expect(during).to.deep.equal({
      ...route,
      retired: { status: 410, message: 'Gone.' },
      brownouts: [{ start: '2026-12-01T10:00:00.000Z', end: '2026-12-01T10:10:00.000Z' }],
    });
    const after = routeForStep(plan, gap!, during, now);
    expect(canonical(after)).to.equal(canonical(route));
    const done = routeForStep(plan, retired!, after, now);
    for (const r of [during, after, done]) expect(validateTable([r]).ok, JSON.stringify(r)).to.equal(true);
    expect(done).to.deep.equal({ ...route, mode: 'retired', retired: { status: 410, message: 'Gone.' } });
  });

  it("reads the 95th percentile from a histogram as its bucket's upper bound", () => {
    expect(percentile([0, 0, 0], 0.95)).to.equal(undefined);
    expect(percentile([90, 5, 5], 0.95)).to.equal(2);
    expect(percentile([94, 0, 0, 6], 0.95)).to.equal(5);
  });
});

describe("the autopilot's verdict on a step", () => {
  const plan = validatePromotePlan({
    steps: [
      { mode: 'shadow', hold: '1m', minComparisons: 100, maxMismatchRate: 0.01 },
      { mode: 'canary', percent: 25, hold: '1m', minRequests: 100 },
      { mode: 'new', hold: '1m' },
    ],
    budgets: { errorRateMargin: 0.01, p95Factor: 1.5, p95SlackMs: 5, maxFallbackRate: 0.02, minRequests: 50 },
  });
  const [shadow, canary] = stepsOf(plan);

  it('moves on only when the hold is over and the evidence is in', () => {
    expect(judge(plan, canary!, 30_000, all(evidence(side(500), side(200)))).action).to.equal('wait');
    expect(judge(plan, canary!, 61_000, all(evidence(side(500), side(80)))).action).to.equal('hold');
    const go = judge(plan, canary!, 61_000, all(evidence(side(500), side(200))));
    expect(go.action).to.equal('advance');
    expect(go.reason).to.equal(
      'canary 25% passed: 200 requests on the new app over 1m1s, 5xx 0.00 %, p95 5 ms, fallbacks 0.00 %; legacy 5xx 0.00 %, p95 5 ms',
    );
  });

  it('rolls back on a broken budget at once, whatever the hold, judged against legacy on the same window', () => {
    const errors = judge(plan, canary!, 5_000, all(evidence(side(500, 10), side(100, 3))));
    expect(errors.action, 'legacy 2 % + 1 % margin allows 3 %').to.equal('wait');
    const worse = judge(plan, canary!, 5_000, all(evidence(side(500, 10), side(100, 5))));
    expect(worse.action).to.equal('rollback');
    expect(worse.reason).to.equal(
      "the new app answered 5xx to 5.00 % of requests (5 of 100) over the last 5s, above legacy's 2.00 % in the window + the 1.00 % margin",
    );
    const slow = judge(plan, canary!, 5_000, all(evidence(side(500, 0, 10), side(100, 0, 30))));
    expect(slow.reason).to.equal("the new app's p95 latency is 30 ms over the last 5s, above legacy's 10 ms in the window × 1.5 + 5 ms");
    const fallbacks = judge(plan, canary!, 5_000, all(evidence(side(500), side(95, 0, 5, 5))));
    expect([fallbacks.action, fallbacks.reason]).to.deep.equal([
      'rollback',
      "5.00 % of the new app's requests fell back (5 of 100) over the last 5s, above the plan's 2.00 %",
    ]);
    expect(judge(plan, canary!, 5_000, all(evidence(side(500), side(40, 40)))).action, 'no verdict on 40 requests').to.equal('wait');
  });

  it('judges shadow on comparisons, noise aside', () => {
    expect(judge(plan, shadow!, 61_000, all(evidence(side(0), side(0), { matches: 99, mismatches: 1 }))).action).to.equal('advance');
    const bad = judge(plan, shadow!, 1_000, all(evidence(side(0), side(0), { matches: 95, mismatches: 5 })));
    expect([bad.action, bad.reason]).to.deep.equal([
      'rollback',
      "shadow: 5 of 100 comparisons differ (5.00 %), above the plan's 1.00 %; see banyan routes shadow",
    ]);
    expect(judge(plan, shadow!, 61_000, all(evidence(side(0), side(0), { matches: 50, mismatches: 0 }))).action).to.equal('hold');
  });
});

describe('dry-run budgets', () => {
  const raw = {
    steps: [
      { mode: 'shadow', hold: '1m', minComparisons: 100, maxMismatchRate: 0.01 },
      { mode: 'canary', percent: 25, hold: '1m', minRequests: 100 },
      { mode: 'new', hold: '1m' },
    ],
    budgets: { errorRateMargin: 0.01, p95Factor: 1.5, p95SlackMs: 5, maxFallbackRate: 0.02, minRequests: 50 },
  };

  it('report a broken budget as the rollback it would have been, and let the step go on', () => {
    const [, canary] = stepsOf(validatePromotePlan({ ...raw, dryRun: true }));
    const slow = judge(validatePromotePlan({ ...raw, dryRun: true }), canary!, 61_000, all(evidence(side(500, 0, 120), side(200, 0, 412))));
    expect(slow.action).to.equal('advance');
    expect(slow.watched).to.deep.equal([
      {
        check: 'new p95 latency',
        reason: "the new app's p95 latency is 412 ms over the last 1m1s, above legacy's 120 ms in the window × 1.5 + 5 ms",
      },
    ]);
    expect(slow.checks.find((c) => c.name === 'new p95 latency')).to.include({ ok: false, dryRun: true });
    const [shadow] = stepsOf(validatePromotePlan({ ...raw, dryRun: true }));
    const differ = judge(
      validatePromotePlan({ ...raw, dryRun: true }),
      shadow!,
      1_000,
      all(evidence(side(0), side(0), { matches: 50, mismatches: 50 })),
    );
    expect([differ.action, differ.watched.map((w) => w.check)]).to.deep.equal(['wait', ['mismatch rate (noise aside)']]);
  });

  it('watch only the budgets named; the others still roll back', () => {
    const plan = validatePromotePlan({ ...raw, budgets: { ...raw.budgets, dryRun: ['p95'] } });
    const [, canary] = stepsOf(plan);
    const both = judge(plan, canary!, 5_000, all(evidence(side(500, 0, 10), side(100, 10, 30))));
    expect(both.action).to.equal('rollback');
    expect(both.reason).to.match(/^the new app answered 5xx to 10\.0 %/);
    expect(both.watched.map((w) => w.check)).to.deep.equal(['new p95 latency']);
    const slowOnly = judge(plan, canary!, 5_000, all(evidence(side(500, 0, 10), side(100, 0, 30))));
    expect([slowOnly.action, slowOnly.watched.length]).to.deep.equal(['wait', 1]);
    const acting = validatePromotePlan(raw);
    expect(judge(acting, stepsOf(acting)[1]!, 5_000, all(evidence(side(500, 0, 10), side(100, 0, 30)))).action, 'without dryRun').to.equal(
      'rollback',
    );
  });
});

describe('PromQL checks in a plan', () => {
  const steps = [
    { mode: 'canary', percent: 25, hold: '1m', minRequests: 100 },
    { mode: 'new', hold: '1m' },
  ];
  const budgets = { minRequests: 50 };
  const q = 'sum(rate(banyan_http_requests_total{route="{route}",service="{service}",status_class="5xx"}[{window}]))';

  it('refuses a check without a name, a query, a threshold, or with a placeholder it cannot fill, naming the field', () => {
    const refuse = (checks: unknown) => {
      try {
        validatePromotePlan({ steps, checks });
        return [];
      } catch (err) {
        return (err as Error).message.split('\n  ').slice(1);
      }
    };
    expect(refuse({})).to.deep.equal(['checks: must be a list such as [{"name": "p99", "query": "…", "max": 0.5}]']);
    expect(
      refuse([
        { query: q, max: 1 },
        { name: 'a', query: 'up{job="{job}"}', max: 1 },
        { name: 'a', query: q },
        { name: 'b', query: 'up', against: 'legacy', max: 2 },
        { name: 'c', query: q, against: 'stable', factor: 0 },
        { name: 'd', query: q, max: 'high', margin: 1, dryRun: 'no', extra: 1 },
      ]),
    ).to.deep.equal([
      'checks[0].name: must be a non-empty text',
      'checks[1].query: {job} is not filled in (known: {route}, {service}, {window})',
      'checks[2].name: "a" is the name of another check',
      'checks[2]: needs a threshold ("max" or "min") or "against": "legacy"',
      'checks[3].query: a check against legacy must use {service}, so the same query runs for each side',
      'checks[3]: a check gives a threshold (max, min) or a comparison against legacy (factor, margin), not both',
      'checks[4].against: must be "legacy", not "stable"',
      'checks[4]: needs a threshold ("max" or "min") or "against": "legacy"',
      'checks[4]: factor and margin are for a check "against": "legacy"',
      'checks[4].factor: must be a factor above 0, not 0',
      'checks[5].extra: unknown field (known: name, query, max, min, against, factor, margin, dryRun)',
      'checks[5].max: must be a number, not "high"',
      'checks[5]: factor and margin are for a check "against": "legacy"',
      'checks[5].dryRun: must be true or false, not "no"',
    ]);
    const plan = validatePromotePlan({ steps, checks: [{ name: 'errors', query: q, against: 'legacy', factor: 1.5 }], dryRun: true });
    expect(plan.checks).to.deep.equal([{ name: 'errors', query: q, against: 'legacy', factor: 1.5, margin: 0, dryRun: true }]);
  });

  const planWith = (checks: unknown[]) => validatePromotePlan({ steps, budgets, checks });
  const judged = (checks: unknown[], queries: { name: string; value?: number; legacy?: number; problem?: string }[], elapsed = 61_000) => {
    const plan = planWith(checks);
    return judge(plan, stepsOf(plan)[0]!, elapsed, { ...all(evidence(side(500), side(200))), queries });
  };

  it("passes a step on checks within their threshold or legacy's number, and rolls back on one broken", () => {
    const threshold = [{ name: 'p99', query: q, max: 0.5 }];
    expect(judged(threshold, [{ name: 'p99', value: 0.2 }]).action).to.equal('advance');
    const slow = judged(threshold, [{ name: 'p99', value: 0.8 }], 5_000);
    expect([slow.action, slow.reason]).to.deep.equal(['rollback', 'check "p99" is 0.8, above its max 0.5 over the last 5s']);
    expect(judged([{ name: 'rps', query: q, min: 10 }], [{ name: 'rps', value: 2 }]).reason).to.equal(
      'check "rps" is 2, below its min 10 over the last 1m1s',
    );
    const vs = [{ name: 'errors', query: q, against: 'legacy', factor: 2, margin: 0.01 }];
    expect(judged(vs, [{ name: 'errors', value: 0.05, legacy: 0.02 }]).action, '0.05 ≤ 0.02 × 2 + 0.01').to.equal('advance');
    const worse = judged(vs, [{ name: 'errors', value: 0.06, legacy: 0.02 }]);
    expect([worse.action, worse.reason]).to.deep.equal([
      'rollback',
      'check "errors" is 0.06 against legacy\'s 0.02 (at most × 2 + 0.01) over the last 1m1s',
    ]);
    expect(worse.checks.at(-1)).to.deep.include({
      name: 'check errors',
      value: '0.06',
      limit: '≤ 0.05 (legacy 0.02 × 2 + 0.01)',
      ok: false,
    });
    const watched = judged([{ ...vs[0], dryRun: true }], [{ name: 'errors', value: 0.06, legacy: 0.02 }]);
    expect([watched.action, watched.watched.map((w) => w.check)]).to.deep.equal(['advance', ['check errors']]);
  });

  it('holds the step, never passes it, when a check cannot be evaluated', () => {
    const down = judged(
      [{ name: 'p99', query: q, max: 0.5 }],
      [{ name: 'p99', problem: 'Prometheus at http://127.0.0.1:1 did not answer (fetch failed)' }],
    );
    expect([down.action, down.reason]).to.deep.equal([
      'hold',
      'held on canary 25%: check "p99" cannot be evaluated: Prometheus at http://127.0.0.1:1 did not answer (fetch failed); ' +
        'a check that cannot be evaluated never passes a step',
    ]);
    expect(judged([{ name: 'p99', query: q, max: 0.5 }], []).action, 'not run').to.equal('hold');
    expect(
      judged([{ name: 'e', query: q, against: 'legacy' }], [{ name: 'e', value: 1, problem: "legacy's side: no data" }]).action,
    ).to.equal('hold');
    expect(
      judged([{ name: 'p99', query: q, max: 0.5, dryRun: true }], [{ name: 'p99', problem: 'no data' }]).action,
      'a watched check does not block',
    ).to.equal('advance');
  });
});
