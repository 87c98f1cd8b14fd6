import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FILES_PORT } from '../app/files-runtime.js';
import { DEFAULTS, loadSettings, readStackFile, stackAccessLog, stackDir, type StackFile } from '../lib/config.js';
import { parseDuration } from '../lib/duration.js';
import { BanyanError } from '../lib/errors.js';
import { stopAllServerProcesses } from '../stack/child-process.js';
import { startServices, type Services } from '../stack/local-stack.js';
import { keepRunning } from '../stack/keeper.js';
import { startPrometheus, type PrometheusServer } from '../stack/prometheus-server.js';
import { freePort, isPortFree } from '../stack/ports.js';
import { Supervisor } from '../stack/supervisor.js';
import type { Args } from './command.js';
import { printTable, progress } from './output.js';

/**
 * `banyan start` (what `npm start` runs): the whole stack on this machine,
 * data in `.banyan/`. PostgreSQL, Redis, legacy, the new app's instances
 * (`--app-instances`, 2 by default), the files service and the proxy each run
 * as a process of their own, as in production, so any one can fail alone; a
 * component that dies is restarted with backoff (`--no-restart` leaves it
 * down). `--prometheus` also runs Prometheus (Debian's package) scraping the
 * proxy, the app instances and files, and points the autopilot's PromQL
 * checks at it. Ctrl-C or SIGTERM stop the proxy first (it drains and writes its
 * last usage counts), then the backends, then the databases.
 */
export async function start(args: Args): Promise<void> {
  const started = Date.now();
  const dir = stackDir();
  const stackFile = join(dir, 'stack.json');
  const settings = loadSettings(process.env, undefined);
  const replicaDelayMs = args.flags.has('replica-delay') ? parseDuration(String(args.flags.get('replica-delay')), '--replica-delay') : 0;
  const workers = args.flags.has('workers') ? String(args.flags.get('workers')) : undefined;
  if (workers !== undefined && !/^([1-9]|[1-5][0-9]|6[0-4])$/.test(workers)) {
    throw new BanyanError(
      'bad-arguments',
      `--workers must be a whole number from 1 to 64, not "${workers}"`,
      'it is the number of proxy processes sharing the port',
    );
  }
  const instances = args.flags.has('app-instances') ? String(args.flags.get('app-instances')) : '2';
  if (!/^([1-9]|1[0-6])$/.test(instances)) {
    throw new BanyanError(
      'bad-arguments',
      `--app-instances must be a whole number from 1 to 16, not "${instances}"`,
      'it is the number of new app processes behind the proxy',
    );
  }
  const failover = args.flags.has('failover');
  if (failover && args.flags.has('no-restart')) {
    throw new BanyanError(
      'bad-arguments',
      '--failover and --no-restart cannot be used together',
      'a failover is what the stack does when the primary dies; --no-restart leaves it down',
    );
  }
  const appNames = Array.from({ length: Number(instances) }, (_, i) => `app-${i + 1}`);
  const backendNames = [...appNames, 'files', 'legacy'];
  const port = await portFor(settings.port ?? DEFAULTS.proxyPort, settings.host, 'PORT');
  const adminPort = await portFor(settings.adminPort ?? DEFAULTS.adminPort, settings.adminHost, 'ADMIN_PORT');
  mkdirSync(dir, { recursive: true });

  const supervisor = new Supervisor({
    restart: !args.flags.has('no-restart'),
    backoffMs: settings.restartDelayMs,
    log: (line) => process.stdout.write(`${line}\n`),
  });
  let services: Services | undefined;
  let keeper: { stop(): void } | undefined;
  let prometheus: PrometheusServer | undefined;
  let shuttingDown = false;
  const shutdown = async (signal: string) => {
    if (shuttingDown) return;
    shuttingDown = true;
    progress(`${signal}: stopping the proxy (it drains and writes its last usage counts)`);
    await supervisor.stop(['proxy']);
    progress(`stopping the new app (${appNames.join(', ')}), files and legacy`);
    await supervisor.stop(backendNames);
    if (prometheus) {
      progress('stopping Prometheus');
      await prometheus.stop();
    }
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

  services = await startServices({
    dir,
    replicaDelayMs,
    redis: 'auto',
    failover,
    schema: loadSettings(process.env, undefined).schema,
    log: progress,
  });
  const urls = await stackUrls(settings.host, port, settings.adminHost, adminPort, appNames.length);
  const data: Record<string, string> = {
    DATABASE_URL: services.primaryUrl,
    DATABASE_REPLICA_URLS: services.replicaUrls.join(','),
    ...(services.redisUrl ? { REDIS_URL: services.redisUrl } : {}),
    BANYAN_STORAGE: settings.storageDir,
    HOST: settings.host,
  };
  const writeStack = () => {
    const endpoint = (url: string, name: string) => ({ url, pid: supervisor.pid(name) ?? null });
    const stack: StackFile = {
      proxy: urls.proxy,
      admin: urls.admin,
      app: urls.apps[0]!,
      legacy: urls.legacy,
      primary: services!.primaryUrl,
      replicas: [...services!.replicaUrls],
      redis: services!.redisUrl,
      adminToken,
      ...(prometheus ? { prometheus: prometheus.url } : {}),
      services: {
        legacy: [endpoint(urls.legacy, 'legacy')],
        app: urls.apps.map((url, i) => endpoint(url, appNames[i]!)),
        files: [endpoint(urls.files, 'files')],
      },
      pids: {
        supervisor: process.pid,
        ...supervisor.pids(),
        postgresPrimary: services!.cluster.pids.primary ?? null,
        postgresReplica: services!.cluster.pids.replica ?? null,
        redis: services!.redisPid ?? null,
        ...(prometheus ? { prometheus: prometheus.pid ?? null } : {}),
      },
    };
    // Written whole, then renamed: a reader never sees half a file.
    writeFileSync(`${stackFile}.tmp`, `${JSON.stringify(stack, null, 2)}\n`, { mode: 0o600 });
    renameSync(`${stackFile}.tmp`, stackFile);
    return stack;
  };
  try {
    if (args.flags.has('prometheus')) {
      const hostPort = (url: string) => new URL(url).host;
      prometheus = await startPrometheus({
        dir: join(dir, 'prometheus'),
        port: await portFor(DEFAULTS.prometheusPort, '127.0.0.1'),
        program: process.env['BANYAN_PROMETHEUS_BIN'],
        targets: { 'banyan-proxy': [hostPort(urls.admin)], 'banyan-app': urls.apps.map(hostPort), 'banyan-files': [hostPort(urls.files)] },
      });
      progress(`Prometheus on ${prometheus.url}, scraping the proxy, the app and files every second`);
    }
    await startComponents(supervisor, {
      data,
      urls,
      appNames,
      port,
      adminPort,
      adminHost: settings.adminHost,
      adminToken,
      secret,
      workers,
      prometheusUrl: prometheus?.url,
    });
  } catch (err) {
    await supervisor.stop(['proxy', ...backendNames]);
    await prometheus?.stop();
    await services.stop();
    throw err;
  }
  // A death writes its pid as null, a restart the new pid: stack.json always says what runs.
  supervisor.onChange(() => {
    if (!shuttingDown) writeStack();
  });
  if (!args.flags.has('no-restart')) {
    keeper = keepRunning(services.kept, {
      log: (line) => process.stdout.write(`${line}\n`),
      backoffMs: settings.restartDelayMs,
      onRestart: () => {
        if (!shuttingDown) writeStack();
      },
    });
  }
  const stack = writeStack();

  if (args.flags.has('json')) process.stdout.write(`${JSON.stringify(stack, null, 2)}\n`);
  else
    printStarted(stack, {
      stackFile,
      seconds: (Date.now() - started) / 1000,
      adminToken: generated ? adminToken : undefined,
      replicaDelayMs,
      restarts: !args.flags.has('no-restart'),
      failover,
    });
}

/** Where each component listens. */
interface StackUrls {
  readonly proxy: string;
  readonly admin: string;
  /** app-1, app-2, …, in order. */
  readonly apps: readonly string[];
  readonly files: string;
  readonly legacy: string;
}

/** The port each new app instance prefers: app-1 8081 (beside legacy 8082 and files 8083), then app-2 8084, app-3 8085, … */
function appInstancePort(instance: number): number {
  return instance === 1 ? DEFAULTS.appPort : FILES_PORT + instance - 1;
}

/**
 * Where each component listens: the proxy and admin on their ports; app-1 8081, legacy 8082, files 8083, app-2 8084, …
 * when free (metrics/prometheus.yml scrapes them there), else any free port; no two components share one.
 */
async function stackUrls(host: string, port: number, adminHost: string, adminPort: number, instances: number): Promise<StackUrls> {
  const bracketed = (h: string) => (h.includes(':') ? `[${h}]` : h);
  const taken = new Set([port, adminPort]);
  const url = async (wanted: number) => {
    let chosen = taken.has(wanted) ? await freePort(host) : await portFor(wanted, host);
    while (taken.has(chosen)) chosen = await freePort(host);
    taken.add(chosen);
    return `http://${bracketed(host)}:${chosen}`;
  };
  const apps: string[] = [await url(appInstancePort(1))];
  const legacy = await url(DEFAULTS.legacyPort);
  const files = await url(FILES_PORT);
  for (let i = 2; i <= instances; i++) apps.push(await url(appInstancePort(i)));
  return { proxy: `http://${bracketed(host)}:${port}`, admin: `http://${bracketed(adminHost)}:${adminPort}`, apps, files, legacy };
}

/** Legacy, every app instance and the files service, then the proxy in front of them, each its own supervised process. */
async function startComponents(
  supervisor: Supervisor,
  c: {
    data: Record<string, string>;
    urls: StackUrls;
    appNames: readonly string[];
    port: number;
    adminPort: number;
    adminHost: string;
    adminToken: string;
    secret: string;
    workers: string | undefined;
    prometheusUrl: string | undefined;
  },
): Promise<void> {
  const { data, urls } = c;
  progress(`starting legacy, the new app (${c.appNames.join(', ')}) and files`);
  await Promise.all([
    supervisor.start({
      name: 'legacy',
      args: ['legacy'],
      env: { ...data, ...traceAs('banyan-legacy', 'legacy'), PORT: portOf(urls.legacy) },
      readyUrl: `${urls.legacy}/`,
    }),
    ...urls.apps.map((url, i) =>
      supervisor.start({
        name: c.appNames[i]!,
        args: ['app'],
        env: { ...data, ...traceAs('banyan-app', c.appNames[i]!), PORT: portOf(url) },
        readyUrl: `${url}/_health`,
      }),
    ),
    supervisor.start({
      name: 'files',
      args: ['files'],
      env: { ...data, ...traceAs('banyan-files', 'files'), PORT: portOf(urls.files) },
      readyUrl: `${urls.files}/_health`,
    }),
  ]);
  progress('starting the proxy');
  await supervisor.start({
    name: 'proxy',
    args: c.workers ? ['proxy', '--workers', c.workers] : ['proxy'],
    readyUrl: `${urls.admin}/healthz`,
    env: {
      ...data,
      ...traceAs('banyan-proxy', 'proxy'),
      PORT: String(c.port),
      ADMIN_PORT: String(c.adminPort),
      ADMIN_HOST: c.adminHost,
      LEGACY_URL: urls.legacy,
      APP_URL: urls.apps.join(','),
      FILES_URL: urls.files,
      BANYAN_ADMIN_TOKEN: c.adminToken,
      BANYAN_SECRET: c.secret,
      BANYAN_LOG: stackAccessLog(),
      // Every component shares this machine's cores: a proxy whose loop is late because a neighbour has the CPU is
      // not over its own capacity, and shedding would fail reads it could serve. Set BANYAN_SHED_LAG to shed here too.
      BANYAN_SHED_LAG: process.env['BANYAN_SHED_LAG'] ?? 'off',
      ...(c.prometheusUrl ? { BANYAN_PROMETHEUS_URL: c.prometheusUrl } : {}),
    },
  });
}

/**
 * Each component's `service.name` (and `service.instance.id`, its supervisor name) for its traces: the
 * OTEL_* variables reach every component as they are, but one OTEL_SERVICE_NAME for all would merge
 * the proxy, the app and legacy into one service. Resource attributes the operator set are kept.
 */
export function traceAs(service: string, instance: string, env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const given = env['OTEL_RESOURCE_ATTRIBUTES']?.trim();
  return { OTEL_SERVICE_NAME: service, OTEL_RESOURCE_ATTRIBUTES: `${given ? `${given},` : ''}service.instance.id=${instance}` };
}

/** Where everything listens, and what to do next. `adminToken`: a token generated by this start, shown once. */
function printStarted(
  stack: StackFile,
  o: { stackFile: string; seconds: number; adminToken: string | undefined; replicaDelayMs: number; restarts: boolean; failover: boolean },
): void {
  const pid = (id: number | null | undefined) => `  (pid ${id ?? '?'})`;
  const named = (name: string) => pid(stack.pids?.[name]);
  const apps = stack.services?.app ?? [];
  process.stdout.write(`\nBanyan is up (${o.seconds.toFixed(1)} s). Where everything listens:\n\n`);
  printTable(
    ['service', 'address'],
    [
      ['proxy (public)', `${stack.proxy}${named('proxy')}`],
      ['admin', `${stack.admin}  (the dashboard; /healthz /readyz /metrics)`],
      ...apps.map((e, i) => [`new app, app-${i + 1}`, `${e.url}  (/metrics)${pid(e.pid)}`]),
      ...(stack.services?.files ?? []).map((e) => ['files', `${e.url}  (/packages/; /metrics)${pid(e.pid)}`]),
      ['legacy', `${stack.legacy}${named('legacy')}`],
      ['PostgreSQL primary', `${redactPassword(stack.primary)}${named('postgresPrimary')}`],
      ...stack.replicas.map((r, i) => [
        `PostgreSQL replica ${i + 1}`,
        `${redactPassword(r)}${o.replicaDelayMs ? `  (apply delay ${o.replicaDelayMs} ms)` : ''}${named('postgresReplica')}`,
      ]),
      ['Redis', stack.redis ? `${stack.redis}${named('redis')}` : 'none (install redis-server for shared state)'],
      ...(stack.prometheus
        ? [['Prometheus', `${stack.prometheus}  (scrapes the proxy, the app and files; plans' checks query it)${named('prometheus')}`]]
        : []),
    ],
  );
  process.stdout.write(`\nThe same as JSON, with passwords: ${o.stackFile}\n`);
  if (o.adminToken) process.stdout.write(`Admin token (shown once; also in stack.json): ${o.adminToken}\n`);
  process.stdout.write(
    `Publish a package: banyan users add NAME, banyan tokens create NAME, then twine upload --repository-url ${stack.proxy}/legacy/\n`,
  );
  const prefixes = ['proxy', ...apps.map((_, i) => `app-${i + 1}`), 'files', 'legacy'].map((n) => `[${n}]`).join(', ');
  process.stdout.write(
    `Components and databases that die are restarted${o.restarts ? '' : ' — not in this run (--no-restart)'}; component lines are prefixed ${prefixes}.\n`,
  );
  if (o.failover)
    process.stdout.write(
      '--failover: a primary that dies is replaced by the promoted replica, and a new replica is built from it (stack.json follows).\n',
    );
  process.stdout.write('Press Ctrl-C to stop everything.\n');
}

/** `wanted` when free; 0 means any free port; a busy configured port is an error that says what to do. */
async function portFor(wanted: number, host: string, setting?: string): Promise<number> {
  if (wanted !== 0 && (await isPortFree(wanted, host))) return wanted;
  if (wanted !== 0 && setting) {
    throw new BanyanError(
      'port-in-use',
      `port ${wanted} (${setting}) is already in use`,
      `stop what is using it (another \`npm start\`?) or set ${setting}=<free port>`,
    );
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
