import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { ReadLoad, UploadLoad } from './load.js';
import { makeNamespace, namespacesUnavailable, type Namespace } from './netns.js';
import { startRelay, type Relay } from './relay.js';
import { BANYAN } from './stack.js';
import {
  checkWrites,
  failed,
  FALLBACK_ROUTES,
  healthy,
  invariants,
  readTargets,
  sleep,
  waitFor,
  type ChaosContext,
  type ChaosRow,
  type Scenario,
} from './suite.js';

/**
 * Network partitions. The stack of `npm run chaos` runs on loopback, where a
 * cut link cannot be made; so each scenario starts a second proxy and a
 * second app instance (`banyan proxy`, `banyan app`, as the stack runs them),
 * each in a network namespace of its own, serving the same database, Redis,
 * legacy and file store through relays on host addresses of their own. The
 * load goes through that proxy; the fault drops every packet on one link
 * (a blackhole rule in the namespace) for the fault's length, then heals it.
 */

/** Where the partitioned proxy and app listen inside their namespaces. */
const PROXY_PORT = 8080;
const ADMIN_PORT = 8081;
const APP_PORT = 8000;

/**
 * Settings the partitioned components run with, beyond the stack's: the role monitor asks every 100 ms,
 * and a query waits 1 s for its server's answer (the default, 16 s, is longer than a scenario).
 */
const SETTINGS = { BANYAN_REPLICA_POLL: '100ms', BANYAN_DB_ANSWER_TIMEOUT: '1s' };
const ANSWER_MS = 1_000;
/** The role monitor's probe gives a server 1.5 s (lib/db-nodes.ts). */
const PROBE_MS = 1_500;

/**
 * The longest a read or an upload may wait with a link cut: a query's answer timeout (opening a
 * connection is bounded by it too), then the monitor's
 * probe, then 2.5 s of scheduling on a shared machine. A partition lasts longer than that, so a wait
 * that only ends when the link heals is caught.
 */
const BOUND_MS = ANSWER_MS + PROBE_MS + 2_500;
const PARTITION_MS = BOUND_MS + 2_000;
const SETTLE_MS = 3_000;

/** Which link a scenario cuts: the component in a namespace, and the host address (relay) it loses. */
type Link = 'proxy-redis' | 'proxy-postgres' | 'app-replica' | 'app-primary';

interface Rig {
  readonly proxyUrl: string;
  readonly adminUrl: string;
  readonly proxy: ChildProcess;
  readonly app: ChildProcess;
  output(): string;
  cut(link: Link): void;
  heal(link: Link): void;
  stop(): Promise<void>;
}

/** Host addresses, one per server a namespaced component talks to. */
const ADDRESS = { primary: 1, replica: 2, redis: 3, legacy: 4, files: 5, app: 6 } as const;

/** The partition scenarios, or one skipped row each, saying why, where namespaces cannot be made. */
export function partitionScenarios(): Scenario[] {
  return [
    partitioned('partition proxy ↔ Redis', 'proxy-redis'),
    partitioned('partition proxy ↔ PostgreSQL', 'proxy-postgres'),
    partitioned('partition app ↔ replica', 'app-replica'),
    partitioned('partition app ↔ primary', 'app-primary'),
  ];
}

function partitioned(name: string, link: Link): Scenario {
  return {
    name,
    run: async (ctx) => {
      const unavailable = namespacesUnavailable();
      if (unavailable) return skipped(name, unavailable);
      await healthy(ctx);
      const rig = await startRig(ctx);
      try {
        const reads = new ReadLoad(rig.proxyUrl, readTargets(ctx.project));
        const writes = new UploadLoad(rig.proxyUrl, ctx.project, ctx.uploadToken);
        reads.start();
        writes.start();
        let t0 = 0;
        try {
          // Long enough on a busy machine for uploads to be acknowledged before the cut and after it heals.
          await sleep(Math.max(ctx.settleMs, SETTLE_MS));
          t0 = Date.now();
          rig.cut(link);
          try {
            await sleep(Math.max(ctx.faultMs, PARTITION_MS));
          } finally {
            rig.heal(link);
          }
          await sleep(Math.max(ctx.settleMs, SETTLE_MS));
        } finally {
          await Promise.all([reads.stop(), writes.stop()]);
        }
        const verdict = await checkWrites(ctx, writes.log);
        const proxyAlive = rig.proxy.exitCode === null && rig.proxy.signalCode === null;
        const broken = invariants({ ...verdict, proxyAlive });
        const during = reads.events.filter((e) => e.at >= t0);
        const dropped = during.filter((e) => FALLBACK_ROUTES.has(e.route) && failed(e)).length;
        if (dropped > 0) broken.push(`${dropped} reads on fallback routes failed`);
        const longestRead = Math.max(0, ...reads.events.map((e) => e.ms));
        const why = `BANYAN_DB_ANSWER_TIMEOUT ${ANSWER_MS} ms + the monitor's probe ${PROBE_MS} ms + 2.5 s`;
        if (longestRead > BOUND_MS) broken.push(`a read waited ${longestRead} ms (bound ${BOUND_MS} ms: ${why})`);
        if (writes.log.longestMs > BOUND_MS) broken.push(`an upload waited ${writes.log.longestMs} ms (bound ${BOUND_MS} ms: ${why})`);
        const fallbackMs = firstFallbackAfter(reads.events, t0);
        return {
          scenario: name,
          requests: reads.events.length,
          failures: reads.events.filter(failed).length,
          fallbacks: reads.events.filter((e) => e.at >= t0 && e.fromLegacy && FALLBACK_ROUTES.has(e.route)).length,
          firstFallbackMs: fallbackMs,
          writesSent: writes.log.sent,
          writesAcknowledged: writes.log.acknowledged.size,
          ...verdict,
          proxyAlive,
          broken,
          notes: `packets dropped for ${Math.max(ctx.faultMs, PARTITION_MS)} ms; longest read ${longestRead} ms, longest upload ${writes.log.longestMs} ms`,
        };
      } finally {
        await rig.stop();
      }
    },
  };
}

function firstFallbackAfter(
  events: readonly { at: number; fromLegacy: boolean; route: string; status: number }[],
  t0: number,
): number | null {
  const first = events.find((e) => e.at >= t0 && e.fromLegacy && FALLBACK_ROUTES.has(e.route) && e.status === 200);
  return first ? first.at - t0 : null;
}

function skipped(name: string, why: string): ChaosRow {
  return {
    scenario: name,
    requests: 0,
    failures: 0,
    fallbacks: null,
    firstFallbackMs: null,
    writesSent: 0,
    writesAcknowledged: 0,
    stored: 0,
    lost: 0,
    duplicated: 0,
    proxyAlive: true,
    broken: [],
    notes: `skipped: ${why}`,
    skipped: why,
  };
}

/** The second proxy and app, in namespaces of their own, wired to the stack through relays. */
async function startRig(ctx: ChaosContext): Promise<Rig> {
  const s = ctx.stack.current();
  const cleanups: (() => Promise<void> | void)[] = [];
  const children: ChildProcess[] = [];
  let output = '';
  const stop = async () => {
    for (const child of children) child.kill('SIGTERM');
    await Promise.all(children.map((child) => exited(child, 5_000)));
    for (const cleanup of cleanups.reverse()) await cleanup();
  };
  try {
    const proxyNs = track(cleanups, makeNamespace(0));
    const appNs = track(cleanups, makeNamespace(1));
    const relay = async (ns: Namespace, which: keyof typeof ADDRESS, url: string) => {
      const target = new URL(url);
      const r: Relay = await startRelay(ns.hostAddress(ADDRESS[which]), { host: target.hostname, port: Number(target.port) });
      cleanups.push(() => r.close());
      target.hostname = r.host;
      target.port = String(r.port);
      return target.toString().replace(/\/$/, url.endsWith('/') ? '/' : '');
    };
    const data = async (ns: Namespace) => ({
      DATABASE_URL: await relay(ns, 'primary', s.primary),
      DATABASE_REPLICA_URLS: await relay(ns, 'replica', s.replicas[0]!),
      REDIS_URL: await relay(ns, 'redis', s.redis!),
    });
    const common = {
      BANYAN_STORAGE: join(ctx.stack.dir, '.banyan', 'files'),
      BANYAN_LOG: 'off',
      BANYAN_DEBUG_HEADERS: 'on',
      BANYAN_USAGE_FLUSH: '1h',
      ...SETTINGS,
    };
    const app = start(appNs, 'app', { ...(await data(appNs)), ...common, HOST: appNs.inside, PORT: String(APP_PORT) }, (d) => {
      output += d;
    });
    children.push(app);
    const appUrl = `http://${appNs.inside}:${APP_PORT}`;
    await waitFor(
      'the partitioned app to answer',
      async () => (await fetch(`${appUrl}/_health`, { signal: AbortSignal.timeout(1_000) })).status === 200,
      30_000,
    );
    const proxy = start(
      proxyNs,
      'proxy',
      {
        ...(await data(proxyNs)),
        ...common,
        HOST: proxyNs.inside,
        PORT: String(PROXY_PORT),
        ADMIN_HOST: proxyNs.inside,
        ADMIN_PORT: String(ADMIN_PORT),
        LEGACY_URL: await relay(proxyNs, 'legacy', s.legacy),
        APP_URL: await relay(proxyNs, 'app', appUrl),
        FILES_URL: await relay(proxyNs, 'files', s.services?.['files']?.[0]?.url ?? s.legacy),
        BANYAN_ADMIN_TOKEN: s.adminToken ?? 'chaos',
        BANYAN_SECRET: `chaos-partitions-${process.pid}-0123456789`,
      },
      (d) => {
        output += d;
      },
    );
    children.push(proxy);
    const proxyUrl = `http://${proxyNs.inside}:${PROXY_PORT}`;
    const adminUrl = `http://${proxyNs.inside}:${ADMIN_PORT}`;
    await waitFor(
      'the partitioned proxy to be ready',
      async () => (await fetch(`${adminUrl}/readyz`, { signal: AbortSignal.timeout(1_000) })).status === 200,
      30_000,
    );
    const address: Record<Link, [Namespace, number]> = {
      'proxy-redis': [proxyNs, ADDRESS.redis],
      'proxy-postgres': [proxyNs, ADDRESS.primary],
      'app-replica': [appNs, ADDRESS.replica],
      'app-primary': [appNs, ADDRESS.primary],
    };
    const addresses = (link: Link): string[] => {
      const [ns, i] = address[link];
      // The proxy's PostgreSQL is every server it asks: the primary and the replica.
      return link === 'proxy-postgres' ? [ns.hostAddress(ADDRESS.primary), ns.hostAddress(ADDRESS.replica)] : [ns.hostAddress(i)];
    };
    return {
      proxyUrl,
      adminUrl,
      proxy,
      app,
      output: () => output,
      cut: (link) => {
        for (const a of addresses(link)) address[link][0].cut(a);
      },
      heal: (link) => {
        for (const a of addresses(link)) address[link][0].heal(a);
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}\n${output.slice(-2_000)}`, { cause: err });
  }
}

function track(cleanups: (() => void)[], ns: Namespace): Namespace {
  cleanups.push(() => ns.remove());
  return ns;
}

function start(ns: Namespace, command: 'app' | 'proxy', env: Record<string, string>, onOutput: (d: string) => void): ChildProcess {
  const [program, ...args] = ns.exec([process.execPath, BANYAN, command]);
  const child = spawn(program!, args, { env: { ...process.env, PORT: '', ADMIN_PORT: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (d) => onOutput(`${command}: ${d}`));
  child.stderr!.on('data', (d) => onOutput(`${command}: ${d}`));
  return child;
}

function exited(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
    }, graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
