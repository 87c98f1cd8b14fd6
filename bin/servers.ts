import cluster from 'node:cluster';
import { FILES_PORT, startFilesRuntime } from '../app/files-runtime.js';
import { startAppRuntime } from '../app/runtime.js';
import { startLegacyRuntime } from '../legacy/runtime.js';
import { DEFAULTS, loadSettings, required, type Settings } from '../lib/config.js';
import { BanyanError } from '../lib/errors.js';
import { clusterMetricsClient, serveClusterMetrics } from '../metrics/cluster.js';
import { startFileProxyRuntime } from '../proxy/file-runtime.js';
import { startProxyRuntime } from '../proxy/runtime.js';
import { DEFAULT_ROUTES_FILE } from '../routing/table/index.js';
import { startTracing, tracingSettings, type Tracing } from '../lib/tracing.js';
import { logQueries } from '../lib/query-telemetry.js';
import { watchRequests } from '../lib/request-scope.js';
import type { Args } from './command.js';
import { progress } from './output.js';

/**
 * Keeps the process up until SIGINT/SIGTERM, then closes what it opened.
 * Run by a supervisor (`npm start`, with an IPC channel), it also stops when
 * the supervisor goes away, however it went: no component outlives its stack.
 */
function untilSignal(close: () => Promise<void>, tracing?: Tracing): void {
  let closing = false;
  const stop = async () => {
    if (closing) return;
    closing = true;
    await close();
    // The last requests' spans are exported before the process ends.
    await tracing?.shutdown();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
  if (process.send && !cluster.isWorker) process.on('disconnect', () => void stop());
}

/**
 * `banyan proxy [--workers N]`: the proxy on PORT, its admin listener on
 * ADMIN_PORT; SIGTERM drains. With N workers (node:cluster) the primary only
 * supervises: the workers share the ports, and a worker that dies is replaced.
 */
export async function proxyCommand(args: Args): Promise<void> {
  const s = loadSettings(process.env, undefined);
  const workers = args.flags.has('workers') ? Number(args.flags.get('workers')) : 1;
  if (!Number.isInteger(workers) || workers < 1 || workers > 64) {
    throw new BanyanError('bad-arguments', `--workers must be a whole number from 1 to 64, not "${String(args.flags.get('workers'))}"`);
  }
  // A bad OTEL_* setting stops the command here, not each worker the supervisor would start again.
  tracingSettings(process.env);
  if (workers > 1 && cluster.isPrimary) return supervise(workers);
  const who = cluster.isWorker ? `worker ${process.pid}: ` : '';
  const tracing = await startTracing('banyan-proxy', process.env, { asyncContext: false });
  if (!s.databaseUrl) {
    // No database: one proxy on a routes file alone, as Traefik or nginx start.
    const routesFile = s.routesFile ?? DEFAULT_ROUTES_FILE;
    const runtime = await startFileProxyRuntime({
      settings: { ...s, routesFile, routesPollMs: Math.min(s.routesPollMs, 1_000) },
      legacyUrl: s.legacyUrl,
      appUrl: s.appUrl,
      port: s.port ?? DEFAULTS.proxyPort,
      adminPort: s.adminPort ?? DEFAULTS.adminPort,
      log: progress,
    });
    progress(
      `${who}proxy listening on ${runtime.url}, admin on ${runtime.adminUrl}, routes from ${routesFile} (version ${runtime.routes.current.version}, watched)`,
    );
    progress(
      'no DATABASE_URL: file-only mode, a single instance without read-your-writes pins, usage ledger or route API; edit the file to change routes',
    );
    untilSignal(async () => {
      progress(`draining (up to ${s.drainMs} ms)`);
      await runtime.stop();
    }, tracing);
    return;
  }
  const runtime = await startProxyRuntime({
    settings: s,
    legacyUrl: s.legacyUrl,
    appUrl: s.appUrl,
    port: s.port ?? DEFAULTS.proxyPort,
    adminPort: s.adminPort ?? DEFAULTS.adminPort,
    log: progress,
    ...(cluster.isWorker ? { clusterMetrics: (registry) => clusterMetricsClient(registry) } : {}),
  });
  progress(`${who}proxy listening on ${runtime.url}, admin on ${runtime.adminUrl}, route table version ${runtime.routes.current.version}`);
  if (!s.adminToken) progress('BANYAN_ADMIN_TOKEN is not set: the admin API answers 503 until it is');
  untilSignal(async () => {
    progress(`draining (up to ${s.drainMs} ms)`);
    await runtime.stop();
  }, tracing);
}

function supervise(count: number): void {
  let stopping = false;
  progress(`starting ${count} proxy workers`);
  serveClusterMetrics();
  for (let i = 0; i < count; i++) cluster.fork();
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
      return;
    }
    progress(`proxy worker ${worker.process.pid} exited (${signal ?? `code ${code}`}); starting another`);
    cluster.fork();
  });
  const stop = () => {
    if (stopping) return;
    stopping = true;
    progress('stopping the workers (each drains its requests)');
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM');
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  if (process.send) process.on('disconnect', stop);
}

/**
 * A backend's traces and query log, before its pools are made (they decide then whether their queries
 * are observed): its requests are watched when either is on.
 */
async function backendTelemetry(service: string, s: Settings): Promise<Tracing | undefined> {
  const tracing = await startTracing(service);
  logQueries(s.queryLog);
  watchRequests(tracing !== undefined || s.queryLog.mode !== 'off');
  return tracing;
}

/** `banyan app`: the new app on PORT. */
export async function appCommand(): Promise<void> {
  const s = loadSettings(process.env, undefined);
  if (s.replicaUrls.length === 0) progress('DATABASE_REPLICA_URLS is empty: every read goes to the primary');
  if (!s.redisUrl) progress('REDIS_URL is not set: resource fences are off (other clients may read stale copies of what was just written)');
  const tracing = await backendTelemetry('banyan-app', s);
  const app = await startAppRuntime({
    primaryUrl: required(s.databaseUrl, 'DATABASE_URL', 'for the app'),
    replicaUrls: s.replicaUrls,
    reads: s.reads,
    redisUrl: s.redisUrl,
    fencesWhenDown: s.fencesWhenDown,
    storageDir: s.storageDir,
    maxUploadBytes: s.maxUploadBytes,
    projectsPerHour: s.projectsPerHour,
    publicUrl: s.publicUrl,
    trustForwardedHost: s.trustForwardedHost,
    host: s.host,
    port: s.port ?? DEFAULTS.appPort,
    drainMs: s.drainMs,
  });
  progress(`app listening on ${app.url}, files in ${app.storageDir}`);
  untilSignal(() => app.close(), tracing);
}

/** `banyan files`: the files service on PORT (`/packages/*` from BANYAN_STORAGE, `/_health`, `/metrics`). */
export async function filesCommand(): Promise<void> {
  const s = loadSettings(process.env, undefined);
  const tracing = await backendTelemetry('banyan-files', s);
  const files = await startFilesRuntime({
    primaryUrl: required(s.databaseUrl, 'DATABASE_URL', 'for the files service'),
    replicaUrls: s.replicaUrls,
    reads: s.reads,
    redisUrl: s.redisUrl,
    fencesWhenDown: s.fencesWhenDown,
    storageDir: s.storageDir,
    host: s.host,
    port: s.port ?? FILES_PORT,
    drainMs: s.drainMs,
  });
  progress(`files service listening on ${files.url}, serving /packages/ from ${files.storageDir}`);
  untilSignal(() => files.close(), tracing);
}

/** `banyan legacy`: the legacy backend on PORT. */
export async function legacyCommand(): Promise<void> {
  const s = loadSettings(process.env, undefined);
  const tracing = await backendTelemetry('banyan-legacy', s);
  const legacy = await startLegacyRuntime({
    primaryUrl: required(s.databaseUrl, 'DATABASE_URL', 'for the legacy backend'),
    replicaUrls: s.replicaUrls,
    reads: s.reads,
    redisUrl: s.redisUrl,
    storageDir: s.storageDir,
    maxUploadBytes: s.maxUploadBytes,
    projectsPerHour: s.projectsPerHour,
    host: s.host,
    port: s.port ?? DEFAULTS.legacyPort,
    drainMs: s.drainMs,
  });
  progress(`legacy backend listening on ${legacy.url}`);
  untilSignal(() => legacy.close(), tracing);
}
