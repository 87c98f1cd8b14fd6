import type { IndexDatabase } from '../package-index/schema.js';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { printTable } from '../bin/output.js';
import { addUser, createToken } from '../package-index/accounts.js';
import { connect } from '../lib/database.js';
import { startStack, type StartedStack } from './stack.js';
import { failOverThePrimary } from './failover.js';
import { ATTACKS } from './attacks.js';
import { partitionScenarios } from './partitions.js';
import { runScenarios, scenarios, type ChaosContext, type ChaosRow, type Scenario } from './suite.js';

const USAGE = `usage: npm run chaos -- [--seconds 3] [--only TEXT] [--workers 2] [--no-failover] [--no-partitions] [--json]

Starts the whole stack with \`banyan start\` in a temporary folder (every
component its own process, the new app as two instances), then, under read
and upload load through the proxy, kills and freezes each of the new app
(every instance at once), legacy, the replica, the primary and Redis, kills
one app instance alone, crashes a proxy worker, flips a route 50 times,
shadows to a dead app, and runs the attacks (--only attacks: path tricks,
usage poisoning, slow bodies from 140 and 1,000 connections, retired
spellings, four form bombs, a Host in cacheable URLs, forged banyan_sid
cookies, a login flood), each with its invariant; then,
on a second stack started with --failover, kills the primary and checks that
the replica is promoted and writes go on, with no component restarted; and
(as root, where network namespaces can be made; skipped, saying so,
elsewhere) cuts the network between a proxy and Redis, a proxy and
PostgreSQL, an app and the replica, and an app and the primary, dropping
packets rather than refusing them. Prints
a table; exits 1 when an invariant broke (a write acknowledged and lost, or
stored twice; the proxy exited; a fallback later than 1 s; a read on the new
app's routes that failed or fell back while another instance was up).

  --seconds N   how long a freeze lasts, and the load before and after a fault (default 3)
  --only TEXT   only the scenarios whose name contains TEXT
  --workers N   proxy worker processes (default 2; 1 leaves out the worker crash)
  --no-failover leave out "fail over the primary" (and its second stack)
  --no-partitions leave out the four "partition …" scenarios
  --json        the rows as JSON on stdout
`;

/** The new app's instances: two, so that one can die while the other answers. */
const APP_INSTANCES = 2;

export interface ChaosOptions {
  readonly seconds: number;
  readonly only?: string | undefined;
  readonly workers: number;
  /** Also run "fail over the primary", on a stack of its own started with --failover. */
  readonly failover?: boolean;
  /** Also run the network partitions (chaos/partitions.ts), against the first stack. */
  readonly partitions?: boolean;
  readonly log: (line: string) => void;
}

/** Everything `npm run chaos` does, also called by the short chaos tests. */
export async function chaos(options: ChaosOptions): Promise<ChaosRow[]> {
  const pick = (list: Scenario[]) => list.filter((s) => !options.only || s.name.includes(options.only));
  const restarts = pick([...scenarios(options.workers), ...ATTACKS, ...(options.partitions ? partitionScenarios() : [])]);
  const failovers = options.failover ? pick([failOverThePrimary]) : [];
  if (restarts.length === 0 && failovers.length === 0) throw new Error(`no scenario's name contains "${options.only}"`);
  return [
    ...(restarts.length ? await onStack(options, [], restarts) : []),
    ...(failovers.length ? await onStack(options, ['--failover'], failovers) : []),
  ];
}

/** Starts `banyan start` with `args` in a temporary folder, runs `list` against it, and stops it. */
async function onStack(options: ChaosOptions, args: string[], list: Scenario[]): Promise<ChaosRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'banyan-chaos-'));
  chmodSync(dir, 0o755);
  let stack: StartedStack | undefined;
  try {
    options.log(
      `starting the stack in ${dir} (proxy with ${options.workers} worker${options.workers > 1 ? 's' : ''}, ${APP_INSTANCES} app instances${args.length ? `, ${args.join(' ')}` : ''})`,
    );
    stack = await startStack(
      dir,
      ['--app-instances', String(APP_INSTANCES), ...(options.workers > 1 ? ['--workers', String(options.workers)] : []), ...args],
      {
        BANYAN_RESTART_DELAY: '300ms',
        BANYAN_USAGE_FLUSH: '1h',
      },
    );
    const db = connect<IndexDatabase>(stack.stack.primary, { max: 1, name: 'banyan-chaos' });
    let uploadToken: string;
    try {
      await addUser(db, 'chaos', 'chaos@example.org', 'the chaos suite password');
      uploadToken = (await createToken(db, 'chaos', 'chaos suite uploads')).token;
    } finally {
      await db.destroy();
    }
    const ctx: ChaosContext = {
      stack,
      uploadToken,
      project: 'chaos-pkg',
      faultMs: options.seconds * 1_000,
      settleMs: Math.max(500, (options.seconds * 1_000) / 2),
      log: options.log,
    };
    return await runScenarios(ctx, list);
  } finally {
    if (stack) {
      const code = await stack.interrupt('SIGINT');
      if (code !== 0) options.log(`banyan start exited with ${code} on Ctrl-C; its output:\n${stack.output().slice(-4_000)}`);
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The table as people read it. */
export function printRows(rows: readonly ChaosRow[]): void {
  printTable(
    [
      'scenario',
      'requests',
      'failed',
      'fallbacks',
      'first fallback',
      'writes sent',
      'acked',
      'stored',
      'lost',
      'duplicated',
      'proxy',
      'verdict',
    ],
    rows.map((r) => [
      r.scenario,
      String(r.requests),
      String(r.failures),
      r.fallbacks === null ? 'n/a' : String(r.fallbacks),
      r.firstFallbackMs === null ? '-' : `${r.firstFallbackMs} ms`,
      String(r.writesSent),
      String(r.writesAcknowledged),
      String(r.stored),
      String(r.lost),
      String(r.duplicated),
      r.proxyAlive ? 'up' : 'EXITED',
      r.broken.length ? `BROKEN: ${r.broken.join('; ')}` : r.skipped ? 'skipped' : 'held',
    ]),
  );
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        seconds: { type: 'string' },
        only: { type: 'string' },
        workers: { type: 'string' },
        'no-failover': { type: 'boolean' },
        'no-partitions': { type: 'boolean' },
        json: { type: 'boolean' },
        help: { type: 'boolean' },
      },
    }));
  } catch (err) {
    process.stderr.write(`chaos: ${(err as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const seconds = Number(values.seconds ?? 3);
  const workers = Number(values.workers ?? 2);
  if (!(seconds >= 0.5 && seconds <= 60)) fail(`--seconds must be a number from 0.5 to 60, not "${values.seconds}"`);
  if (!Number.isInteger(workers) || workers < 1 || workers > 8)
    fail(`--workers must be a whole number from 1 to 8, not "${values.workers}"`);
  const log = (line: string) => process.stderr.write(`• ${line}\n`);
  const rows = await chaos({
    seconds,
    only: values.only,
    workers,
    failover: !values['no-failover'],
    partitions: !values['no-partitions'],
    log,
  });
  if (values.json) process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
  else {
    process.stdout.write('\n');
    printRows(rows);
    const notes = rows.filter((r) => r.notes);
    if (notes.length) process.stdout.write(`\n${notes.map((r) => `${r.scenario}: ${r.notes}`).join('\n')}\n`);
  }
  const broken = rows.filter((r) => r.broken.length);
  const skipped = rows.filter((r) => r.skipped);
  const ran = rows.length - skipped.length;
  process.stdout.write(
    `\n${broken.length ? `${broken.length} of ${ran} scenarios broke an invariant.` : `All ${ran} scenarios that ran held: nothing lost, nothing duplicated, the proxy never exited.`}\n`,
  );
  if (skipped.length) process.stdout.write(`${skipped.length} skipped: ${skipped.map((r) => `${r.scenario} (${r.skipped})`).join('; ')}\n`);
  process.exitCode = broken.length ? 1 : 0;
}

function fail(message: string): never {
  process.stderr.write(`chaos: ${message}\n\n${USAGE}`);
  process.exit(2);
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  main().catch((err: Error) => {
    process.stderr.write(`chaos: ${err.message}\n`);
    process.exit(1);
  });
}
