import { expect } from 'chai';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROMETHEUS_BIN } from '../stack/prometheus-server.js';
import { addUploader, runBanyanAsync, startStack, type StartedStack } from './support/cli.js';
import { browsers, CHROME_WINDOWS } from './support/browsers.js';
import { uploadWheel } from './support/packages.js';
import { tempDir } from './support/services.js';
import { waitUntil } from './support/wait.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The download page cut over by the autopilot on `npm start --prometheus`, as
 * an operator does it: a plan whose PromQL check is judged on the real
 * Prometheus scraping the stack, and a gate before `new` that waits for a
 * person's --approve.
 */
describe('the autopilot on npm start --prometheus: a PromQL check and a gate on the download page', function () {
  this.timeout(120_000);
  let cwd: string;
  let stack: StartedStack;
  let proxy: string;
  const project = `ap-journey-${process.pid}`;
  const banyan = (...args: string[]) => runBanyanAsync(args, { cwd });

  before(async function () {
    if (!existsSync(PROMETHEUS_BIN)) {
      console.log(`      (skipped: ${PROMETHEUS_BIN} is not installed; apt-get install prometheus, as .ci/run does)`);
      this.skip();
    }
    cwd = tempDir('banyan-ap-journey-');
    stack = await startStack(cwd, ['--prometheus'], {
      BANYAN_AUTOPILOT_TICK: '250ms',
      BANYAN_AUTOPILOT_LEASE: '1s',
      BANYAN_DEBUG_HEADERS: 'on',
    });
    proxy = stack.stack.proxy;
    expect(stack.stack.prometheus, 'stack.json says where Prometheus is').to.match(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(stack.output()).to.match(/Prometheus\s+http:\/\/127\.0\.0\.1:\d+ {2}\(scrapes the proxy, the app and files/);
    const token = addUploader(cwd, 'apj');
    await uploadWheel(proxy, token, project, '1.0');
    await waitUntil('the page is there', async () => (await fetch(`${proxy}/project/${project}/`)).status === 200, 10_000);
  });

  after(async function () {
    this.timeout(60_000);
    if (stack) {
      const code = await Promise.race([stack.stop('SIGTERM'), sleep(45_000).then(() => 'timeout' as const)]);
      expect(code, `SIGTERM stops the stack:\n${stack.output().slice(-3_000)}`).to.equal(0);
      expect(stack.output()).to.contain('stopping Prometheus');
    }
    if (cwd) rmSync(cwd, { recursive: true, force: true });
  });

  const pageVisitors = () => browsers(`${proxy}/project/${project}/`, readFileSync(join(cwd, '.banyan', 'secret'), 'utf8').trim());

  it('judges the canary on a PromQL check against legacy, waits at the gate before new, and completes after --approve', async () => {
    const plan = join(cwd, 'page-plan.json');
    const p95 =
      'histogram_quantile(0.95, sum by (le) (rate(banyan_http_request_duration_seconds_bucket{route="{route}",service="{service}"}[{window}])))';
    writeFileSync(
      plan,
      JSON.stringify({
        steps: [
          { mode: 'canary', percent: 50, hold: '4s', minRequests: 20 },
          { mode: 'new', hold: '3s', minRequests: 20, approve: true },
        ],
        budgets: { errorRateMargin: 0.02, p95Factor: 5, p95SlackMs: 200, maxFallbackRate: 0.05, minRequests: 10, window: '10s' },
        checks: [{ name: 'p95 against legacy', query: p95, against: 'legacy', factor: 5, margin: 0.25 }],
      }),
    );
    const users = pageVisitors();
    try {
      // Prometheus frozen (SIGSTOP: it answers nothing) while the canary runs: the check cannot be evaluated, so the step holds.
      const prometheusPid = stack.current().pids!['prometheus']!;
      process.kill(prometheusPid, 'SIGSTOP');
      let held = '';
      let last = '';
      try {
        const started = await banyan('routes', 'promote', 'project.page', '--plan', plan);
        expect(started.status, started.stderr).to.equal(0);
        await waitUntil(
          'the canary is held: the check cannot be evaluated',
          async () => {
            const row = (await banyan('routes', 'promote', 'project.page', '--status')).stdout;
            held = /check p95 against legacy .*/.exec(row)?.[0] ?? row;
            last = row;
            return (
              /\nOn step 1 of 2 \(canary 50%\) for /.test(row) &&
              /next step: when the evidence is in/.test(row) &&
              held.includes('did not answer')
            );
          },
          40_000,
        ).catch((err: Error) => {
          throw new Error(`${err.message}; --status said:\n${last}`);
        });
      } finally {
        process.kill(prometheusPid, 'SIGCONT');
      }
      expect(last).to.match(
        /\nNow: held on canary 50%: check "p95 against legacy" cannot be evaluated: Prometheus at \S+ did not answer \(.*\); a check that cannot be evaluated never passes a step\n/,
      );
      expect(held).to.match(
        /^check p95 against legacy\s+cannot be evaluated: Prometheus at http:\/\/127\.0\.0\.1:\d+ did not answer \(.*\)\s+≤ legacy n\/a × 5 \+ 0\.25\s+not judged yet$/,
      );
      console.log(`      ${held.replace(/\s{2,}/g, ' | ')}`);
      await waitUntil(
        'the plan waits at the gate before new',
        async () => {
          last = (await banyan('routes', 'promote', 'project.page', '--status')).stdout;
          expect(last, last).to.not.match(/: rolled-back\n/);
          return last.includes('Waiting for approval before step 2 (new)');
        },
        60_000,
      ).catch((err: Error) => {
        throw new Error(`${err.message}; --status said:\n${last}\nserved: ${JSON.stringify([...users.served])}`);
      });
      const waiting = await banyan('routes', 'promote', 'project.page', '--status');
      // The check was judged on Prometheus's numbers: a live value, not "cannot be evaluated".
      expect(waiting.stdout, waiting.stdout).to.match(/check p95 against legacy\s+[\d.]+\s+≤ [\d.]+ \(legacy [\d.]+ × 5 \+ 0\.25\)\s+ok/);
      console.log(`      ${/check p95 against legacy.*/.exec(waiting.stdout)![0].replace(/\s{2,}/g, ' | ')}`);
      await sleep(1_500);
      const route = JSON.parse((await banyan('routes', 'show', 'project.page', '--json')).stdout) as { mode: string; percent?: number };
      expect([route.mode, route.percent], 'the gate holds the route on the canary').to.deep.equal(['canary', 50]);
      const approved = await banyan('routes', 'promote', 'project.page', '--approve');
      expect(approved.status, approved.stderr).to.equal(0);
      await waitUntil(
        'the plan is done',
        async () => /: done\n/.test((await banyan('routes', 'promote', 'project.page', '--status')).stdout),
        40_000,
      );
    } finally {
      await users.stop();
    }
    const done = await banyan('routes', 'promote', 'project.page', '--status');
    expect(done.stdout).to.match(/\nApproved: step 2 \(new\) by \S+ \(cli\) at /);
    const history = await banyan('routes', 'history', '--limit', '3');
    expect(history.stdout).to.match(/project\.page: step 2\/2: new \(canary 50% passed: .*approved by/);
    expect(users.served.get('error') ?? 0, JSON.stringify([...users.served])).to.equal(0);
    expect(
      [...users.served.keys()].filter((k) => !k.startsWith('200 ')),
      'every visitor got the page',
    ).to.deep.equal([]);
    const after = await fetch(`${proxy}/project/${project}/`, { headers: { 'user-agent': CHROME_WINDOWS } });
    expect(after.headers.get('banyan-route')).to.match(/backend=new/);
  });
});
