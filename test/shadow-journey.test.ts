import { expect } from 'chai';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { browsers, CHROME_WINDOWS } from './support/browsers.js';
import { addUploader, runBanyanAsync, startStack, stopStack, type StartedStack } from './support/cli.js';
import { uploadWheel } from './support/packages.js';
import { tempDir } from './support/services.js';
import { waitUntil } from './support/wait.js';

const CHROME_LINUX = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36';

/**
 * The download page cut over on `npm start` with the shipped routes.json,
 * whose shadow compares the legacy and new pages by the file they offer,
 * the version and the file list: a short plan reaches `new` while both
 * pages say the same, and rolls back at the shadow step once the new page
 * offers a Windows visitor another file than legacy's.
 */
describe('the download page shadowed on npm start: pages compared by what they offer', function () {
  this.timeout(180_000);
  let cwd: string;
  let stack: StartedStack;
  let proxy: string;
  let token: string;
  let plan: string;
  const project = `shadow-journey-${process.pid}`;
  const dist = project.replace(/-/g, '_');
  const banyan = (...args: string[]) => runBanyanAsync(args, { cwd });
  const status = async () => (await banyan('routes', 'promote', 'project.page', '--status')).stdout;
  const visitors = () => browsers(`${proxy}/project/${project}/`, readFileSync(join(cwd, '.banyan', 'secret'), 'utf8').trim());
  /** What a page offers a Windows visitor: its download link's file. */
  const offered = async (base: string) => {
    const html = await (await fetch(`${base}/project/${project}/`, { headers: { 'user-agent': CHROME_WINDOWS } })).text();
    return /id="download"[^>]*href="[^"]*\/([^/"#]+)(?:#[^"]*)?"/.exec(html)?.[1];
  };

  before(async function () {
    cwd = tempDir('banyan-shadow-journey-');
    stack = await startStack(cwd, [], { BANYAN_AUTOPILOT_TICK: '250ms', BANYAN_AUTOPILOT_LEASE: '1s' });
    proxy = stack.stack.proxy;
    token = addUploader(cwd, 'shj');
    await uploadWheel(proxy, token, project, '1.0');
    await waitUntil('the page is there', async () => (await fetch(`${proxy}/project/${project}/`)).status === 200, 10_000);
    plan = join(cwd, 'page-plan.json');
    writeFileSync(
      plan,
      JSON.stringify({
        steps: [
          { mode: 'shadow', hold: '4s', minComparisons: 20, maxMismatchRate: 0.05 },
          { mode: 'canary', percent: 50, hold: '3s', minRequests: 20 },
          { mode: 'new', hold: '3s', minRequests: 20 },
        ],
        budgets: { errorRateMargin: 0.02, p95Factor: 5, p95SlackMs: 200, maxFallbackRate: 0.05, minRequests: 10, window: '10s' },
      }),
    );
  });

  after(async function () {
    this.timeout(60_000);
    await stopStack(stack, cwd);
  });

  /** Runs the plan (with `extra` flags) under browser traffic until it ends; its last --status. */
  async function promote(extra: string[] = []): Promise<string> {
    const users = visitors();
    let last = '';
    try {
      const started = await banyan('routes', 'promote', 'project.page', '--plan', plan, ...extra);
      expect(started.status, started.stderr).to.equal(0);
      await waitUntil('the plan ends', async () => /: (done|rolled-back)\n/.test((last = await status())), 90_000).catch((err: Error) => {
        throw new Error(`${err.message}; --status said:\n${last}`);
      });
    } finally {
      await users.stop();
    }
    expect(users.served.get('error') ?? 0, JSON.stringify([...users.served])).to.equal(0);
    expect(
      [...users.served.keys()].filter((k) => !k.startsWith('200 ')),
      'every visitor got the page',
    ).to.deep.equal([]);
    return last;
  }

  it('reaches new when both pages offer the same file, version and files', async () => {
    expect([await offered(stack.stack.legacy), await offered(stack.stack.app)]).to.deep.equal([
      `${dist}-1.0-py3-none-any.whl`,
      `${dist}-1.0-py3-none-any.whl`,
    ]);
    const last = await promote();
    expect(last, last).to.match(/: done\n/);
    const history = (await banyan('routes', 'history', '--limit', '3')).stdout;
    expect(history, history).to.match(/project\.page: step 2\/3: canary 50% \(shadow passed: \d+ comparisons, 0\.00 % mismatched/);
    const shadow = await banyan('routes', 'shadow', 'project.page');
    console.log(shadow.stdout.replace(/^/gm, '      '));
    expect(shadow.stdout).to.match(/^Shadow results for project\.page: \d+ compared: [1-9]\d* match, 0 mismatch, 0 noise, 0 error/);
    expect(shadow.stdout).to.not.contain('Differences');
    const route = JSON.parse((await banyan('routes', 'show', 'project.page', '--json')).stdout) as { mode: string };
    expect(route.mode).to.equal('new');
  });

  it('rolls back at the shadow step when the new page offers a Windows visitor another file than legacy', async () => {
    const back = await banyan('routes', 'set', 'project.page', '--mode', 'legacy', '--reason', 'try again with a Windows wheel');
    expect(back.status, back.stderr).to.equal(0);
    // A platform wheel for any Python 3 on Windows: the new page offers it first, legacy still lists the pure wheel first.
    await uploadWheel(proxy, token, project, '1.0', 'py3-none-win_amd64');
    await waitUntil('the pages differ', async () => (await offered(stack.stack.app)) === `${dist}-1.0-py3-none-win_amd64.whl`, 10_000);
    expect(await offered(stack.stack.legacy)).to.equal(`${dist}-1.0-py3-none-any.whl`);
    const last = await promote();
    expect(last, last).to.match(/: rolled-back\n/);
    expect(last).to.match(/shadow: \d+ of \d+ comparisons differ \(100\.0 %\), above the plan's 5\.00 %; see banyan routes shadow/);
    const shadow = await banyan('routes', 'shadow', 'project.page');
    console.log(shadow.stdout.replace(/^/gm, '      '));
    // Only the offered file differs: the version and the file list are the same on both pages.
    const groups = /Differences, grouped[^\n]*\n\n((?:.*\n)+?)\n/.exec(shadow.stdout)?.[1] ?? '';
    expect(groups, shadow.stdout).to.match(
      /html offered \(a#download@href\|basename\)\s+[1-9]\d*\s+GET \/project\/\S+\/\s+\S+-1\.0-py3-none-any\.whl\s+\S+-1\.0-py3-none-win_amd64\.whl\n/,
    );
    expect(groups.trim().split('\n'), 'a header and one group').to.have.length(2);
    const route = JSON.parse((await banyan('routes', 'show', 'project.page', '--json')).stdout) as { mode: string };
    expect(route.mode).to.equal('legacy');
  });

  it('with --dry-run, goes on and reports the rollback the shadow step would have made', async () => {
    const last = await promote(['--dry-run']);
    console.log(`      ${/Dry run: would have.*/.exec(last)?.[0]}`);
    expect(last, last).to.match(/: done\n/);
    expect(last).to.match(
      /\nDry run: would have rolled back at \d\d:\d\d: shadow: \d+ of \d+ comparisons differ \(100\.0 %\), above the plan's 5\.00 %; see banyan routes shadow\n/,
    );
  });

  it('compares release pages the same way: a Windows visitor is offered another file, a Linux one the same', async () => {
    const path = `/project/${project}/1.0/`;
    const set = await banyan(
      'routes',
      'set',
      'project.release',
      '--mode',
      'shadow',
      '--sample',
      path,
      '--reason',
      'compare the release pages',
    );
    expect(set.status, `${set.stdout}\n${set.stderr}`).to.equal(0);
    await waitUntil(
      'the proxy follows',
      async () => /mode=shadow/.test((await fetch(`${proxy}${path}`)).headers.get('banyan-route') ?? ''),
      10_000,
    );
    const before = JSON.parse((await banyan('routes', 'shadow', 'project.release', '--json')).stdout) as { counts: Record<string, number> };
    for (const ua of [CHROME_WINDOWS, CHROME_LINUX]) {
      for (let i = 0; i < 5; i++) expect((await fetch(`${proxy}${path}`, { headers: { 'user-agent': ua } })).status).to.equal(200);
    }
    let report = {
      counts: {} as Record<string, number>,
      groups: [] as { where: string; count: number; example: { legacy: string; new: string } }[],
    };
    await waitUntil(
      '10 comparisons',
      async () => {
        report = JSON.parse((await banyan('routes', 'shadow', 'project.release', '--json')).stdout);
        return report.counts['match']! - before.counts['match']! + report.counts['mismatch']! - before.counts['mismatch']! >= 10;
      },
      10_000,
    );
    expect(
      [report.counts['match']! - before.counts['match']!, report.counts['mismatch']! - before.counts['mismatch']!],
      JSON.stringify(report),
    ).to.deep.equal([5, 5]);
    expect(report.groups.map((g) => [g.where, g.count, g.example.legacy, g.example.new])).to.deep.equal([
      ['html offered (a#download@href|basename)', 5, `${dist}-1.0-py3-none-any.whl`, `${dist}-1.0-py3-none-win_amd64.whl`],
    ]);
  });
});
