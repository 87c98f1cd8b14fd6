import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadSettings, readStackFile, stackDir, type StackFile } from '../lib/config.js';
import { parseDuration } from '../lib/duration.js';
import { BanyanError } from '../lib/errors.js';
import { stopAllServerProcesses } from '../stack/child-process.js';
import { startBackends, startServices } from '../stack/local-stack.js';
import { isPortFree } from '../stack/ports.js';
import type { Args } from './args.js';
import { printTable, progress } from './output.js';

const DEFAULT_PORT = 8080;
const DEFAULT_ADMIN_PORT = 9090;

/**
 * `banyan start` (what `npm start` runs): the whole stack on this machine,
 * data in `.banyan/`, until Ctrl-C or SIGTERM, which stop everything it started.
 */
export async function start(args: Args): Promise<void> {
  const started = Date.now();
  const dir = stackDir();
  const stackFile = join(dir, 'stack.json');
  const settings = loadSettings(process.env, undefined);
  const replicaDelayMs = args.flags.has('replica-delay') ? parseDuration(String(args.flags.get('replica-delay')), '--replica-delay') : 0;
  const port = settings.port ?? DEFAULT_PORT;
  const adminPort = settings.adminPort ?? DEFAULT_ADMIN_PORT;
  for (const [what, value, host] of [['PORT', port, settings.host], ['ADMIN_PORT', adminPort, settings.adminHost]] as const) {
    if (value !== 0 && !(await isPortFree(value, host))) {
      throw new BanyanError('port-in-use', `port ${value} (${what}) is already in use`,
        `stop what is using it (another \`npm start\`?) or set ${what}=<free port>`);
    }
  }
  mkdirSync(dir, { recursive: true });

  let shuttingDown = false;
  let stopStack: (() => Promise<void>) | undefined;
  const shutdown = async (signal: string) => {
    if (shuttingDown) return;
    shuttingDown = true;
    progress(`${signal}: stopping`);
    if (stopStack) await stopStack();
    else await stopAllServerProcesses();
    rmSync(stackFile, { force: true });
    progress('stopped');
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));

  const previous = readStackFile(stackFile);
  const { token: adminToken, generated } = adminTokenFor(settings.adminToken ?? previous?.adminToken, dir);
  process.env['BANYAN_SECRET'] ??= secretFor(dir);

  const services = await startServices({ dir, replicaDelayMs, redis: 'auto', log: progress });
  let backends;
  try {
    backends = await startBackends(services, {
      host: settings.host, proxyPort: port, adminPort, adminHost: settings.adminHost, adminToken, redisUrl: services.redisUrl,
      // The app and legacy take their usual ports when free (metrics/prometheus.yml scrapes the app there), else any.
      appPort: (await isPortFree(8081, settings.host)) ? 8081 : 0,
      legacyPort: (await isPortFree(8082, settings.host)) ? 8082 : 0,
      routesPollMs: settings.routesPollMs, drainMs: settings.drainMs,
      secret: process.env['BANYAN_SECRET']!, pinTtlMs: settings.pinTtlMs, pinMode: settings.pinMode, fencesWhenDown: settings.fencesWhenDown,
      reads: settings.reads, storageDir: settings.storageDir, maxUploadBytes: settings.maxUploadBytes, usageFlushMs: settings.usageFlushMs,
      ...(settings.routesFile ? { routesFile: settings.routesFile } : {}),
      ...(settings.trustedProxies ? { trustedProxies: settings.trustedProxies } : {}),
      ...(settings.sessionCookie ? { sessionCookie: settings.sessionCookie } : {}),
    });
  } catch (err) {
    await services.stop();
    throw err;
  }
  stopStack = async () => {
    await backends.stop();
    await services.stop();
  };
  const stack: StackFile = {
    ...backends.urls,
    primary: services.primaryUrl,
    replicas: [...services.replicaUrls],
    redis: services.redisUrl,
    adminToken,
  };
  writeFileSync(stackFile, `${JSON.stringify(stack, null, 2)}\n`, { mode: 0o600 });

  if (args.flags.has('json')) {
    process.stdout.write(`${JSON.stringify(stack, null, 2)}\n`);
  } else {
    process.stdout.write(`\nBanyan is up (${((Date.now() - started) / 1000).toFixed(1)} s). Where everything listens:\n\n`);
    printTable(['service', 'address'], [
      ['proxy (public)', stack.proxy],
      ['admin', `${stack.admin}  (the dashboard; /healthz /readyz /metrics)`],
      ['new app', `${stack.app}  (/metrics)`],
      ['legacy', stack.legacy],
      ['PostgreSQL primary', stack.primary],
      ...stack.replicas.map((r, i) => [`PostgreSQL replica ${i + 1}`, `${r}${replicaDelayMs ? `  (apply delay ${replicaDelayMs} ms)` : ''}`]),
      ['Redis', stack.redis ?? 'none (install redis-server for shared state)'],
    ]);
    process.stdout.write(`\nThe same as JSON: ${stackFile}\n`);
    if (generated) process.stdout.write(`Admin token (shown once; also in stack.json): ${adminToken}\n`);
    process.stdout.write(`Publish a package: banyan users add NAME, banyan tokens create NAME, then twine upload --repository-url ${stack.proxy}/legacy/\n`);
    process.stdout.write('Press Ctrl-C to stop everything.\n');
  }
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
