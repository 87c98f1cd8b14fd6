import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseDuration, parseSize } from './duration.js';
import { BanyanError } from './errors.js';
import { ANSWER_TIMEOUT_MS, checkSchemaName } from './pg-pool.js';

/** One running endpoint of a service of the local stack: where it listens, and its process id (null while it is down). */
export interface StackEndpoint {
  readonly url: string;
  readonly pid: number | null;
}

/** What `npm start` writes to `.banyan/stack.json`, so other commands find the stack. */
export interface StackFile {
  readonly proxy: string;
  readonly admin: string;
  /** The first app instance (kept for commands and scripts that know one app); every instance is in `services.app`. */
  readonly app: string;
  readonly legacy: string;
  readonly primary: string;
  readonly replicas: readonly string[];
  readonly redis: string | null;
  readonly adminToken: string;
  /** The proxy's upstreams, each a list of endpoints: `legacy`, `app` (one per instance, `app-1` first) and `files`. */
  readonly services?: Readonly<Record<string, readonly StackEndpoint[]>>;
  /** The Prometheus `npm start --prometheus` runs, scraping the stack. */
  readonly prometheus?: string | null;
  /** Process ids of the supervisor, each component by its supervisor name (`proxy`, `app-1`, `files`, …) and the data servers (null while one is down). */
  readonly pids?: Readonly<Record<string, number | null>>;
}

/** Every setting, read from the environment once; see README.md for each. */
export interface Settings {
  /** DATABASE_URL: the primary, or a comma list of every server (roles are asked, not configured). */
  readonly databaseUrl: string | undefined;
  /** The PostgreSQL schema Banyan's own tables live in, apart from the application's (BANYAN_SCHEMA; default `banyan`). */
  readonly schema: string;
  readonly replicaUrls: readonly string[];
  readonly redisUrl: string | undefined;
  /** LEGACY_URL and APP_URL: each a comma list of endpoint URLs, as given (every entry checked). */
  readonly legacyUrl: string | undefined;
  readonly appUrl: string | undefined;
  readonly secret: string | undefined;
  readonly adminToken: string | undefined;
  /** Where the proxy's admin listener is, for commands that ask it (BANYAN_ADMIN_URL). */
  readonly adminUrl: string | undefined;
  readonly host: string;
  readonly port: number | undefined;
  readonly adminHost: string;
  readonly adminPort: number | undefined;
  /** The routes file that seeds an empty route table. */
  readonly routesFile: string | undefined;
  readonly routesPollMs: number;
  readonly trustedProxies: string | undefined;
  readonly sessionCookie: string | undefined;
  /** The cap on a read-your-writes pin's life (BANYAN_PIN_TTL). */
  readonly pinTtlMs: number;
  /** `lsn` (exact, the default) or `timed` (read from the primary for the whole TTL) (BANYAN_PIN_MODE). */
  readonly pinMode: 'lsn' | 'timed';
  /**
   * `read-your-writes` (the default), or `monotonic`: a session also never reads older than it has read
   * (BANYAN_READ_CONSISTENCY; needs BANYAN_SECRET and BANYAN_PIN_MODE=lsn).
   */
  readonly readConsistency: 'read-your-writes' | 'monotonic';
  /** Reads of a declared resource when Redis is down: `skip` its fence, or go to the `primary` (BANYAN_FENCES_REDIS_DOWN). */
  readonly fencesWhenDown: 'skip' | 'primary';
  /** The proxy's access log: one line per request (BANYAN_LOG=json|pretty|off; default json). */
  readonly accessLog: 'json' | 'pretty' | 'off';
  /** Each backend's query log: every query, the slow ones, or none (BANYAN_QUERY_LOG=all|slow|off, BANYAN_QUERY_LOG_SLOW_MS; default off, 100). */
  readonly queryLog: { readonly mode: 'off' | 'all' | 'slow'; readonly slowMs: number };
  /** Debug headers on forwarded answers: Banyan-Route and Server-Timing (BANYAN_DEBUG_HEADERS=on; default off). */
  readonly debugHeaders: boolean;
  /** DB router tuning (BANYAN_REPLICA_POLL, BANYAN_READ_FENCE_WAIT, BANYAN_MAX_REPLICA_LAG, BANYAN_MAX_REPLICA_LAG_BYTES,
   * BANYAN_MAX_PRIMARY_READS, BANYAN_REPLICA_CHOICE); see README. */
  readonly reads: ReadSettings;
  /** How often a pool with no replica monitor (the proxy's, commands') asks which server is the primary (BANYAN_ROLE_POLL; default 1s). */
  readonly rolePollMs: number;
  /** How long SIGTERM waits for requests in flight before closing connections. */
  readonly drainMs: number;
  /** How long a client may take to send its request headers before the proxy answers 408 and closes (BANYAN_HEADERS_TIMEOUT; default 10s). */
  readonly headersTimeoutMs: number;
  /** Open connections one client address may hold on the proxy; trusted proxies are exempt (BANYAN_MAX_CLIENT_CONNECTIONS; default 256). */
  readonly maxClientConnections: number;
  /** Request bodies up to this size are read whole before an upstream connection is taken; larger ones stream after it (BANYAN_BODY_BUFFER; default 64KiB). */
  readonly bodyBufferBytes: number;
  /** The longest a request body may go without a byte, and its head start before the minimum rate counts (BANYAN_BODY_TIMEOUT; default 10s). */
  readonly bodyTimeoutMs: number;
  /** The average rate a request body must keep after its head start, in bytes per second (BANYAN_BODY_MIN_RATE; default 1KiB). */
  readonly bodyMinRate: number;
  /** How long a request may wait for a connection to its upstream before 503 with Retry-After (BANYAN_UPSTREAM_QUEUE_TIMEOUT; default 5s). */
  readonly upstreamQueueTimeoutMs: number;
  /** The share, in percent, of a service's connections one client address (an IPv6 /64) may hold at once (BANYAN_CLIENT_SHARE; default 25). */
  readonly clientSharePercent: number;
  /**
   * Load shedding: while the proxy's event loop is busy and runs this late for 100 ms together, a growing
   * share of new requests gets 503 with Retry-After (BANYAN_SHED_LAG; default 25ms; off: never shed).
   */
  readonly shedLagMs: number;
  /** Where the app keeps uploaded files (BANYAN_STORAGE; default .banyan/files). */
  readonly storageDir: string;
  /** The index's public origin (`https://pypi.example.org`) for the absolute URLs it writes; else they follow Host and vary on it (BANYAN_PUBLIC_URL). */
  readonly publicUrl: string | undefined;
  /** Whether the app believes X-Forwarded-Host for those URLs when BANYAN_PUBLIC_URL is unset (BANYAN_TRUST_FORWARDED_HOST=on; default off). */
  readonly trustForwardedHost: boolean;
  /** The largest file an upload may carry (BANYAN_MAX_UPLOAD; default 100MiB). */
  readonly maxUploadBytes: number;
  /** New projects one account may create in an hour (BANYAN_PROJECTS_PER_HOUR; default 20). */
  readonly projectsPerHour: number;
  /** How often each proxy adds its usage counts to PostgreSQL (BANYAN_USAGE_FLUSH; default 60s). */
  readonly usageFlushMs: number;
  /** Where a proxy keeps usage counts PostgreSQL could not take when it stopped; the next start adds them (BANYAN_USAGE_SPOOL). */
  readonly usageSpoolDir: string;
  /** How often each proxy reports the autopilot's evidence and the lease holder walks the plans (BANYAN_AUTOPILOT_TICK; default 1s). */
  readonly autopilotTickMs: number;
  /** How long the autopilot lease lasts unrenewed: the takeover time when its proxy dies (BANYAN_AUTOPILOT_LEASE; default 5s). */
  readonly autopilotLeaseMs: number;
  /** Where every plan's events go as JSON, unless the plan names its own webhook (BANYAN_AUTOPILOT_WEBHOOK). */
  readonly autopilotWebhook: string | undefined;
  /** The Prometheus a plan's `checks` are queried on (BANYAN_PROMETHEUS_URL; `npm start --prometheus` runs one). */
  readonly prometheusUrl: string | undefined;
  /** How long `npm start` waits before restarting a component that died; it doubles on each death (BANYAN_RESTART_DELAY; default 500ms). */
  readonly restartDelayMs: number;
  /** Where the stack file came from, when settings fell back to it. */
  readonly stackFile: string | undefined;
}

/** 100 MiB, PyPI's default per-file limit (BANYAN_MAX_UPLOAD). */
export const DEFAULT_MAX_UPLOAD = 100 * 1024 * 1024;

/** New projects one account may create in an hour, unless configured (BANYAN_PROJECTS_PER_HOUR). */
export const DEFAULT_PROJECTS_PER_HOUR = 20;

/** Every default a setting falls back to, in one place (components that take options use the same). */
export const DEFAULTS = {
  proxyPort: 8080,
  adminPort: 9090,
  appPort: 8081,
  legacyPort: 8082,
  /** `npm start --prometheus`: Prometheus's own 9090 is the admin port. */
  prometheusPort: 9091,
  routesPollMs: 2_000,
  drainMs: 10_000,
  headersTimeoutMs: 10_000,
  bodyBufferBytes: 64 * 1024,
  bodyTimeoutMs: 10_000,
  bodyMinRate: 1024,
  upstreamQueueTimeoutMs: 5_000,
  clientSharePercent: 25,
  shedLagMs: 25,
  usageFlushMs: 60_000,
  autopilotTickMs: 1_000,
  autopilotLeaseMs: 5_000,
  restartDelayMs: 500,
  rolePollMs: 1_000,
  queryLogSlowMs: 100,
  schema: 'banyan',
  pinTtlMs: 30_000,
  pinMode: 'lsn',
  maxClientConnections: 256,
  /** The DB router's reading of every server's role and position (BANYAN_REPLICA_POLL). */
  replicaPollMs: 100,
  fenceWaitMs: 0,
  maxReplicaLagMs: 30_000,
  maxReplicaLagBytes: 64 * 1024 * 1024,
  dbResolveMs: 10_000,
} as const;

/** The folder `npm start` keeps its data in. */
export function stackDir(cwd = process.cwd()): string {
  return join(cwd, '.banyan');
}

/** Reads `.banyan/stack.json`, or undefined when there is none. */
export function readStackFile(path = join(stackDir(), 'stack.json')): StackFile | undefined {
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as StackFile;
  } catch (err) {
    throw new BanyanError('bad-stack-file', `${path} is not valid JSON: ${(err as Error).message}`, 'delete it and run `npm start` again');
  }
}

/**
 * Reads and checks every setting. Variables that are unset fall back to the
 * running `npm start` stack (`.banyan/stack.json`), so commands work against
 * it with no setup. A malformed value throws, naming the variable.
 */
export function loadSettings(env: NodeJS.ProcessEnv = process.env, stack: StackFile | undefined = readStackFile()): Settings {
  const pick = (name: string, fallback: string | null | undefined): string | undefined => {
    const value = env[name];
    if (value !== undefined && value !== '') return value;
    return fallback ?? undefined;
  };
  const databaseUrl = pick('DATABASE_URL', stack?.primary);
  const replicas = pick('DATABASE_REPLICA_URLS', stack?.replicas.join(','));
  const usedStack = stack !== undefined && !env['DATABASE_URL'];
  return Object.freeze({
    databaseUrl: optionalUrlList('DATABASE_URL', databaseUrl, ['postgres:', 'postgresql:']),
    schema: schemaSetting(env['BANYAN_SCHEMA']),
    replicaUrls: Object.freeze(
      (replicas ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
        .map((u, i) => checkUrl(`DATABASE_REPLICA_URLS (entry ${i + 1})`, u, ['postgres:', 'postgresql:'])),
    ),
    redisUrl: optionalUrl('REDIS_URL', pick('REDIS_URL', stack?.redis), ['redis:', 'rediss:']),
    legacyUrl: optionalUrlList('LEGACY_URL', pick('LEGACY_URL', stack?.legacy), ['http:', 'https:']),
    appUrl: optionalUrlList('APP_URL', pick('APP_URL', stack?.app), ['http:', 'https:']),
    secret: checkSecret(pick('BANYAN_SECRET', undefined)),
    adminToken: pick('BANYAN_ADMIN_TOKEN', stack?.adminToken),
    adminUrl: optionalUrl('BANYAN_ADMIN_URL', pick('BANYAN_ADMIN_URL', stack?.admin), ['http:', 'https:']),
    host: env['HOST'] || '127.0.0.1',
    port: optionalPort('PORT', env['PORT']),
    adminHost: env['ADMIN_HOST'] || '127.0.0.1',
    adminPort: optionalPort('ADMIN_PORT', env['ADMIN_PORT']),
    routesFile: env['BANYAN_ROUTES_FILE'] || undefined,
    routesPollMs: env['BANYAN_ROUTES_POLL'] ? parseDuration(env['BANYAN_ROUTES_POLL'], 'BANYAN_ROUTES_POLL') : DEFAULTS.routesPollMs,
    trustedProxies: env['BANYAN_TRUSTED_PROXIES'] || undefined,
    sessionCookie: checkCookieName(env['BANYAN_SESSION_COOKIE']),
    pinTtlMs: env['BANYAN_PIN_TTL'] ? parseDuration(env['BANYAN_PIN_TTL'], 'BANYAN_PIN_TTL') : DEFAULTS.pinTtlMs,
    pinMode: checkPinMode(env['BANYAN_PIN_MODE']),
    readConsistency: checkConsistency(env['BANYAN_READ_CONSISTENCY'], env['BANYAN_PIN_MODE']),
    fencesWhenDown: oneOf('BANYAN_FENCES_REDIS_DOWN', env['BANYAN_FENCES_REDIS_DOWN'], ['skip', 'primary'] as const),
    accessLog: oneOf('BANYAN_LOG', env['BANYAN_LOG'], ['json', 'pretty', 'off'] as const),
    queryLog: {
      mode: oneOf('BANYAN_QUERY_LOG', env['BANYAN_QUERY_LOG'], ['off', 'all', 'slow'] as const),
      slowMs: wholeNumber('BANYAN_QUERY_LOG_SLOW_MS', env['BANYAN_QUERY_LOG_SLOW_MS']) ?? DEFAULTS.queryLogSlowMs,
    },
    debugHeaders: oneOf('BANYAN_DEBUG_HEADERS', env['BANYAN_DEBUG_HEADERS'] || 'off', ['off', 'on'] as const) === 'on',
    reads: {
      monitorIntervalMs: env['BANYAN_REPLICA_POLL']
        ? parseDuration(env['BANYAN_REPLICA_POLL'], 'BANYAN_REPLICA_POLL')
        : DEFAULTS.replicaPollMs,
      fenceWaitMs: env['BANYAN_READ_FENCE_WAIT']
        ? parseDuration(env['BANYAN_READ_FENCE_WAIT'], 'BANYAN_READ_FENCE_WAIT')
        : DEFAULTS.fenceWaitMs,
      maxLagSeconds:
        (env['BANYAN_MAX_REPLICA_LAG']
          ? parseDuration(env['BANYAN_MAX_REPLICA_LAG'], 'BANYAN_MAX_REPLICA_LAG')
          : DEFAULTS.maxReplicaLagMs) / 1000,
      maxLagBytes: wholeNumber('BANYAN_MAX_REPLICA_LAG_BYTES', env['BANYAN_MAX_REPLICA_LAG_BYTES']) ?? DEFAULTS.maxReplicaLagBytes,
      maxPrimaryReads: wholeNumber('BANYAN_MAX_PRIMARY_READS', env['BANYAN_MAX_PRIMARY_READS']),
      choice: oneOf('BANYAN_REPLICA_CHOICE', env['BANYAN_REPLICA_CHOICE'], ['round-robin', 'least-in-flight'] as const),
      resolveEveryMs: resolveInterval(env['BANYAN_DB_RESOLVE']),
      answerTimeoutMs: env['BANYAN_DB_ANSWER_TIMEOUT']
        ? atLeast('BANYAN_DB_ANSWER_TIMEOUT', parseDuration(env['BANYAN_DB_ANSWER_TIMEOUT'], 'BANYAN_DB_ANSWER_TIMEOUT'), 100)
        : ANSWER_TIMEOUT_MS,
    },
    rolePollMs: env['BANYAN_ROLE_POLL']
      ? atLeast('BANYAN_ROLE_POLL', parseDuration(env['BANYAN_ROLE_POLL'], 'BANYAN_ROLE_POLL'), 10)
      : DEFAULTS.rolePollMs,
    drainMs: env['BANYAN_DRAIN'] ? parseDuration(env['BANYAN_DRAIN'], 'BANYAN_DRAIN') : DEFAULTS.drainMs,
    headersTimeoutMs: env['BANYAN_HEADERS_TIMEOUT']
      ? parseDuration(env['BANYAN_HEADERS_TIMEOUT'], 'BANYAN_HEADERS_TIMEOUT')
      : DEFAULTS.headersTimeoutMs,
    maxClientConnections:
      positive('BANYAN_MAX_CLIENT_CONNECTIONS', wholeNumber('BANYAN_MAX_CLIENT_CONNECTIONS', env['BANYAN_MAX_CLIENT_CONNECTIONS'])) ??
      DEFAULTS.maxClientConnections,
    bodyBufferBytes: env['BANYAN_BODY_BUFFER'] ? parseSize(env['BANYAN_BODY_BUFFER'], 'BANYAN_BODY_BUFFER') : DEFAULTS.bodyBufferBytes,
    bodyTimeoutMs: env['BANYAN_BODY_TIMEOUT']
      ? atLeastOne('BANYAN_BODY_TIMEOUT', parseDuration(env['BANYAN_BODY_TIMEOUT'], 'BANYAN_BODY_TIMEOUT'))
      : DEFAULTS.bodyTimeoutMs,
    bodyMinRate: env['BANYAN_BODY_MIN_RATE'] ? parseSize(env['BANYAN_BODY_MIN_RATE'], 'BANYAN_BODY_MIN_RATE') : DEFAULTS.bodyMinRate,
    upstreamQueueTimeoutMs: env['BANYAN_UPSTREAM_QUEUE_TIMEOUT']
      ? atLeastOne('BANYAN_UPSTREAM_QUEUE_TIMEOUT', parseDuration(env['BANYAN_UPSTREAM_QUEUE_TIMEOUT'], 'BANYAN_UPSTREAM_QUEUE_TIMEOUT'))
      : DEFAULTS.upstreamQueueTimeoutMs,
    clientSharePercent: percent('BANYAN_CLIENT_SHARE', env['BANYAN_CLIENT_SHARE']) ?? DEFAULTS.clientSharePercent,
    shedLagMs:
      env['BANYAN_SHED_LAG'] === 'off'
        ? 0
        : env['BANYAN_SHED_LAG']
          ? atLeastOne('BANYAN_SHED_LAG', parseDuration(env['BANYAN_SHED_LAG'], 'BANYAN_SHED_LAG'))
          : DEFAULTS.shedLagMs,
    storageDir: env['BANYAN_STORAGE'] || join(stackDir(), 'files'),
    publicUrl: publicOrigin(env['BANYAN_PUBLIC_URL']),
    trustForwardedHost: oneOf('BANYAN_TRUST_FORWARDED_HOST', env['BANYAN_TRUST_FORWARDED_HOST'] || 'off', ['off', 'on'] as const) === 'on',
    maxUploadBytes: env['BANYAN_MAX_UPLOAD'] ? parseSize(env['BANYAN_MAX_UPLOAD'], 'BANYAN_MAX_UPLOAD') : DEFAULT_MAX_UPLOAD,
    projectsPerHour:
      positive('BANYAN_PROJECTS_PER_HOUR', wholeNumber('BANYAN_PROJECTS_PER_HOUR', env['BANYAN_PROJECTS_PER_HOUR'])) ??
      DEFAULT_PROJECTS_PER_HOUR,
    usageFlushMs: env['BANYAN_USAGE_FLUSH'] ? parseDuration(env['BANYAN_USAGE_FLUSH'], 'BANYAN_USAGE_FLUSH') : DEFAULTS.usageFlushMs,
    usageSpoolDir: env['BANYAN_USAGE_SPOOL'] || join(stackDir(), 'usage-spool'),
    ...autopilotTiming(env),
    autopilotWebhook: webhookUrl(env['BANYAN_AUTOPILOT_WEBHOOK']),
    prometheusUrl: optionalUrl('BANYAN_PROMETHEUS_URL', pick('BANYAN_PROMETHEUS_URL', stack?.prometheus ?? undefined), ['http:', 'https:']),
    restartDelayMs: env['BANYAN_RESTART_DELAY']
      ? parseDuration(env['BANYAN_RESTART_DELAY'], 'BANYAN_RESTART_DELAY')
      : DEFAULTS.restartDelayMs,
    stackFile: usedStack ? join(stackDir(), 'stack.json') : undefined,
  });
}

/** What a backend process (the new app, legacy) needs to run: its data services, file store and listener. */
export type BackendRuntimeOptions = Pick<Settings, 'replicaUrls' | 'storageDir' | 'host'> &
  Partial<Pick<Settings, 'reads' | 'redisUrl' | 'publicUrl' | 'trustForwardedHost' | 'maxUploadBytes' | 'projectsPerHour' | 'drainMs'>> & {
    /** DATABASE_URL, required here. */
    readonly primaryUrl: string;
    /** 0: any free port. */
    readonly port: number;
  };

/** How the DB router spreads and limits reads. */
export interface ReadSettings {
  readonly monitorIntervalMs: number;
  readonly fenceWaitMs: number;
  readonly maxLagSeconds: number;
  readonly maxLagBytes: number;
  readonly maxPrimaryReads: number | undefined;
  readonly choice: 'round-robin' | 'least-in-flight';
  /** How often host names in the database URLs are resolved again, a server per address; 0: never (BANYAN_DB_RESOLVE). */
  readonly resolveEveryMs: number;
  /** How long a query waits for its server's answer before the server counts as unreachable (BANYAN_DB_ANSWER_TIMEOUT). */
  readonly answerTimeoutMs?: number | undefined;
}

/** The value of a setting a command cannot run without, or a clear error naming it. */
/** Who runs a command-line change, for the journal and the audit log: the operating-system user. */
export function operatorName(env: NodeJS.ProcessEnv = process.env): string {
  return `operator (${env['USER'] || env['LOGNAME'] || 'unknown'})`;
}

/** The proxy's access log under `banyan start`: off unless BANYAN_LOG asks (a line per request would bury the stack's own messages). */
export function stackAccessLog(env: NodeJS.ProcessEnv = process.env): string {
  return env['BANYAN_LOG'] || 'off';
}

/** Whether unexpected errors print their stack (BANYAN_DEBUG=1). */
export function showsStacks(env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(env['BANYAN_DEBUG']);
}

export function required<T>(value: T | undefined, variable: string, purpose: string): T {
  if (value === undefined || value === null || value === '') {
    throw new BanyanError(
      'missing-setting',
      `${variable} is not set; it is needed ${purpose}`,
      `set ${variable}, or run \`npm start\` in this folder so commands find the local stack`,
    );
  }
  return value;
}

function checkUrl(variable: string, value: string, protocols: string[]): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new BanyanError('bad-setting', `${variable} is not a URL: "${value}"`, `expected ${protocols[0]}//host:port/...`);
  }
  if (!protocols.includes(url.protocol)) {
    throw new BanyanError('bad-setting', `${variable} must start with ${protocols.join(' or ')}//, not ${url.protocol}//`);
  }
  if (!url.hostname) throw new BanyanError('bad-setting', `${variable} has no host: "${value}"`);
  return value;
}

/** An http(s) origin, no path, query or credentials: what absolute URLs start with. */
function publicOrigin(value: string | undefined): string | undefined {
  if (!value) return undefined;
  const url = new URL(checkUrl('BANYAN_PUBLIC_URL', value, ['http:', 'https:']));
  if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.hash || url.username || url.password) {
    throw new BanyanError(
      'bad-setting',
      `BANYAN_PUBLIC_URL must be an origin such as https://pypi.example.org, with no path, query or credentials: "${value}"`,
    );
  }
  return url.origin;
}

function optionalUrl(variable: string, value: string | undefined, protocols: string[]): string | undefined {
  return value === undefined ? undefined : checkUrl(variable, value, protocols);
}

/**
 * A comma list of URLs (LEGACY_URL, APP_URL: an upstream's endpoints), each checked like a single URL;
 * a bad entry of a list is named by its place (`APP_URL (entry 2)`). Returned as given: the proxy splits it.
 */
function optionalUrlList(variable: string, value: string | undefined, protocols: string[]): string | undefined {
  if (value === undefined) return undefined;
  const entries = value.split(',').map((s) => s.trim());
  entries.forEach((entry, i) => checkUrl(entries.length > 1 ? `${variable} (entry ${i + 1})` : variable, entry, protocols));
  return value;
}

function optionalPort(variable: string, value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  const port = Number(value);
  if (!/^\d+$/.test(value) || port > 65_535) {
    throw new BanyanError('bad-setting', `${variable} must be a port number from 0 to 65535, not "${value}"`);
  }
  return port;
}

function wholeNumber(variable: string, value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  if (!/^\d+$/.test(value)) throw new BanyanError('bad-setting', `${variable} must be a whole number, not "${value}"`);
  return Number(value);
}

function atLeastOne(variable: string, ms: number): number {
  if (ms < 1) throw new BanyanError('bad-setting', `${variable} must be longer than 0`);
  return ms;
}

/** A share from 1 to 100 (percent). */
function percent(variable: string, value: string | undefined): number | undefined {
  const n = wholeNumber(variable, value);
  if (n !== undefined && (n < 1 || n > 100))
    throw new BanyanError('bad-setting', `${variable} must be a percentage from 1 to 100, not "${value}"`);
  return n;
}

function positive(variable: string, value: number | undefined): number | undefined {
  if (value === 0) throw new BanyanError('bad-setting', `${variable} must be at least 1, not 0`);
  return value;
}

/** BANYAN_DB_RESOLVE: a duration of at least 100ms, or `off`. */
function resolveInterval(value: string | undefined): number {
  if (value === undefined || value === '') return DEFAULTS.dbResolveMs;
  if (value === 'off') return 0;
  return atLeast('BANYAN_DB_RESOLVE', parseDuration(value, 'BANYAN_DB_RESOLVE'), 100);
}

function atLeast(variable: string, ms: number, min: number): number {
  if (ms < min) throw new BanyanError('bad-setting', `${variable} must be at least ${min}ms, not ${ms}ms`);
  return ms;
}

function checkPinMode(value: string | undefined): 'lsn' | 'timed' {
  return oneOf('BANYAN_PIN_MODE', value, ['lsn', 'timed'] as const);
}

function checkConsistency(value: string | undefined, pinMode: string | undefined): 'read-your-writes' | 'monotonic' {
  const consistency = oneOf('BANYAN_READ_CONSISTENCY', value, ['read-your-writes', 'monotonic'] as const);
  if (consistency === 'monotonic' && pinMode === 'timed') {
    throw new BanyanError(
      'bad-setting',
      'BANYAN_READ_CONSISTENCY=monotonic needs BANYAN_PIN_MODE=lsn: a timed pin holds no position to read at or past',
    );
  }
  return consistency;
}

/** One of `choices` (the first when unset), or an error naming the variable and the choices. */
function oneOf<T extends string>(variable: string, value: string | undefined, choices: readonly T[]): T {
  if (value === undefined || value === '') return choices[0]!;
  if ((choices as readonly string[]).includes(value)) return value as T;
  throw new BanyanError('bad-setting', `${variable} must be ${choices.join(' or ')}, not "${value}"`);
}

function checkCookieName(value: string | undefined): string | undefined {
  if (!value) return undefined;
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(value)) {
    throw new BanyanError('bad-setting', `BANYAN_SESSION_COOKIE must be a cookie name, not "${value}"`);
  }
  return value;
}

function checkSecret(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const secrets = value.split(',');
  if (secrets.some((s) => s.length < 16)) {
    throw new BanyanError(
      'bad-setting',
      'BANYAN_SECRET must be at least 16 characters (a comma list during rotation, newest first)',
      'generate one with `openssl rand -base64 32`',
    );
  }
  return value;
}

/** BANYAN_AUTOPILOT_WEBHOOK: an http(s) URL, or unset. */
function webhookUrl(value: string | undefined): string | undefined {
  if (!value) return undefined;
  if (!/^https?:\/\//.test(value) || !URL.canParse(value)) {
    throw new BanyanError('bad-setting', `BANYAN_AUTOPILOT_WEBHOOK must be an http:// or https:// URL, not "${value}"`);
  }
  return value;
}

/** BANYAN_AUTOPILOT_TICK and _LEASE: a lease shorter than two ticks would change hands while its holder is still working. */
function autopilotTiming(env: NodeJS.ProcessEnv): { autopilotTickMs: number; autopilotLeaseMs: number } {
  const tick = env['BANYAN_AUTOPILOT_TICK']
    ? parseDuration(env['BANYAN_AUTOPILOT_TICK'], 'BANYAN_AUTOPILOT_TICK')
    : DEFAULTS.autopilotTickMs;
  const lease = env['BANYAN_AUTOPILOT_LEASE']
    ? parseDuration(env['BANYAN_AUTOPILOT_LEASE'], 'BANYAN_AUTOPILOT_LEASE')
    : DEFAULTS.autopilotLeaseMs;
  if (tick < 50) throw new BanyanError('bad-setting', `BANYAN_AUTOPILOT_TICK must be at least 50ms, not "${env['BANYAN_AUTOPILOT_TICK']}"`);
  if (lease < 2 * tick) {
    throw new BanyanError(
      'bad-setting',
      `BANYAN_AUTOPILOT_LEASE (${lease} ms) must be at least twice BANYAN_AUTOPILOT_TICK (${tick} ms)`,
      'the holder renews the lease every tick; a shorter lease changes hands while its holder is still working',
    );
  }
  return { autopilotTickMs: tick, autopilotLeaseMs: lease };
}

function schemaSetting(value: string | undefined): string {
  if (value === undefined || value === '') return DEFAULTS.schema;
  try {
    return checkSchemaName(value);
  } catch (err) {
    throw new BanyanError('bad-setting', `BANYAN_SCHEMA: ${(err as Error).message}`);
  }
}
