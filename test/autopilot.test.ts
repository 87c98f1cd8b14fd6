import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Kysely } from 'kysely';
import type { BanyanDatabase } from '../lib/schema.js';
import { listen, type Listening } from '../lib/http-server.js';
import { connect } from '../lib/database.js';
import { auditLog, latestTable, type Route } from '../routing/table/index.js';
import { runBanyanAsync } from './support/cli.js';
import { setRoutes } from './support/proxy.js';
import { startProxyProcess } from './support/proxy-process.js';
import { services, tempDir } from './support/services.js';
import { fakeBackend, type FakeBackend } from './support/upstreams.js';
import { waitUntil } from './support/wait.js';

type Proc = Awaited<ReturnType<typeof startProxyProcess>>;

/** Both backends answer the same JSON on /ap/, so shadow comparisons match; the new app can be told to fail a share. */
function sameAnswers(backend: FakeBackend, failing: { rate: number; firstAt?: number } = { rate: 0 }): void {
  backend.answer('/ap', (req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    if (failing.rate > 0 && Math.random() < failing.rate) {
      failing.firstAt ??= Date.now();
      res.writeHead(500, { 'content-type': 'text/plain', 'x-backend': backend.name });
      res.end('boom\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'x-backend': backend.name });
    res.end(JSON.stringify({ item: req.url }));
  });
}

interface Load {
  readonly results: { at: number; status: number; backend: string | null }[];
  stop(): Promise<void>;
}

/** Users on `urls` (alternating), each request a different session (so canary shares spread), until stopped. */
function load(urls: () => string[], path: string, options: { concurrency?: number; agent?: string } = {}): Load {
  const results: Load['results'] = [];
  let running = true;
  let n = 0;
  const worker = async () => {
    while (running) {
      const list = urls();
      const url = list[n++ % list.length]!;
      try {
        const res = await fetch(`${url}${path}${n}`, {
          headers: { cookie: `sid=${randomBytes(8).toString('hex')}`, 'user-agent': options.agent ?? 'autopilot-test-user' },
          signal: AbortSignal.timeout(5_000),
        });
        await res.arrayBuffer();
        results.push({ at: Date.now(), status: res.status, backend: res.headers.get('x-backend') });
      } catch {
        results.push({ at: Date.now(), status: 0, backend: null });
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  };
  const workers = Array.from({ length: options.concurrency ?? 6 }, worker);
  return {
    results,
    stop: async () => {
      running = false;
      await Promise.all(workers);
    },
  };
}

/** A receiver for the plan's webhook: every event, in order. */
async function webhookReceiver(): Promise<{ url: string; events: Record<string, unknown>[]; listening: Listening }> {
  const events: Record<string, unknown>[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => {
      body += d;
    });
    req.on('end', () => {
      events.push(JSON.parse(body) as Record<string, unknown>);
      res.end();
    });
  });
  const listening = await listen(server, 0, '127.0.0.1', 'webhook', 200);
  return { url: listening.url, events, listening };
}

describe('the cutover autopilot, against real proxy processes', function () {
  this.timeout(120_000);
  let db: Kysely<BanyanDatabase>;
  let legacy: FakeBackend;
  let app: FakeBackend;
  let env: NodeJS.ProcessEnv;
  let proxies: Proc[] = [];
  const failing = { rate: 0 } as { rate: number; firstAt?: number };
  const dir = tempDir('banyan-autopilot-');

  const route = (name: string, prefix: string, extra: Partial<Route> = {}): Route =>
    ({ name, match: { path: `${prefix}/*` }, mode: 'legacy', fallback: true, shadow: { headers: ['content-type'] }, ...extra }) as Route;
  const planFile = (name: string, plan: unknown) => {
    const file = join(dir, `${name}.json`);
    writeFileSync(file, JSON.stringify(plan));
    return file;
  };
  const banyan = (...args: string[]) => runBanyanAsync(args, { env });
  const planRow = (name: string) =>
    db.selectFrom('cutover_plans').selectAll().where('route', '=', name).orderBy('id', 'desc').executeTakeFirstOrThrow();
  const routeNow = async (name: string) => (await latestTable(db))!.routes.find((r) => r.name === name)!;
  const leaseHolder = async () =>
    (await db.selectFrom('autopilot_lease').select('holder').where('name', '=', 'autopilot').executeTakeFirst())?.holder;

  before(async () => {
    const s = await services();
    db = connect(s.primaryUrl, { max: 2, schema: 'banyan' });
    legacy = await fakeBackend('legacy');
    app = await fakeBackend('new');
    sameAnswers(legacy);
    sameAnswers(app, failing);
    await setRoutes(s, [
      route('ap_walk', '/ap/walk'),
      route('ap_bad', '/ap/bad'),
      route('ap_lease', '/ap/lease'),
      route('ap_manual', '/ap/manual'),
      route('ap_retire', '/ap/retire'),
      route('ap_used', '/ap/used'),
      route('ap_gone', '/ap/gone'),
      route('ap_gate', '/ap/gate'),
      route('ap_dry', '/ap/dry'),
    ]);
    env = {
      DATABASE_URL: s.primaryUrl,
      REDIS_URL: s.redisUrl!,
      LEGACY_URL: legacy.url,
      APP_URL: app.url,
      BANYAN_ADMIN_TOKEN: 'a'.repeat(24),
      BANYAN_SESSION_COOKIE: 'sid',
      BANYAN_AUTOPILOT_TICK: '200ms',
      BANYAN_AUTOPILOT_LEASE: '1s',
      BANYAN_USAGE_FLUSH: '200ms',
      BANYAN_ROUTES_POLL: '500ms',
    };
    proxies = [await startProxyProcess(env), await startProxyProcess(env)];
    await waitUntil(
      'one of these proxies holds the autopilot lease',
      async () => {
        const holder = await leaseHolder();
        return proxies.some((p) => holder?.includes(`/${p.child.pid}/`));
      },
      10_000,
    );
  });

  // A test that makes the new app fail also gets its one endpoint ejected for a while (outlier detection,
  // 5 failed answers in a row): the next test starts once every proxy has it back, or its canary's
  // requests would all fall back and break the next plan's fallback budget.
  beforeEach(async () => {
    failing.rate = 0;
    await waitUntil(
      'every proxy sends to the new app again',
      async () => {
        for (const p of proxies) {
          const res = await fetch(`${p.adminUrl}/api/upstreams/app`, { headers: { authorization: `Bearer ${env['BANYAN_ADMIN_TOKEN']}` } });
          const { endpoints } = (await res.json()) as { endpoints: { state: string }[] };
          if (!endpoints.every((e) => e.state === 'healthy')) return false;
        }
        return true;
      },
      20_000,
    );
  });

  after(async () => {
    for (const p of proxies) p.child.kill('SIGTERM');
    await Promise.all(proxies.map((p) => p.exited));
    await db.updateTable('cutover_plans').set({ status: 'aborted' }).where('status', 'in', ['running', 'paused']).execute();
    await Promise.all([legacy.close(), app.close()]);
    await db.destroy();
  });

  const urls = () => proxies.filter((p) => p.child.exitCode === null && p.child.signalCode === null).map((p) => p.url);

  it('walks a healthy route from shadow to new, every step a table version by the autopilot that quotes its numbers', async () => {
    const hook = await webhookReceiver();
    const file = planFile('walk', {
      steps: [
        { mode: 'shadow', hold: '1s', minComparisons: 20, maxMismatchRate: 0.05 },
        { mode: 'canary', percent: 10, hold: '1s', minRequests: 10 },
        { mode: 'canary', percent: 50, hold: '1s', minRequests: 20 },
        { mode: 'new', hold: '1s', minRequests: 20 },
      ],
      budgets: { errorRateMargin: 0.01, p95Factor: 3, p95SlackMs: 100, maxFallbackRate: 0.01, minRequests: 10, window: '3s' },
      webhook: hook.url,
    });
    const users = load(urls, '/ap/walk/');
    try {
      const started = await banyan('routes', 'promote', 'ap_walk', '--plan', file);
      expect(started.status, started.stderr).to.equal(0);
      expect(started.stdout).to.match(/^Plan \d+ \(promote\) for ap_walk: \[shadow\] → canary 10% → canary 50% → new\n/);
      await waitUntil('the plan is done', async () => (await planRow('ap_walk')).status === 'done', 40_000);
    } finally {
      await users.stop();
      await hook.listening.close();
    }
    expect((await routeNow('ap_walk')).mode).to.equal('new');
    const history = (await auditLog(db, 30)).filter((e) => e.actor === 'autopilot' && e.reason.startsWith('ap_walk:')).reverse();
    expect(history.map((e) => e.changes.join('; '))).to.deep.equal([
      'change  ap_walk: legacy → shadow',
      'change  ap_walk: shadow → canary 10% (fallback)',
      'change  ap_walk: canary 10% (fallback) → canary 50% (fallback)',
      'change  ap_walk: canary 50% (fallback) → new (fallback)',
    ]);
    expect(history[1]!.reason, history[1]!.reason).to.match(
      /step 2\/4: canary 10% \(shadow passed: [\d,]+ comparisons, 0\.00 % mismatched/,
    );
    expect(history[3]!.reason, history[3]!.reason).to.match(
      /canary 50% passed: [\d,]+ requests on the new app over \d+s, 5xx 0\.00 %, p95 [\d.]+ ms/,
    );
    expect(
      users.results.filter((r) => r.status !== 200),
      'no user saw an error',
    ).to.deep.equal([]);
    expect(hook.events.map((e) => e['event'])).to.deep.equal(['step', 'step', 'step', 'step', 'done']);
    expect(hook.events[2]).to.deep.include({
      route: 'ap_walk',
      kind: 'promote',
      status: 'running',
      step: { index: 3, of: 4, label: 'canary 50%' },
    });
    const status = await banyan('routes', 'promote', 'ap_walk', '--status');
    expect(status.stdout).to.match(/^Plan \d+ \(promote\) for ap_walk: done\n/);
  });

  it('rolls a route back to legacy when the new app answers 500 on 20 % of requests once it has 25 % of the traffic', async () => {
    const file = planFile('bad', {
      steps: [
        { mode: 'canary', percent: 5, hold: '1s', minRequests: 5 },
        { mode: 'canary', percent: 25, hold: '1m', minRequests: 10 },
        { mode: 'new', hold: '1s' },
      ],
      budgets: { errorRateMargin: 0.02, p95Factor: 3, p95SlackMs: 100, maxFallbackRate: 0.05, minRequests: 20, window: '5s' },
    });
    const users = load(urls, '/ap/bad/');
    let rolledBackAt = 0;
    try {
      expect((await banyan('routes', 'promote', 'ap_bad', '--plan', file)).status).to.equal(0);
      await waitUntil('the canary reaches 25 %', async () => (await routeNow('ap_bad')).percent === 25, 20_000);
      failing.rate = 0.2;
      await waitUntil('the plan is rolled back', async () => (await planRow('ap_bad')).status === 'rolled-back', 20_000);
      const version = (await latestTable(db))!;
      rolledBackAt = version.createdAt.getTime();
      // Every proxy follows within a second: then no user is sent to the new app on this route.
      await new Promise((r) => setTimeout(r, 1_500));
    } finally {
      await users.stop();
      failing.rate = 0;
    }
    const firstBad = failing.firstAt!;
    const bad = users.results.filter((r) => r.status >= 500);
    const lastNew = Math.max(...users.results.filter((r) => r.backend === 'new').map((r) => r.at));
    const row = await planRow('ap_bad');
    expect((await routeNow('ap_bad')).mode).to.equal('legacy');
    expect(row.reason, row.reason).to.match(
      /^rollback to legacy: the new app answered 5xx to [\d.]+ % of requests \(\d+ of \d+\) over the last \d+m?s, above legacy's 0\.00 % in the window \+ the 2\.00 % margin/,
    );
    const detect = rolledBackAt - firstBad;
    console.log(
      `      rollback: ${detect} ms from the first 500 to the rollback version; the last request the new app answered came ${lastNew - rolledBackAt} ms after it; ` +
        `${bad.length} of ${users.results.length} user requests got a 5xx`,
    );
    expect(detect, 'detected within seconds').to.be.below(5_000);
    expect(lastNew - rolledBackAt, 'every proxy stopped sending users to the new app within a second').to.be.below(1_000);
    expect(users.results.filter((r) => r.at > rolledBackAt + 1_000 && r.status !== 200)).to.deep.equal([]);
    const history = await banyan('routes', 'history', '--limit', '3');
    expect(history.stdout).to.match(/autopilot\s+autopilot promote\s+ap_bad: rollback to legacy: the new app answered 5xx/);
  });

  it('waits before a step that asks for approval, says so on --status and the webhook, and goes on after --approve with the approver recorded', async () => {
    const hook = await webhookReceiver();
    const file = planFile('gate', {
      steps: [
        { mode: 'canary', percent: 10, hold: '1s', minRequests: 5 },
        { mode: 'canary', percent: 50, hold: '1s', minRequests: 5, approve: true },
        { mode: 'new', hold: '1s', minRequests: 5 },
      ],
      budgets: { p95Factor: 3, p95SlackMs: 100, minRequests: 5, window: '3s' },
      webhook: hook.url,
    });
    const users = load(urls, '/ap/gate/');
    try {
      expect((await banyan('routes', 'promote', 'ap_gate', '--plan', file)).status).to.equal(0);
      await waitUntil('the plan waits at the gate', async () => (await planRow('ap_gate')).awaiting === 1, 20_000);
      await new Promise((r) => setTimeout(r, 1_000));
      expect((await routeNow('ap_gate')).percent, 'still on the step before the gate').to.equal(10);
      const status = await banyan('routes', 'promote', 'ap_gate', '--status');
      expect(status.stdout).to.contain('Waiting for approval before step 2 (canary 50%): banyan routes promote ap_gate --approve\n');
      expect(status.stdout).to.match(/next step: when approved \(--approve\)/);
      expect(hook.events.find((e) => e['event'] === 'waiting')).to.deep.include({
        route: 'ap_gate',
        reason: 'waiting for approval before step 2/3: canary 50% (banyan routes promote ap_gate --approve)',
        step: { index: 1, of: 3, label: 'canary 10%' },
      });
      const approved = await banyan('routes', 'promote', 'ap_gate', '--approve');
      expect(approved.status, approved.stderr).to.equal(0);
      expect(approved.stdout).to.match(/: step 2 \(canary 50%\) approved by \S+@\S+ \(cli\); the autopilot goes on/);
      await waitUntil('the plan is done', async () => (await planRow('ap_gate')).status === 'done', 30_000);
    } finally {
      await users.stop();
      await hook.listening.close();
    }
    const history = (await auditLog(db, 30)).filter((e) => e.actor === 'autopilot' && e.reason.startsWith('ap_gate:')).reverse();
    expect(history[1]!.reason).to.match(/step 2\/3: canary 50% \(canary 10% passed: .*; approved by \S+ \(cli\)\)$/);
    const status = await banyan('routes', 'promote', 'ap_gate', '--status');
    expect(status.stdout).to.match(/\nApproved: step 2 \(canary 50%\) by \S+@\S+ \(cli\) at 20\d\d-/);
  });

  it('with --dry-run, reports a broken budget as the rollback it would have been and leaves the route on its way', async () => {
    const hook = await webhookReceiver();
    const file = planFile('dry', {
      steps: [
        { mode: 'canary', percent: 25, hold: '4s', minRequests: 10 },
        { mode: 'new', hold: '1s', minRequests: 5 },
      ],
      budgets: { errorRateMargin: 0.02, p95Factor: 3, p95SlackMs: 100, maxFallbackRate: 0.05, minRequests: 10, window: '3s' },
      webhook: hook.url,
    });
    const users = load(urls, '/ap/dry/');
    try {
      const started = await banyan('routes', 'promote', 'ap_dry', '--plan', file, '--dry-run');
      expect(started.status, started.stderr).to.equal(0);
      await waitUntil('the canary is on', async () => (await routeNow('ap_dry')).mode === 'canary', 10_000);
      const notWaiting = await banyan('routes', 'promote', 'ap_dry', '--approve');
      expect(notWaiting.stderr).to.contain("ap_dry's plan is not waiting for approval");
      failing.rate = 0.3;
      await waitUntil('a dry-run verdict is recorded', async () => ((await planRow('ap_dry')).watched as unknown[]).length > 0, 20_000);
      failing.rate = 0;
      await waitUntil('the plan is done', async () => (await planRow('ap_dry')).status === 'done', 30_000);
    } finally {
      failing.rate = 0;
      await users.stop();
      await hook.listening.close();
    }
    expect((await routeNow('ap_dry')).mode, 'not rolled back').to.equal('new');
    const status = await banyan('routes', 'promote', 'ap_dry', '--status');
    const verdict = /Dry run: would have rolled back at \d\d:\d\d: .*/.exec(status.stdout)?.[0];
    expect(verdict, status.stdout).to.match(
      /^Dry run: would have rolled back at \d\d:\d\d: (the new app answered 5xx to [\d.]+ % of requests|[\d.]+ % of the new app's requests fell back)/,
    );
    console.log(`      ${verdict}`);
    expect(status.stdout).to.contain('Dry run: budgets are only watched');
    const dry = hook.events.find((e) => e['event'] === 'dry-run');
    expect(dry?.['reason']).to.match(/^would have rolled back at \d\d:\d\d: /);
    expect(hook.events.map((e) => e['event'])).to.not.include('rollback');
  });

  it('continues the plan from another proxy when the lease holder is killed, without skipping or repeating a step', async () => {
    const file = planFile('lease', {
      steps: [
        { mode: 'canary', percent: 10, hold: '1s', minRequests: 5 },
        { mode: 'canary', percent: 20, hold: '2s', minRequests: 5 },
        { mode: 'canary', percent: 30, hold: '1s', minRequests: 5 },
        { mode: 'canary', percent: 40, hold: '1s', minRequests: 5 },
        { mode: 'new', hold: '1s', minRequests: 5 },
      ],
      // This test is about the lease, not latency: a generous p95 slack, so one stall of this busy machine
      // on the few canary requests of a 3 s window cannot roll the plan back before the kill.
      budgets: { p95Factor: 3, p95SlackMs: 2_000, minRequests: 5, window: '3s' },
    });
    const users = load(urls, '/ap/lease/');
    let killed: Proc | undefined;
    try {
      expect((await banyan('routes', 'promote', 'ap_lease', '--plan', file)).status).to.equal(0);
      await waitUntil('step 2', async () => (await planRow('ap_lease')).step === 1, 20_000).catch(async (err: Error) => {
        throw new Error(`${err.message}; the plan: ${JSON.stringify(await planRow('ap_lease'))}`);
      });
      const holder = await leaseHolder();
      killed = proxies.find((p) => holder?.includes(`/${p.child.pid}/`));
      expect(killed, `the lease holder ${holder} is one of our proxies`).to.not.equal(undefined);
      killed!.child.kill('SIGKILL');
      await killed!.exited;
      const diedAt = Date.now();
      await waitUntil(
        'another proxy holds the lease',
        async () => {
          const h = await leaseHolder();
          return h !== undefined && h !== holder;
        },
        10_000,
      );
      console.log(`      lease: taken over ${Date.now() - diedAt} ms after the holder was killed (lease 1s)`);
      await waitUntil('the plan is done', async () => (await planRow('ap_lease')).status === 'done', 40_000);
    } finally {
      await users.stop();
      if (killed) proxies = [...proxies.filter((p) => p !== killed), await startProxyProcess(env)];
    }
    const history = (await auditLog(db, 40)).filter((e) => e.actor === 'autopilot' && e.reason.startsWith('ap_lease:')).reverse();
    expect(history.map((e) => e.changes.join('; '))).to.deep.equal([
      'change  ap_lease: legacy → canary 10% (fallback)',
      'change  ap_lease: canary 10% (fallback) → canary 20% (fallback)',
      'change  ap_lease: canary 20% (fallback) → canary 30% (fallback)',
      'change  ap_lease: canary 30% (fallback) → canary 40% (fallback)',
      'change  ap_lease: canary 40% (fallback) → new (fallback)',
    ]);
  });

  it('lets a manual routes set win over the autopilot, and pauses, resumes and aborts on request', async () => {
    const file = planFile('manual', {
      steps: [
        { mode: 'canary', percent: 10, hold: '1h' },
        { mode: 'new', hold: '1h' },
      ],
    });
    expect((await banyan('routes', 'promote', 'ap_manual', '--plan', file)).status).to.equal(0);
    await waitUntil('step 1 applied', async () => (await routeNow('ap_manual')).mode === 'canary', 10_000);
    const again = await banyan('routes', 'promote', 'ap_manual');
    expect([again.status, again.stderr]).to.deep.equal([
      1,
      'banyan: ap_manual already has a plan under way (see banyan routes promote ap_manual --status; stop it with --abort first)\n',
    ]);
    expect((await banyan('routes', 'promote', 'ap_manual', '--pause')).stdout).to.contain('is paused');
    const status = await banyan('routes', 'promote', 'ap_manual', '--status');
    expect(status.stdout).to.match(/: paused\nSteps: \[canary 10%\] → new\n/);
    expect((await banyan('routes', 'promote', 'ap_manual', '--resume')).stdout).to.contain('runs again');
    const running = await banyan('routes', 'promote', 'ap_manual', '--status');
    expect(running.stdout).to.match(/On step 1 of 2 \(canary 10%\) for \d+(ms|s); next step: \d+[hm]/);
    expect(running.stdout).to.match(/time on step\s+\S+\s+≥ 1h\s+not yet/);
    const set = await banyan('routes', 'set', 'ap_manual', '--mode', 'legacy', '--reason', 'operator says no');
    expect(set.status, set.stderr).to.equal(0);
    await waitUntil('the plan is overridden', async () => (await planRow('ap_manual')).status === 'overridden', 10_000);
    expect((await planRow('ap_manual')).reason).to.match(/changed outside the plan .*operator says no\); a manual change wins/);
    await new Promise((r) => setTimeout(r, 600));
    expect((await routeNow('ap_manual')).mode, 'the autopilot did not put it back').to.equal('legacy');

    expect((await banyan('routes', 'promote', 'ap_manual', '--plan', file)).status).to.equal(0);
    await waitUntil('step 1 applied again', async () => (await routeNow('ap_manual')).mode === 'canary', 10_000);
    const aborted = await banyan('routes', 'promote', 'ap_manual', '--abort');
    expect(aborted.stdout).to.match(/is aborted; the route is back as it was before the plan \(table version \d+\)/);
    expect((await routeNow('ap_manual')).mode).to.equal('legacy');
  });

  it('refuses a bad plan with the field named, and a retirement of a route still in use', async () => {
    const bad = await banyan(
      'routes',
      'promote',
      'ap_walk',
      '--plan',
      planFile('badplan', { steps: [{ mode: 'canary', percent: 150, hold: 'soon' }] }),
    );
    expect(bad.status).to.equal(1);
    expect(bad.stderr).to.contain('steps[0].percent: must be a number above 0 and below 100, not 150');
    expect(bad.stderr).to.contain('steps[0].hold: must be a duration such as "30s", "10m" or "1d", not "soon"');
    expect(bad.stderr).to.contain('steps: the last step must be {"mode": "new", …}');
    const retireDry = await banyan('routes', 'retire', 'ap_walk', '--dry-run');
    expect(retireDry.stderr).to.contain('--dry-run is for promotions');
    const missing = await banyan('routes', 'promote', 'ap_walk', '--plan', join(dir, 'no-such-plan.json'));
    expect([missing.status, missing.stderr]).to.deep.equal([
      1,
      `banyan: plan file ${join(dir, 'no-such-plan.json')} does not exist ` +
        '(write one as README.md shows ("Cutover on autopilot"), or leave --plan out for the default plan)\n',
    ]);

    const users = load(urls, '/ap/used/', { agent: 'nightly-mirror/2.1' });
    await new Promise((r) => setTimeout(r, 500));
    await users.stop();
    await waitUntil(
      'the usage ledger has the calls',
      async () =>
        Number(
          (
            await db
              .selectFrom('usage_ledger')
              .select((eb) => eb.fn.sum<string>('requests').as('n'))
              .where('route', '=', 'ap_used')
              .executeTakeFirst()
          )?.n ?? 0,
        ) > 0,
      5_000,
    );
    const inUse = await banyan('routes', 'retire', 'ap_used', '--plan', planFile('used', { unused: { for: '1h' }, brownouts: ['1s'] }));
    expect(inUse.status).to.equal(1);
    expect(inUse.stderr).to.match(
      /ap_used served [\d,]+ requests in the last 1h \(the plan allows 0\); top user agents: "nightly-mirror\/2\.1" \([\d,]+\)/,
    );
    expect(await db.selectFrom('cutover_plans').select('id').where('route', '=', 'ap_used').execute()).to.deep.equal([]);
  });

  it('stops a retirement when real traffic shows up during a brownout, naming who called', async () => {
    const file = planFile('retire', {
      unused: { for: '1h' },
      brownouts: ['3s', '5s'],
      gap: '1s',
      retired: { status: 410, message: 'Gone: use /ap/walk/ instead.' },
    });
    expect((await banyan('routes', 'retire', 'ap_retire', '--plan', file)).status).to.equal(0);
    await waitUntil('the first brownout is on', async () => ((await routeNow('ap_retire')).brownouts?.length ?? 0) > 0, 10_000);
    // A C1 control (CSI: an ANSI escape to many terminals) passes HTTP as obs-text; the operator's message shows it escaped.
    const answer = await fetch(`${urls()[0]}/ap/retire/x`, { headers: { 'user-agent': 'old-cron-job/0.9 \x9b2J' } });
    expect([answer.status, await answer.text()]).to.deep.equal([410, 'Gone: use /ap/walk/ instead.\n']);
    await waitUntil('the retirement stops', async () => (await planRow('ap_retire')).status === 'stopped', 10_000);
    expect((await planRow('ap_retire')).reason).to.match(
      /^stopped, back to legacy: 1 requests came in during brownout 1 of 2 \(3s\) \(the plan allows 0\): someone still uses this route; top user agents: "old-cron-job\/0\.9 \\x9b2J" \(1\)/,
    );
    const back = await routeNow('ap_retire');
    expect([back.mode, back.brownouts]).to.deep.equal(['legacy', undefined]);
    expect((await fetch(`${urls()[0]}/ap/retire/y`)).status, 'served by legacy again').to.equal(200);
  });

  it('retires an unused route after brownouts of growing length', async () => {
    const file = planFile('gone', { unused: { for: '1h' }, brownouts: ['500ms', '1s'], gap: '300ms' });
    const started = await banyan('routes', 'retire', 'ap_gone', '--plan', file);
    expect(started.stdout).to.match(
      /^Plan \d+ \(retire\) for ap_gone: \[brownout 1 of 2 \(500ms\)\] → gap after brownout 1 → brownout 2 of 2 \(1s\) → gap after brownout 2 → retired\n/,
    );
    await waitUntil('the route is retired', async () => (await planRow('ap_gone')).status === 'done', 15_000);
    expect((await routeNow('ap_gone')).mode).to.equal('retired');
    const history = (await auditLog(db, 40)).filter((e) => e.actor === 'autopilot' && e.reason.startsWith('ap_gone:')).reverse();
    expect(history.map((e) => e.reason.replace(/^ap_gone: /, '').replace(/ \(.*$/, ''))).to.deep.equal([
      'step 1/5: brownout 1 of 2',
      'step 2/5: gap after brownout 1',
      'step 3/5: brownout 2 of 2',
      'step 4/5: gap after brownout 2',
      'step 5/5: retired',
    ]);
    expect((await fetch(`${urls()[0]}/ap/gone/x`)).status).to.equal(410);
  });
});
