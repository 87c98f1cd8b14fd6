import { createServer } from 'node:http';
import type { Socket } from 'node:net';
import { DEFAULTS, type Settings } from '../lib/config.js';
import type { BanyanDatabase } from '../lib/schema.js';
import { BanyanError } from '../lib/errors.js';
import { listen, type Listening } from '../lib/http-server.js';
import { LoadShedder } from './load-shedder.js';
import { createProxyMetrics, preZeroRoutes, type ProxyMetrics } from '../metrics/catalog.js';
import { UsageLedger } from '../metrics/usage.js';
import { sql, type Kysely } from 'kysely';
import { connect, currentPosition, redactUrl } from '../lib/database.js';
import { announceVersion, DEFAULT_ROUTES_FILE, readRoutesFile, RouteSync } from '../routing/table/index.js';
import { Autopilot } from '../autopilot/pilot.js';
import { accessLog } from './access-log.js';
import { createAdmin } from './admin.js';
import { limitConnectionsPerClient } from './client-limit.js';
import { trustedProxies } from './headers.js';
import { dashboardData, DashboardSampler } from './dashboard.js';
import { proxyReadiness, requireLegacy } from './readiness.js';
import { createProxy, type BreakerSettings, type PinSettings, type Proxy, type ProxyOptions } from './proxy.js';
import { rawAnswer } from './raw-answer.js';

export interface ProxyRuntimeOptions {
  readonly settings: Pick<
    Settings,
    | 'databaseUrl'
    | 'redisUrl'
    | 'adminToken'
    | 'host'
    | 'adminHost'
    | 'routesFile'
    | 'routesPollMs'
    | 'trustedProxies'
    | 'sessionCookie'
    | 'drainMs'
    | 'secret'
    | 'pinTtlMs'
    | 'pinMode'
  > &
    Partial<
      Pick<
        Settings,
        | 'schema'
        | 'readConsistency'
        | 'replicaUrls'
        | 'rolePollMs'
        | 'autopilotTickMs'
        | 'autopilotLeaseMs'
        | 'autopilotWebhook'
        | 'prometheusUrl'
        | 'debugHeaders'
        | 'accessLog'
        | 'usageFlushMs'
        | 'headersTimeoutMs'
        | 'maxClientConnections'
        | 'usageSpoolDir'
        | 'shedLagMs'
      >
    > &
    Partial<ClientLimits>;
  /** LEGACY_URL and APP_URL: the endpoints of the upstreams whose table entry says `"env": "LEGACY_URL"` (or APP_URL). */
  readonly legacyUrl?: string | undefined;
  readonly appUrl?: string | undefined;
  readonly port: number;
  readonly adminPort: number;
  readonly breaker?: Partial<BreakerSettings>;
  readonly log?: (line: string) => void;
  /** With `--workers N`: gather every worker's metrics for /metrics (given this process's registry). */
  readonly clusterMetrics?: (registry: ProxyMetrics['registry']) => () => Promise<string>;
}

/** A running proxy: public and admin listeners, route sync, and a draining stop. */
export interface ProxyRuntime {
  readonly url: string;
  readonly adminUrl: string;
  readonly proxy: Proxy;
  readonly routes: RouteSync;
  readonly autopilot: Autopilot;
  /** Stops accepting, lets requests in flight finish (up to the drain time), then closes everything. */
  stop(): Promise<void>;
}

/** Starts the proxy with its route table from PostgreSQL (seeded from the routes file when empty). */
export async function startProxyRuntime(options: ProxyRuntimeOptions): Promise<ProxyRuntime> {
  const { settings } = options;
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  if (!settings.databaseUrl) throw new BanyanError('missing-setting', 'DATABASE_URL is not set; the proxy keeps its route table there');
  // Every server, so the route table, pins and usage follow the primary wherever a failover moves it.
  const servers = [settings.databaseUrl, ...(settings.replicaUrls ?? [])].join(',');
  // Banyan's own tables (route table, usage ledger, autopilot) are in their schema, apart from the app's.
  const db = connect(servers, {
    max: 4,
    name: 'banyan-proxy',
    roleCheckMs: settings.rolePollMs ?? DEFAULTS.rolePollMs,
    schema: settings.schema ?? DEFAULTS.schema,
  });
  const opened: { close(): Promise<void> }[] = [{ close: () => db.destroy() }];
  const closeAll = async () => {
    for (const item of opened.reverse()) await item.close();
  };
  try {
    // The route table lives in PostgreSQL: say which setting to check when it cannot be reached.
    await sql`SELECT 1`.execute(db).catch((err: Error) => {
      throw new BanyanError(
        'database-unreachable',
        `cannot reach PostgreSQL at ${redactUrl(settings.databaseUrl!)} for the route table: ${err.message}`,
        'check DATABASE_URL',
        { cause: err },
      );
    });
    const metrics = createProxyMetrics();
    const routes = await startRouteSync(db, settings, metrics, log);
    opened.push({ close: () => routes.stop() });
    const usage = new UsageLedger({
      db,
      flushMs: settings.usageFlushMs ?? DEFAULTS.usageFlushMs,
      spoolDir: settings.usageSpoolDir,
      log,
      onFlush: (result, err) => {
        metrics.usageFlushes.inc({ result });
        if (err) log(`usage: flush failed, kept for the next one: ${err.message}`);
      },
    });
    await usage.start();
    // Closed after the listeners (the list closes in reverse): the last requests are flushed too.
    opened.push({ close: () => usage.stop() });
    const changed = async (version: number) => {
      await routes.refresh();
      await announceVersion(settings.redisUrl, version);
    };
    let shadowCounts: (route: string) => { match: number; mismatch: number } = () => ({ match: 0, mismatch: 0 });
    const autopilot = new Autopilot({
      db,
      tickMs: settings.autopilotTickMs ?? DEFAULTS.autopilotTickMs,
      leaseMs: settings.autopilotLeaseMs ?? DEFAULTS.autopilotLeaseMs,
      webhook: settings.autopilotWebhook,
      webhookSecret: settings.secret?.split(',')[0],
      log,
      prometheusUrl: settings.prometheusUrl,
      shadowCounts: (route) => shadowCounts(route),
      changed,
    });
    if (!settings.secret) log('BANYAN_SECRET is not set: read-your-writes pins are off (every read may be stale after a write)');
    const proxy = createProxy({
      legacyUrl: options.legacyUrl,
      appUrl: options.appUrl,
      metrics,
      table: routes,
      log,
      pins: pinSettings(settings, db),
      trustedProxies: settings.trustedProxies,
      sessionCookie: settings.sessionCookie,
      usage,
      debugHeaders: settings.debugHeaders,
      observe: (request) => autopilot.sampler.observe(request),
      accessLog: accessLog(settings.accessLog ?? 'off'),
      ...clientLimits(settings),
      ...(options.breaker ? { breaker: options.breaker } : {}),
    });
    opened.push({ close: () => proxy.close() });
    await requireLegacy(proxy.upstreams);
    shadowCounts = (route) => proxy.shadow.report(route).counts;
    autopilot.start();
    // Stopped after the listeners: the last requests' evidence is reported, then the lease is given up.
    opened.push({ close: () => autopilot.stop() });

    const publicSide = await listenPublic(proxy, settings, options.port, () => metrics.shed.inc());
    opened.push(publicSide);
    const sampler = new DashboardSampler(db, metrics);
    sampler.start();
    opened.push({ close: async () => sampler.stop() });
    const admin = createAdmin({
      registry: metrics.registry,
      hostNames: [settings.adminHost],
      metricsText: options.clusterMetrics?.(metrics.registry),
      ready: proxyReadiness({
        upstreams: () => proxy.upstreams.snapshot(),
        tableVersion: () => routes.current.version,
        routeCount: () => routes.current.routes.length,
      }),
      routes: {
        db,
        adminToken: settings.adminToken,
        shadow: proxy.shadow,
        changed,
        status: () => proxyStatus(proxy, routes),
        upstreams: () => proxy.upstreams.snapshot(),
        dashboard: () =>
          dashboardData({
            db,
            routes: routes.current.routes,
            version: routes.current.version,
            metrics,
            usage,
            shadow: proxy.shadow,
            sampler,
            upstreams: proxy.upstreams.snapshot(),
            prometheusUrl: settings.prometheusUrl,
          }),
      },
    });
    const adminSide = await listen(admin.callback(), options.adminPort, settings.adminHost, 'ADMIN_PORT');
    opened.push(adminSide);
    return { url: publicSide.url, adminUrl: adminSide.url, proxy, routes, autopilot, stop: closeAll };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/** The route table from PostgreSQL (seeded from the routes file when empty), followed; its routes' series start at 0. */
async function startRouteSync(
  db: Kysely<BanyanDatabase>,
  settings: ProxyRuntimeOptions['settings'],
  metrics: ProxyMetrics,
  log: (line: string) => void,
): Promise<RouteSync> {
  const seed = readRoutesFile(settings.routesFile ?? DEFAULT_ROUTES_FILE);
  const routes = await RouteSync.start(
    {
      db,
      redisUrl: settings.redisUrl,
      pollMs: settings.routesPollMs,
      log,
      onChange: (table) => {
        metrics.tableVersion.set(table.version);
        preZeroRoutes(metrics, table.routes);
      },
    },
    seed,
  );
  metrics.tableVersion.set(routes.current.version);
  preZeroRoutes(metrics, routes.current.routes);
  return routes;
}

/** Read-your-writes pins, signed with BANYAN_SECRET's list; none without it. */
function pinSettings(settings: ProxyRuntimeOptions['settings'], db: Kysely<BanyanDatabase>): PinSettings | undefined {
  if (!settings.secret) {
    if (settings.readConsistency === 'monotonic') {
      throw new BanyanError(
        'bad-setting',
        'BANYAN_READ_CONSISTENCY=monotonic needs BANYAN_SECRET: the position a session has read is kept in its signed pin',
      );
    }
    return undefined;
  }
  return {
    secrets: settings.secret.split(','),
    ttlMs: settings.pinTtlMs,
    mode: settings.pinMode,
    consistency: settings.readConsistency,
    currentPosition: () => currentPosition(db),
  };
}

/** What this proxy is doing now (`GET /api/status`): the table version in effect, each service's endpoints, and shadow results. */
function proxyStatus(proxy: Proxy, routes: RouteSync): Record<string, unknown> {
  return {
    version: routes.current.version,
    upstreams: proxy.upstreams.snapshot(),
    shadow: Object.fromEntries(
      routes.current.routes.filter((r) => r.mode === 'shadow').map((r) => [r.name, proxy.shadow.report(r.name).counts]),
    ),
  };
}

/** The settings that keep one client from costing others: how bodies are admitted, the queue wait, a client's share. */
export type ClientLimits = Pick<
  Settings,
  'bodyBufferBytes' | 'bodyTimeoutMs' | 'bodyMinRate' | 'upstreamQueueTimeoutMs' | 'clientSharePercent'
>;

/** Those settings as createProxy takes them, defaults for any not given. */
export function clientLimits(settings: Partial<ClientLimits>): Pick<ProxyOptions, 'bodies' | 'queueTimeoutMs' | 'clientSharePercent'> {
  return {
    bodies: {
      bufferBytes: settings.bodyBufferBytes ?? DEFAULTS.bodyBufferBytes,
      idleTimeoutMs: settings.bodyTimeoutMs ?? DEFAULTS.bodyTimeoutMs,
      minBytesPerSecond: settings.bodyMinRate ?? DEFAULTS.bodyMinRate,
    },
    queueTimeoutMs: settings.upstreamQueueTimeoutMs ?? DEFAULTS.upstreamQueueTimeoutMs,
    clientSharePercent: settings.clientSharePercent ?? DEFAULTS.clientSharePercent,
  };
}

/**
 * The public listener, as every proxy runs it: slow clients (slowloris) get a bounded time for their
 * headers, checked every second, then 408 and a closed socket (bodies are paced by the proxy itself,
 * `request-body.ts`); one address holds at most so many connections; WebSocket upgrades are proxied, CONNECT
 * refused, malformed requests answered. Closing drains requests, then cuts tunnels after the same time.
 */
export async function listenPublic(
  proxy: Proxy,
  settings: Pick<Settings, 'host' | 'drainMs' | 'trustedProxies'> & {
    readonly headersTimeoutMs?: number;
    readonly maxClientConnections?: number;
    readonly shedLagMs?: number;
  },
  port: number,
  onShed: () => void = () => {},
): Promise<{ url: string; close(): Promise<void> }> {
  const headersTimeout = settings.headersTimeoutMs ?? DEFAULTS.headersTimeoutMs;
  const handle = proxy.app.callback();
  const shedder = new LoadShedder(settings.shedLagMs ?? DEFAULTS.shedLagMs, onShed);
  const server = createServer(
    { headersTimeout, requestTimeout: 0, connectionsCheckingInterval: Math.min(1_000, headersTimeout) },
    (req, res) => {
      if (shedder.admit(req, res)) void handle(req, res);
    },
  );
  limitConnectionsPerClient(
    server,
    settings.maxClientConnections ?? DEFAULTS.maxClientConnections,
    trustedProxies(settings.trustedProxies),
  );
  const publicSide: Listening = await listen(server, port, settings.host, 'PORT', settings.drainMs);
  publicSide.server.on('upgrade', proxy.upgrade);
  publicSide.server.on('connect', refuseConnect);
  publicSide.server.on('clientError', rejectMalformed);
  return {
    url: publicSide.url,
    close: async () => {
      const cut = setTimeout(() => proxy.closeTunnels(), settings.drainMs);
      shedder.close();
      await publicSide.close();
      clearTimeout(cut);
    },
  };
}

/** CONNECT would make the proxy a tunnel to anywhere: refused, with an answer instead of a dropped connection. */
function refuseConnect(_req: unknown, socket: Socket): void {
  socket.end(
    rawAnswer(405, '405 Method Not Allowed: this proxy does not tunnel (CONNECT).\n', {
      Allow: 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS',
    }),
  );
}

/**
 * Node's parser rejects malformed requests (bad header characters, both
 * Content-Length and Transfer-Encoding, headers too large) before any handler
 * runs; answer them plainly instead of dropping the connection.
 */
function rejectMalformed(err: NodeJS.ErrnoException & { rawPacket?: Buffer }, socket: Socket): void {
  if (!socket.writable || err.code === 'ECONNRESET') {
    socket.destroy();
    return;
  }
  const [status, text] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'Request Header Fields Too Large: the request headers are too large']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'Request Timeout: the request took too long to arrive']
        : err.code === 'HPE_UNEXPECTED_CONTENT_LENGTH' || err.code === 'HPE_INVALID_TRANSFER_ENCODING'
          ? [400, 'Bad Request: Content-Length and Transfer-Encoding conflict']
          : err.code === 'HPE_INVALID_HEADER_TOKEN'
            ? [400, 'Bad Request: a header has an invalid character']
            : [400, 'Bad Request: the request is not valid HTTP/1.1'];
  socket.end(rawAnswer(status, `${status} ${text}\n`));
}
