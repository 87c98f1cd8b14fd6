import type { Services } from '../../stack/local-stack.js';
import { startProxyRuntime, type ClientLimits, type ProxyRuntime } from '../../proxy/runtime.js';
import type { BreakerSettings } from '../../proxy/proxy.js';
import { connect } from '../../lib/database.js';
import { IMPLICIT_UPSTREAMS, type Route, saveTable, type TableSpec } from '../../routing/table/index.js';

export const ADMIN_TOKEN = 'test-admin-token';
export const TEST_SECRET = 'test-secret-0123456789abcdef';

/**
 * Stores `routes` as the newest table version (with an audit row, like any change). A bare list gets the
 * implicit upstreams (legacy and app from LEGACY_URL and APP_URL), whatever an earlier test left in the
 * shared database.
 */
export async function setRoutes(s: Pick<Services, 'primaryUrl'>, routes: Route[] | TableSpec, reason = 'test setup'): Promise<number> {
  const db = connect(s.primaryUrl, { max: 1, schema: 'banyan' });
  try {
    return (
      await saveTable(db, { routes: Array.isArray(routes) ? { upstreams: IMPLICIT_UPSTREAMS, routes } : routes, actor: 'test', reason })
    ).version;
  } finally {
    await db.destroy();
  }
}

/** A proxy in this process, reading its table from the shared test database. */
export async function startTestProxy(
  s: Services,
  legacyUrl: string,
  appUrl: string,
  options: {
    redisUrl?: string | null;
    pollMs?: number;
    breaker?: Partial<BreakerSettings>;
    sessionCookie?: string;
    drainMs?: number;
    secret?: string | null;
    pinTtlMs?: number;
    pinMode?: 'lsn' | 'timed';
    usageFlushMs?: number;
    trustedProxies?: string;
    headersTimeoutMs?: number;
    maxClientConnections?: number;
    debugHeaders?: boolean;
    limits?: Partial<ClientLimits>;
    databaseUrl?: string;
  } = {},
): Promise<ProxyRuntime> {
  return startProxyRuntime({
    settings: {
      databaseUrl: options.databaseUrl ?? s.primaryUrl,
      redisUrl: options.redisUrl === null ? undefined : (options.redisUrl ?? s.redisUrl ?? undefined),
      adminToken: ADMIN_TOKEN,
      host: '127.0.0.1',
      adminHost: '127.0.0.1',
      routesFile: undefined,
      routesPollMs: options.pollMs ?? 2_000,
      trustedProxies: options.trustedProxies,
      sessionCookie: options.sessionCookie,
      drainMs: options.drainMs ?? 1_000,
      secret: options.secret === null ? undefined : (options.secret ?? TEST_SECRET),
      pinTtlMs: options.pinTtlMs ?? 30_000,
      pinMode: options.pinMode ?? 'lsn',
      usageFlushMs: options.usageFlushMs ?? 60_000,
      // This proxy shares its event loop with the test's own clients and backends, so the load shedder would
      // measure their bursts and answer some of the test's requests 503. Shedding is tested against a
      // shedder and server of its own (test/load-shedding.test.ts).
      shedLagMs: 0,
      ...(options.headersTimeoutMs ? { headersTimeoutMs: options.headersTimeoutMs } : {}),
      ...(options.maxClientConnections ? { maxClientConnections: options.maxClientConnections } : {}),
      ...(options.debugHeaders ? { debugHeaders: true } : {}),
      ...options.limits,
    },
    legacyUrl,
    appUrl,
    port: 0,
    adminPort: 0,
    log: () => {},
    ...(options.breaker ? { breaker: options.breaker } : {}),
  });
}

/** GET (or another method) through the proxy, returning status, headers and text. */
export async function call(
  url: string,
  init: RequestInit = {},
): Promise<{ status: number; headers: Headers; text: string; backend: string | null }> {
  const res = await fetch(url, init);
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, backend: res.headers.get('x-backend') };
}
