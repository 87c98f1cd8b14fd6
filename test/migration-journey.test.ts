import { expect } from 'chai';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { StackFile } from '../lib/config.js';
import { isAlive } from '../lib/processes.js';
import { runBanyan, runBanyanAsync, startStack, type StartedStack } from './support/cli.js';
import { buildDists, run } from './support/packages.js';
import { tempDir } from './support/services.js';
import { waitUntil } from './support/wait.js';

const TWINE = '/usr/bin/twine';
const QUIET_PIP = { PIP_DISABLE_PIP_VERSION_CHECK: '1', PIP_NO_CACHE_DIR: '1', PIP_NO_INPUT: '1' };
/** How long the stack waits before restarting a dead component: long enough to watch the fallback. */
const RESTART_DELAY_MS = 6_000;

interface StepCounts {
  requests: number;
  failures: number;
  legacy: number;
  fallbacks: number;
}

/**
 * The operator's journey of README.md, as a newcomer runs it: `npm start`
 * (every component its own process), then only the `banyan` command line,
 * pip and twine. The download page route goes shadow → canary → new with
 * fallback; every process of the new app (two instances) is SIGKILLed and
 * comes back; the route is rolled back. pip installs and twine uploads through the proxy all along.
 */
describe('the migration journey against npm start: real processes, the CLI, pip and twine', function () {
  this.timeout(600_000);
  let cwd: string;
  let stack: StartedStack;
  let proxy: string;
  let token: string;
  let uploads = 0;
  const counts: Record<string, StepCounts> = {};
  const name = `journey-pkg-${process.pid}`;

  const banyan = (...args: string[]) => runBanyanAsync(args, { cwd });

  before(async function () {
    this.timeout(120_000);
    cwd = tempDir('banyan-journey-');
    stack = await startStack(cwd, ['--replica-delay', '1s'], { BANYAN_RESTART_DELAY: `${RESTART_DELAY_MS}ms`, BANYAN_USAGE_FLUSH: '1h' });
    proxy = stack.stack.proxy;
    const user = runBanyan(['users', 'add', 'journey', '--email', 'journey@example.org'], { cwd, input: 'a long journey password\n' });
    expect(user.status, user.stderr).to.equal(0);
    const created = runBanyan(['tokens', 'create', 'journey'], { cwd });
    expect(created.status, created.stderr).to.equal(0);
    token = created.stdout.trim().split('\n').pop()!.trim();
    expect(token).to.match(/^banyan-/);
  });

  after(async () => {
    if (stack) expect(await stack.interrupt('SIGINT'), 'Ctrl-C stops the stack cleanly').to.equal(0);
    console.log(
      `\n      journey counts (requests to /project/${name}/):\n${Object.entries(counts)
        .map(
          ([step, c]) =>
            `        ${step.padEnd(28)} ${String(c.requests).padStart(4)} requests, ${c.failures} failed, ${c.legacy} from legacy, ${c.fallbacks} fallbacks`,
        )
        .join('\n')}`,
    );
    if (cwd) rmSync(cwd, { recursive: true, force: true });
  });

  /** twine uploads a new version through the proxy; returns the result. */
  async function upload(): Promise<{ code: number | null; output: string; version: string }> {
    const version = `1.${++uploads}`;
    const dir = join(cwd, `dist-${version}`);
    mkdirSync(dir);
    const files = await buildDists(dir, name, version, ['py3-none-any']);
    const r = await run(
      TWINE,
      [
        'upload',
        '--non-interactive',
        '--disable-progress-bar',
        '--repository-url',
        `${proxy}/legacy/`,
        '-u',
        '__token__',
        '-p',
        token,
        ...files,
      ],
      { allowFailure: true, env: { HOME: cwd } },
    );
    return { code: r.code, output: `${r.stdout}\n${r.stderr}`, version };
  }

  /** pip installs a version through the proxy into a folder of its own. */
  async function install(version: string): Promise<void> {
    const target = join(cwd, `site-${version}-${Date.now()}`);
    const r = await run(
      'python3',
      ['-m', 'pip', 'install', '--no-deps', '--index-url', `${proxy}/simple/`, '--target', target, `${name}==${version}`],
      { allowFailure: true, env: { ...QUIET_PIP, HOME: cwd } },
    );
    expect(r.code, `pip install ${name}==${version}:\n${r.stdout}\n${r.stderr}`).to.equal(0);
    expect(readdirSync(target).some((f) => f.startsWith(name.replace(/-/g, '_')))).to.equal(true);
  }

  /** Every step: a real twine upload and a real pip install of what was uploaded, through the proxy. */
  async function publishAndInstall(): Promise<void> {
    const up = await upload();
    expect(up.code, `twine upload ${up.version}:\n${up.output}`).to.equal(0);
    await install(up.version);
  }

  /**
   * The version a `routes set` or `rollback` stored (it says so), once the running proxy says it is in effect
   * (`banyan routes status`): the stored table alone does not show what the proxy does.
   */
  async function proxyFollows(output: string): Promise<void> {
    const version = Number(/Version (\d+) is stored/.exec(output)?.[1]);
    expect(version, output).to.be.above(0);
    await waitUntil(
      `the proxy to put version ${version} in effect`,
      async () => (JSON.parse((await banyan('routes', 'status', '--json')).stdout) as { version: number }).version >= version,
      15_000,
    );
  }

  /** GETs the route's page `n` times; counts failures and who answered. */
  async function browse(step: string, n: number): Promise<StepCounts> {
    const c = (counts[step] ??= { requests: 0, failures: 0, legacy: 0, fallbacks: 0 });
    const before = await fallbacks();
    for (let i = 0; i < n; i++) {
      const res = await fetch(`${proxy}/project/${name}/`);
      await res.arrayBuffer();
      c.requests++;
      if (res.status !== 200) c.failures++;
      if (res.headers.get('x-legacy-read-from')) c.legacy++;
    }
    c.fallbacks += (await fallbacks()) - before;
    return c;
  }

  async function fallbacks(): Promise<number> {
    const text = await (await fetch(`${stack.stack['admin'] as string}/metrics`)).text();
    return [...text.matchAll(/^banyan_proxy_fallbacks_total\{[^}]*route="project\.page"[^}]*\} (\d+)/gm)].reduce(
      (sum, m) => sum + Number(m[1]),
      0,
    );
  }

  /** Every app instance's process id, from stack.json (`services.app`, as the README's `jq` reads it); null while one is down. */
  function appPids(): (number | null)[] {
    const file = JSON.parse(readFileSync(join(cwd, '.banyan', 'stack.json'), 'utf8')) as StackFile;
    return file.services!['app']!.map((e) => e.pid);
  }

  it('starts from the shipped table: the download page on legacy, pip and twine through the proxy', async () => {
    const list = await banyan('routes', 'list');
    expect(list.stdout).to.match(/project\.page\s+\/project\/:project\/ \(GET,HEAD\)\s+legacy/);
    await publishAndInstall();
    const c = await browse('0. legacy', 10);
    expect(c).to.include({ failures: 0, legacy: 10 });
  });

  it('shadow: legacy answers, the new app is compared by what the page offers, and the shipped fields agree', async () => {
    const set = await banyan('routes', 'set', 'project.page', '--mode', 'shadow', '--reason', 'compare the rewrite');
    expect(set.status, set.stderr).to.equal(0);
    await proxyFollows(set.stdout);
    const c = await browse('1. shadow', 20);
    expect(c).to.include({ failures: 0, legacy: 20 });
    let report: { counts: Record<string, number>; groups: { where: string; count: number }[] } = { counts: {}, groups: [] };
    await waitUntil(
      '20 comparisons',
      async () => {
        report = JSON.parse((await banyan('routes', 'shadow', 'project.page', '--json')).stdout);
        return Object.values(report.counts).reduce((a, b) => a + b, 0) - report.counts['skipped']! >= 20;
      },
      10_000,
    );
    // Other HTML, the same file offered, the same version and files: routes.json's shadow.html.compare sees no difference.
    expect(report.counts, JSON.stringify(report)).to.include({ mismatch: 0, error: 0 });
    expect(report.counts['match']).to.be.at.least(20);
    const text = await banyan('routes', 'shadow', 'project.page');
    expect(text.stdout).to.match(/^Shadow results for project\.page: \d+ compared: \d+ match, 0 mismatch/);
    expect(text.stdout).to.not.contain('Differences, grouped by where they are');
    await publishAndInstall();
  });

  it('canary 10 %: each session stays on one side', async () => {
    const set = await banyan('routes', 'set', 'project.page', '--mode', 'canary', '--percent', '10', '--reason', 'first users');
    expect(set.status, set.stderr).to.equal(0);
    await proxyFollows(set.stdout);
    const c = await browse('2. canary 10%', 20);
    expect(c.failures).to.equal(0);
    expect([0, 20], 'one client address, one side').to.include(c.legacy);
    await publishAndInstall();
  });

  it('new with fallback: the new app answers', async () => {
    const set = await banyan('routes', 'set', 'project.page', '--mode', 'new', '--fallback', '--reason', 'all users');
    expect(set.status, set.stderr).to.equal(0);
    await proxyFollows(set.stdout);
    const c = await browse('3. new (fallback)', 20);
    expect(c).to.include({ failures: 0, legacy: 0 });
    await publishAndInstall();
  });

  it('SIGKILL of every app instance: safe requests get 200 from legacy within a second, uploads get 503 and are never replayed', async () => {
    const pids = appPids() as number[];
    expect(pids, 'two app instances, each running').to.have.length(2);
    for (const pid of pids) expect(pid).to.be.a('number');
    for (const pid of pids) process.kill(pid, 'SIGKILL');
    const killed = Date.now();
    let firstFallback: number | undefined;
    while (firstFallback === undefined && Date.now() - killed < 5_000) {
      const res = await fetch(`${proxy}/project/${name}/`);
      await res.arrayBuffer();
      if (res.status === 200 && res.headers.get('x-legacy-read-from')) firstFallback = Date.now() - killed;
    }
    expect(firstFallback, 'a fallback answer came').to.be.a('number');
    expect(firstFallback!).to.be.below(1_000);
    counts['4. app killed'] = { requests: 0, failures: 0, legacy: 0, fallbacks: 0 };
    console.log(`      first fallback answer ${firstFallback} ms after SIGKILL`);
    const c = await browse('4. app killed', 20);
    expect(c).to.include({ failures: 0, legacy: 20 });
    for (const pid of pids) expect(isAlive(pid), `app instance ${pid} is dead`).to.equal(false);
    const refused = await upload();
    expect(refused.code, 'twine fails while the app is down').to.not.equal(0);
    expect(refused.output).to.match(/503/);
    // pip still installs: the simple pages and files fall back to legacy.
    await install(`1.${uploads - 1}`);
    const seen = await fetch(`${proxy}/pypi/${name}/${refused.version}/json`);
    expect(seen.status, 'the refused upload was not replayed to legacy').to.equal(404);
  });

  it('the app comes back (every instance restarted by npm start) and traffic returns to it', async () => {
    const old = new Set(appPids());
    await waitUntil(
      'every app instance is restarted',
      async () => appPids().every((pid) => pid !== null && !old.has(pid)),
      RESTART_DELAY_MS + 30_000,
    );
    await waitUntil(
      'the new app answers the route again',
      async () => {
        const res = await fetch(`${proxy}/project/${name}/`);
        await res.arrayBuffer();
        return res.status === 200 && !res.headers.get('x-legacy-read-from');
      },
      30_000,
    );
    const c = await browse('5. app back', 20);
    expect(c).to.include({ failures: 0, legacy: 0 });
    for (const name of ['app-1', 'app-2']) expect(stack.output()).to.match(new RegExp(`${name} \\(pid \\d+\\) died \\(signal SIGKILL\\)`));
    await publishAndInstall();
  });

  it('roll back: one command puts the route back on legacy', async () => {
    const history = JSON.parse((await banyan('routes', 'history', '--json')).stdout) as { version: number; reason: string }[];
    const beforeShadow = history.find((h) => h.reason === 'compare the rewrite')!.version - 1;
    const back = await banyan('routes', 'rollback', String(beforeShadow), '--reason', 'roll back the download page');
    expect(back.status, back.stderr).to.equal(0);
    await proxyFollows(back.stdout);
    const c = await browse('6. rolled back', 20);
    expect(c).to.include({ failures: 0, legacy: 20 });
    await publishAndInstall();
  });
});
