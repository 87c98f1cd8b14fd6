import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULTS, loadSettings, readStackFile, stackAccessLog, stackDir, type StackFile } from '../lib/config.js';
import { parseDuration } from '../lib/duration.js';
import { BanyanError } from '../lib/errors.js';
import { stopAllServerProcesses } from '../stack/child-process.js';
import { startServices, type Services } from '../stack/local-stack.js';
import { keepRunning } from '../stack/keeper.js';
import { freePort, isPortFree } from '../stack/ports.js';
import { Supervisor } from '../stack/supervisor.js';
import type { Args } from './command.js';
import { printTable, progress } from './output.js';


/**
 * `banyan start` (what `npm start` runs): the whole stack on this machine,
 * data in `.banyan/`. PostgreSQL, Redis, legacy, the new app and the proxy
 * each run as a process of their own, as in production, so any one can fail
 * alone; a component that dies is restarted with backoff (`--no-restart`
 * leaves it down). Ctrl-C or SIGTERM stop the proxy first (it drains and
 * writes its last usage counts), then the backends, then the databases.
 */
export async function start(args: Args): Promise<void> {
  const started = Date.now();
  const dir = stackDir();
  const stackFile = join(dir, 'stack.json');
  const settings = loadSettings(process.env, undefined);
  const replicaDelayMs = args.flags.has('replica-delay') ? parseDuration(String(args.flags.get('replica-delay')), '--replica-delay') : 0;
  const workers = args.flags.has('workers') ? String(args.flags.get('workers')) : undefined;
  if (workers !== undefined && !/^([1-9]|[1-5][0-9]|6[0-4])$/.test(workers)) {
    throw new BanyanError('bad-arguments', `--workers must be a whole number from 1 to 64, not "${workers}"`, 'it is the number of proxy processes sharing the port');
  }
  const port = await portFor(settings.port ?? DEFAULTS.proxyPort, settings.host, 'PORT');
  const adminPort = await portFor(settings.adminPort ?? DEFAULTS.adminPort, settings.adminHost, 'ADMIN_PORT');
  mkdirSync(dir, { recursive: true });

  const supervisor = new Supervisor({
    restart: !args.flags.has('no-restart'), backoffMs: settings.restartDelayMs, log: (line) => process.stdout.write(`${line}\n`),
  });
  let services: Services | undefined;
  let keeper: { stop(): void } | undefined;
  let shuttingDown = false;
  const shutdown = async (signal: string) => {
    if (shuttingDown) return;
    shuttingDown = true;
    progress(`${signal}: stopping the proxy (it drains and writes its last usage counts)`);
    await supervisor.stop(['proxy']);
    progress('stopping the new app and legacy');
    await supervisor.stop(['app', 'legacy']);
    progress('stopping Redis and PostgreSQL');
    keeper?.stop();
    if (services) await services.stop();
    else await stopAllServerProcesses();
    rmSync(stackFile, { force: true });
    progress('stopped');
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGHUP', () => void shutdown('SIGHUP'));

  const previous = readStackFile(stackFile);
  // A stale stack file would point this start's components at the last run's services.
  rmSync(stackFile, { force: true });
  const { token: adminToken, generated } = adminTokenFor(settings.adminToken ?? previous?.adminToken, dir);
  const secret = settings.secret ?? secretFor(dir);

  services = await startServices({ dir, replicaDelayMs, redis: 'auto', log: progress });
  const urls = await stackUrls(settings.host, port, settings.adminHost, adminPort);
  const data: Record<string, string> = {
    DATABASE_URL: services.primaryUrl, DATABASE_REPLICA_URLS: services.replicaUrls.join(','),
    ...(services.redisUrl ? { REDIS_URL: services.redisUrl } : {}), BANYAN_STORAGE: settings.storageDir, HOST: settings.host,
  };
  const writeStack = () => {
    const stack: StackFile = {
      ...urls, primary: services!.primaryUrl, replicas: [...services!.replicaUrls], redis: services!.redisUrl, adminToken,
      pids: {
        supervisor: process.pid, ...supervisor.pids(),
        postgresPrimary: services!.cluster.pids.primary ?? null, postgresReplica: services!.cluster.pids.replica ?? null, redis: services!.redisPid ?? null,
      },
    };
    writeFileSync(stackFile, `${JSON.stringify(stack, null, 2)}\n`, { mode: 0o600 });
    return stack;
  };
  try {
    await startComponents(supervisor, { data, urls, port, adminPort, adminHost: settings.adminHost, adminToken, secret, workers });
  } catch (err) {
    await supervisor.stop(['proxy', 'app', 'legacy']);
    await services.stop();
    throw err;
  }
  supervisor.onRestart(() => { if (!shuttingDown) writeStack(); });
  if (!args.flags.has('no-restart')) {
    keeper = keepRunning(services.kept, {
      log: (line) => process.stdout.write(`${line}\n`), backoffMs: settings.restartDelayMs, onRestart: () => { if (!shuttingDown) writeStack(); },
    });
  }
  const stack = writeStack();

  if (args.flags.has('json')) process.stdout.write(`${JSON.stringify(stack, null, 2)}\n`);
  else printStarted(stack, { stackFile, seconds: (Date.now() - started) / 1000, adminToken: generated ? adminToken : undefined, replicaDelayMs, restarts: !args.flags.has('no-restart') });
}

/** Where each component listens: the proxy and admin on their ports; the app and legacy on their usual ports when free (metrics/prometheus.yml scrapes the app there), else any. */
async function stackUrls(host: string, port: number, adminHost: string, adminPort: number): Promise<{ proxy: string; admin: string; app: string; legacy: string }> {
  const bracketed = (h: string) => (h.includes(':') ? `[${h}]` : h);
  return {
    proxy: `http://${bracketed(host)}:${port}`,
    admin: `http://${bracketed(adminHost)}:${adminPort}`,
    app: `http://${bracketed(host)}:${await portFor(DEFAULTS.appPort, host)}`,
    legacy: `http://${bracketed(host)}:${await portFor(DEFAULTS.legacyPort, host)}`,
  };
}

/** Legacy and the new app, then the proxy in front of them, each its own supervised process. */
async function startComponents(supervisor: Supervisor, c: {
  data: Record<string, string>; urls: { proxy: string; admin: string; app: string; legacy: string }; port: number; adminPort: number;
  adminHost: string; adminToken: string; secret: string; workers: string | undefined;
}): Promise<void> {
  const { data, urls } = c;
  progress('starting legacy and the new app');
  await Promise.all([
    supervisor.start({ name: 'legacy', args: ['legacy'], env: { ...data, PORT: portOf(urls.legacy) }, readyUrl: `${urls.legacy}/` }),
    supervisor.start({ name: 'app', args: ['app'], env: { ...data, PORT: portOf(urls.app) }, readyUrl: `${urls.app}/_health` }),
  ]);
  progress('starting the proxy');
  await supervisor.start({
    name: 'proxy', args: c.workers ? ['proxy', '--workers', c.workers] : ['proxy'], readyUrl: `${urls.admin}/healthz`,
    env: {
      ...data, PORT: String(c.port), ADMIN_PORT: String(c.adminPort), ADMIN_HOST: c.adminHost, LEGACY_URL: urls.legacy, APP_URL: urls.app,
      BANYAN_ADMIN_TOKEN: c.adminToken, BANYAN_SECRET: c.secret,
      BANYAN_LOG: stackAccessLog(),
    },
  });
}

/** Where everything listens, and what to do next. `adminToken`: a token generated by this start, shown once. */
function printStarted(stack: StackFile, o: { stackFile: string; seconds: number; adminToken: string | undefined; replicaDelayMs: number; restarts: boolean }): void {
  const pid = (name: string) => `  (pid ${stack.pids?.[name] ?? '?'})`;
  process.stdout.write(`\nBanyan is up (${o.seconds.toFixed(1)} s). Where everything listens:\n\n`);
  printTable(['service', 'address'], [
    ['proxy (public)', `${stack.proxy}${pid('proxy')}`],
    ['admin', `${stack.admin}  (the dashboard; /healthz /readyz /metrics)`],
    ['new app', `${stack.app}  (/metrics)${pid('app')}`],
    ['legacy', `${stack.legacy}${pid('legacy')}`],
    ['PostgreSQL primary', `${redactPassword(stack.primary)}${pid('postgresPrimary')}`],
    ...stack.replicas.map((r, i) => [`PostgreSQL replica ${i + 1}`, `${redactPassword(r)}${o.replicaDelayMs ? `  (apply delay ${o.replicaDelayMs} ms)` : ''}${pid('postgresReplica')}`]),
    ['Redis', stack.redis ? `${stack.redis}${pid('redis')}` : 'none (install redis-server for shared state)'],
  ]);
  process.stdout.write(`\nThe same as JSON, with passwords: ${o.stackFile}\n`);
  if (o.adminToken) process.stdout.write(`Admin token (shown once; also in stack.json): ${o.adminToken}\n`);
  process.stdout.write(`Publish a package: banyan users add NAME, banyan tokens create NAME, then twine upload --repository-url ${stack.proxy}/legacy/\n`);
  process.stdout.write(`Components and databases that die are restarted${o.restarts ? '' : ' — not in this run (--no-restart)'}; component lines are prefixed [proxy], [app], [legacy].\n`);
  process.stdout.write('Press Ctrl-C to stop everything.\n');
}

/** `wanted` when free; 0 means any free port; a busy configured port is an error that says what to do. */
async function portFor(wanted: number, host: string, setting?: string): Promise<number> {
  if (wanted !== 0 && (await isPortFree(wanted, host))) return wanted;
  if (wanted !== 0 && setting) {
    throw new BanyanError('port-in-use', `port ${wanted} (${setting}) is already in use`,
      `stop what is using it (another \`npm start\`?) or set ${setting}=<free port>`);
  }
  return freePort(host);
}

function portOf(url: string): string {
  return new URL(url).port;
}

function redactPassword(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]+@/, '//$1:***@');
}

/** The admin token: the configured or previous one, else a new one. */
function adminTokenFor(existing: string | undefined, dir: string): { token: string; generated: boolean } {
  if (existing) return { token: existing, generated: false };
  const file = join(dir, 'admin-token');
  if (existsSync(file)) return { token: readFileSync(file, 'utf8').trim(), generated: false };
  const token = randomBytes(24).toString('base64url');
  writeFileSync(file, token, { mode: 0o600 });
  return { token, generated: true };
}

/** The cookie-signing secret for the local stack, kept across restarts so pins stay valid. */
function secretFor(dir: string): string {
  const file = join(dir, 'secret');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const secret = randomBytes(32).toString('base64url');
  writeFileSync(file, secret, { mode: 0o600 });
  return secret;
}
