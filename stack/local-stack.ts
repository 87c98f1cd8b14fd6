import type { IndexDatabase } from '../package-index/schema.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAppRuntime } from '../app/runtime.js';
import { startLegacyRuntime } from '../legacy/runtime.js';
import { DEFAULTS, type Settings, type StackFile } from '../lib/config.js';
import { BanyanError } from '../lib/errors.js';
import { banyanMigrations } from '../migrations/migrator.js';
import { INDEX_MIGRATIONS } from '../package-index/migrations/index.js';
import { startProxyRuntime, type ProxyRuntime } from '../proxy/runtime.js';
import type { BreakerSettings } from '../proxy/proxy.js';
import { connect } from '../lib/database.js';
import type { DbRouter } from '../routing/reads/index.js';
import { findPostgresBinaries } from './postgres-binaries.js';
import { startPostgresCluster, type BaseBackupMethod, type PostgresCluster } from './postgres-cluster.js';
import type { KeptService } from './keeper.js';
import { findRedisServer, startRedis, type RedisServer } from './redis-server.js';

export interface ServicesOptions {
  /** Data folder: `.banyan/` for `npm start`, a temporary folder in tests. */
  readonly dir: string;
  readonly replicaDelayMs?: number;
  /** `auto`: Redis when a redis-server binary exists; `required`: fail without one. */
  readonly redis?: 'auto' | 'required' | 'off';
  readonly baseBackup?: BaseBackupMethod;
  readonly postgres?: 'system' | 'embedded';
  /** When the primary dies, the keeper promotes the replica and builds a new one (`npm start -- --failover`) instead of restarting it. */
  readonly failover?: boolean;
  /** The PostgreSQL schema of Banyan's own tables (BANYAN_SCHEMA); default `banyan`. */
  readonly schema?: string;
  readonly log?: (line: string) => void;
}

/** PostgreSQL primary + replica (migrated) and Redis, running. */
export interface Services {
  readonly cluster: PostgresCluster;
  readonly primaryUrl: string;
  readonly replicaUrls: readonly string[];
  readonly redisUrl: string | null;
  /** Redis's current process id (undefined while it is down). */
  readonly redisPid: number | undefined;
  readonly migrated: readonly string[];
  /** The servers a keeper can restart when they die (stack/keeper.ts). */
  readonly kept: readonly KeptService[];
  stop(): Promise<void>;
}

/** Starts the data services and brings the schema up to date on the primary. */
export async function startServices(options: ServicesOptions): Promise<Services> {
  const log = options.log ?? (() => {});
  const binaries = findPostgresBinaries(process.env, options.postgres);
  log(`PostgreSQL ${binaries.majorVersion} (${binaries.source}, ${binaries.dir})`);
  let redis: RedisServer | undefined;
  let cluster: PostgresCluster | undefined;
  try {
    const redisProgram = options.redis === 'off' ? undefined : findRedisServer();
    if (!redisProgram && options.redis === 'required') {
      throw new BanyanError('redis-not-found', 'no redis-server binary found', 'install it with `apt-get install redis-server`');
    }
    if (redisProgram) {
      log('starting Redis');
      redis = await startRedis(redisProgram, join(options.dir, 'redis'));
    } else if (options.redis !== 'off') {
      log('no redis-server found: running without Redis (in-process fallbacks; install redis-server for shared state)');
    }
    log('starting PostgreSQL primary and streaming replica');
    cluster = await startPostgresCluster({
      dir: join(options.dir, 'postgres'),
      binaries,
      log,
      replicaDelayMs: options.replicaDelayMs ?? 0,
      ...(options.baseBackup ? { baseBackup: options.baseBackup } : {}),
    });
    // Banyan's tables, in its own schema, then the demo package index's (its own migrations, in
    // `public`, as where any app runs).
    const migrated: string[] = [];
    for (const set of [banyanMigrations(options.schema), INDEX_MIGRATIONS]) {
      const db = connect(cluster.primaryUrl, { max: 1, name: 'banyan-migrate', statementTimeoutMs: 0, schema: set.schema });
      try {
        migrated.push(...(await set.up(db)));
      } finally {
        await db.destroy();
      }
    }
    log(migrated.length ? `applied migrations: ${migrated.join(', ')}` : 'schema is up to date');
    // Reads go to the replica: it must have the schema before anything serves traffic.
    if (migrated.length) {
      if (options.replicaDelayMs) log(`waiting for the replica to replay the schema (apply delay ${options.replicaDelayMs} ms)`);
      await cluster.waitForReplay(30_000 + (options.replicaDelayMs ?? 0));
    }
    const running = cluster;
    const runningRedis = redis;
    return {
      cluster: running,
      // Getters: a failover moves the roles between the two servers.
      get primaryUrl() {
        return running.primaryUrl;
      },
      get replicaUrls() {
        return running.replicaUrls;
      },
      redisUrl: runningRedis?.url ?? null,
      get redisPid() {
        return runningRedis?.pid;
      },
      migrated,
      kept: [
        options.failover
          ? {
              name: 'PostgreSQL primary',
              server: () => running.server('primary'),
              restart: () => running.failover(),
              restartWord: 'failing over to the replica',
            }
          : { name: 'PostgreSQL primary', server: () => running.server('primary'), restart: () => running.restart('primary') },
        { name: 'PostgreSQL replica', server: () => running.server('replica'), restart: () => running.restart('replica') },
        ...(runningRedis ? [{ name: 'Redis', server: () => runningRedis.server, restart: () => runningRedis.restart() }] : []),
      ],
      stop: async () => {
        await running.stop();
        await runningRedis?.stop();
      },
    };
  } catch (err) {
    await cluster?.stop();
    await redis?.stop();
    throw err;
  }
}

/** The settings of the in-process stack tests start: parts of Settings (unset ones fall back to DEFAULTS), and its own. */
export type BackendsOptions = Partial<
  Pick<
    Settings,
    | 'host'
    | 'adminHost'
    | 'routesFile'
    | 'routesPollMs'
    | 'drainMs'
    | 'trustedProxies'
    | 'sessionCookie'
    | 'secret'
    | 'pinTtlMs'
    | 'pinMode'
    | 'readConsistency'
    | 'fencesWhenDown'
    | 'reads'
    | 'debugHeaders'
    | 'maxUploadBytes'
    | 'projectsPerHour'
    | 'usageFlushMs'
    | 'rolePollMs'
  >
> & {
  readonly adminToken: string;
  readonly proxyPort?: number;
  readonly adminPort?: number;
  readonly appPort?: number;
  readonly legacyPort?: number;
  /** The stack's Redis, or null for none. */
  readonly redisUrl?: string | null;
  readonly breaker?: Partial<BreakerSettings>;
  /** Where uploads are stored; absent: a temporary folder removed on stop. */
  readonly storageDir?: string;
};

/** The HTTP side of the stack: legacy, the new app, the proxy and its admin listener. */
export interface Backends {
  readonly urls: Pick<StackFile, 'proxy' | 'admin' | 'app' | 'legacy'>;
  readonly router: DbRouter<IndexDatabase>;
  readonly proxy: ProxyRuntime;
  stop(): Promise<void>;
}

/**
 * Starts legacy, app, proxy and admin servers in this process against
 * `services`, through the same runtime modules their commands use. Tests use
 * it; `npm start` runs each as its own process instead (stack/supervisor.ts).
 */
export async function startBackends(services: Pick<Services, 'primaryUrl' | 'replicaUrls'>, options: BackendsOptions): Promise<Backends> {
  const host = options.host ?? '127.0.0.1';
  const opened: { close(): Promise<void> }[] = [];
  const stop = async () => {
    for (const item of opened.reverse()) await item.close();
  };
  try {
    let storageDir = options.storageDir;
    if (!storageDir) {
      const temporary = mkdtempSync(join(tmpdir(), 'banyan-files-'));
      opened.push({ close: async () => rmSync(temporary, { recursive: true, force: true }) });
      storageDir = temporary;
    }
    const data = {
      primaryUrl: services.primaryUrl,
      replicaUrls: services.replicaUrls,
      reads: options.reads,
      redisUrl: options.redisUrl ?? undefined,
      storageDir,
      maxUploadBytes: options.maxUploadBytes,
      projectsPerHour: options.projectsPerHour,
      host,
    };
    const legacy = await startLegacyRuntime({ ...data, port: options.legacyPort ?? 0 });
    opened.push(legacy);
    const app = await startAppRuntime({ ...data, fencesWhenDown: options.fencesWhenDown, port: options.appPort ?? 0 });
    opened.push(app);

    const proxy = await startProxyRuntime({
      settings: {
        databaseUrl: services.primaryUrl,
        replicaUrls: services.replicaUrls,
        rolePollMs: options.rolePollMs,
        redisUrl: options.redisUrl ?? undefined,
        adminToken: options.adminToken,
        host,
        adminHost: options.adminHost ?? '127.0.0.1',
        routesFile: options.routesFile,
        routesPollMs: options.routesPollMs ?? DEFAULTS.routesPollMs,
        trustedProxies: options.trustedProxies,
        sessionCookie: options.sessionCookie,
        drainMs: options.drainMs ?? DEFAULTS.drainMs,
        secret: options.secret,
        pinTtlMs: options.pinTtlMs ?? DEFAULTS.pinTtlMs,
        pinMode: options.pinMode ?? DEFAULTS.pinMode,
        readConsistency: options.readConsistency,
        usageFlushMs: options.usageFlushMs ?? DEFAULTS.usageFlushMs,
        debugHeaders: options.debugHeaders === true,
        // No load shedding here: this proxy shares its event loop with the app, legacy and the caller, so
        // that loop's lag (an upload being unpacked, a test building a wheel) says nothing of the proxy's load.
        shedLagMs: 0,
      },
      legacyUrl: legacy.url,
      appUrl: app.url,
      port: options.proxyPort ?? 0,
      adminPort: options.adminPort ?? 0,
      ...(options.breaker ? { breaker: options.breaker } : {}),
    });
    opened.push({ close: () => proxy.stop() });

    return {
      urls: { proxy: proxy.url, admin: proxy.adminUrl, app: app.url, legacy: legacy.url },
      router: app.router,
      proxy,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
