import Router from '@koa/router';
import { createHash, timingSafeEqual } from 'node:crypto';
import Koa from 'koa';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import type { Kysely } from 'kysely';
import type { Registry } from 'prom-client';
import { suggestsNewPrimary } from '../lib/db-roles.js';
import { BanyanError, httpStatusOf } from '../lib/errors.js';
import { readUpTo } from '../lib/form-body.js';
import { isObject } from '../lib/objects.js';
import type { BanyanDatabase } from '../lib/schema.js';
import {
  auditLog,
  changeRoute,
  describeChange,
  IMPLICIT_UPSTREAMS,
  latestTable,
  type Mode,
  MODES,
  rollbackTable,
  saveTable,
  validateTable,
} from '../routing/table/index.js';
import { CHART_JS, DASHBOARD_HTML, readAsset } from './dashboard.js';
import type { Shadower } from './shadow.js';
import type { ReadinessCheck } from './readiness.js';
import type { UpstreamSnapshot } from './upstreams/index.js';

export interface AdminOptions {
  readonly registry: Registry;
  /** The text served at /metrics, when not this registry's alone (all workers of `--workers N`). */
  readonly metricsText?: (() => Promise<string>) | undefined;
  /** Resolves with a check per dependency; ready when every required one passed. */
  readonly ready: () => Promise<Record<string, ReadinessCheck>>;
  /** Host names of this listener besides IP literals and `localhost` (ADMIN_HOST); probes answer no other Host without the token. */
  readonly hostNames?: readonly string[] | undefined;
  /** The route API; absent in processes that do not own a route table. */
  readonly routes?: {
    readonly db: Kysely<BanyanDatabase>;
    readonly adminToken: string | undefined;
    readonly shadow: Shadower;
    /** Called after a change is stored: announce it and apply it here at once. */
    readonly changed: (version: number) => Promise<void>;
    /** What this proxy is doing now: the table version in effect, its services and shadow results. */
    readonly status: () => Record<string, unknown>;
    /** Each service this proxy sends to, with its endpoints' health, ejections, requests in flight and breakers. */
    readonly upstreams?: () => readonly UpstreamSnapshot[];
    /** The built-in dashboard's numbers (`GET /api/dashboard`). */
    readonly dashboard?: () => Promise<unknown>;
  };
}

const MAX_BODY = 1024 * 1024;

/**
 * The admin listener (loopback by default, never on the public port):
 * liveness, readiness, metrics, and the route API behind a bearer token.
 */
export function createAdmin(options: AdminOptions): Koa {
  const app = new Koa();
  const router = new Router();
  app.use(errorAnswers);
  probes(router, options, ownHostOrToken(options.hostNames ?? [], options.routes?.adminToken));
  const api = options.routes;
  if (api) {
    const guard = bearer(api.adminToken);
    dashboard(router, api, guard);
    routeApi(router, api, guard);
  }
  app.use(router.routes());
  app.use(router.allowedMethods());
  return app;
}

type RouteApi = NonNullable<AdminOptions['routes']>;

/** Errors as JSON: a BanyanError with its code, message and hint; anything else as an internal error, logged. */
async function errorAnswers(ctx: Koa.Context, next: Koa.Next): Promise<void> {
  try {
    await next();
  } catch (err) {
    if (suggestsNewPrimary(err)) {
      // The database cannot take the write now: down, or failing over (the server written to was demoted).
      ctx.status = 503;
      ctx.set('Retry-After', '2');
      ctx.body = {
        error: 'database-unavailable',
        message: `the route table cannot be written now: ${(err as Error).message}`,
        hint: 'PostgreSQL is down or failing over; retry in a few seconds (nothing was changed)',
      };
      return;
    }
    const status = err instanceof BanyanError ? (httpStatusOf(err) ?? 400) : ((err as { status?: number }).status ?? 500);
    ctx.status = status;
    ctx.body =
      err instanceof BanyanError
        ? { error: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) }
        : {
            error: status >= 500 ? 'internal' : 'bad-request',
            message: status >= 500 ? 'internal error; see the proxy log' : (err as Error).message,
          };
    if (status >= 500) process.stderr.write(`admin: ${(err as Error).stack ?? err}\n`);
  }
}

/**
 * Readiness and metrics hold what a stranger should not read (endpoints, errors, traffic). They need no
 * token when asked by this listener's own names, as orchestrators and Prometheus ask: an IP literal,
 * `localhost`, ADMIN_HOST or this machine's name. A page on another site whose name was rebound to
 * this address (DNS rebinding) sends its own name as Host, and gets 403 unless it has the token.
 */
function ownHostOrToken(names: readonly string[], token: string | undefined): Koa.Middleware {
  const own = new Set(['localhost', hostname().toLowerCase(), ...names.map((n) => n.toLowerCase())]);
  const guard = bearer(token);
  return async (ctx, next) => {
    const host = ctx.get('Host').toLowerCase().replace(/:\d+$/, '');
    if (own.has(host) || isIP(host) !== 0 || /^\[[0-9a-f:.]+\]$/.test(host)) return next();
    if (ctx.get('authorization')) return guard(ctx, next);
    throw new BanyanError(
      'forbidden',
      'this admin listener answers only its own host names',
      'ask by IP address, localhost or ADMIN_HOST, or send Authorization: Bearer $BANYAN_ADMIN_TOKEN',
    );
  };
}

/** Liveness, readiness and metrics: no token from this listener's own names, for orchestrators and Prometheus. */
function probes(router: Router, options: AdminOptions, ownHost: Koa.Middleware): void {
  router.get('/healthz', (ctx) => {
    ctx.body = { status: 'ok' };
  });
  router.get('/readyz', ownHost, async (ctx) => {
    const checks = await options.ready();
    const ok = Object.values(checks).every((c) => c.ok || !c.required);
    ctx.status = ok ? 200 : 503;
    ctx.body = { status: ok ? 'ready' : 'not ready', checks };
  });
  router.get('/metrics', ownHost, async (ctx) => {
    ctx.type = options.registry.contentType;
    ctx.body = options.metricsText ? await options.metricsText() : await options.registry.metrics();
  });
}

/** The built-in dashboard: the page and its chart library (they hold no data), and the numbers behind the token. */
function dashboard(router: Router, api: RouteApi, guard: Koa.Middleware): void {
  const page = readAsset(DASHBOARD_HTML);
  const chart = readAsset(CHART_JS);
  router.get('/', (ctx) => {
    ctx.type = 'text/html; charset=utf-8';
    ctx.set('Cache-Control', 'no-store');
    ctx.body = page;
  });
  router.get('/assets/chart.js', (ctx) => {
    ctx.type = 'application/javascript; charset=utf-8';
    ctx.set('Cache-Control', 'public, max-age=86400');
    ctx.body = chart;
  });
  router.get('/api/dashboard', guard, async (ctx) => {
    if (!api.dashboard) throw new BanyanError('not-found', 'this process has no dashboard');
    ctx.body = await api.dashboard();
  });
}

/** The route API behind the token: change one route's mode, replace or roll back the table, history, status, shadow results. */
function routeApi(router: Router, api: RouteApi, guard: Koa.Middleware): void {
  router.post('/api/routes/:name/mode', guard, async (ctx) => {
    const body = await readJson(ctx);
    const name = ctx.params['name']!;
    const mode = body['mode'];
    if (typeof mode !== 'string' || !MODES.includes(mode as Mode))
      throw new BanyanError('bad-request', `mode must be one of ${MODES.join(', ')}`);
    const reason = typeof body['reason'] === 'string' ? body['reason'] : '';
    const current = await latestTable(api.db);
    const route = current?.routes.find((r) => r.name === name);
    if (!current || !route) throw new BanyanError('no-such-route', `there is no route named "${name}"`, 'see GET /api/routes');
    const changed = changeRoute(route, {
      mode: mode as Mode,
      percent: typeof body['percent'] === 'number' ? body['percent'] : undefined,
      // Any other type is passed on, so validation names the field instead of the change dropping it silently.
      service: body['service'] !== undefined ? (body['service'] as string) : undefined,
      fallback: body['fallback'] !== undefined ? (body['fallback'] as boolean | string) : undefined,
      retired: mode === 'retired' && !route.retired && reason.trim() ? { message: reason.trim() } : undefined,
    });
    const saved = await saveTable(api.db, {
      routes: current.routes.map((r) => (r.name === name ? changed : r)),
      actor: typeof body['actor'] === 'string' && body['actor'] ? `${body['actor']} (dashboard)` : 'dashboard',
      reason,
      expectedVersion: current.version,
    });
    await api.changed(saved.version);
    ctx.body = { version: saved.version, changes: describeChange(current.routes, saved.routes, current.upstreams, saved.upstreams) };
  });
  router.get('/api/routes', guard, async (ctx) => {
    const table = await latestTable(api.db);
    ctx.body = table ?? { version: 0, upstreams: IMPLICIT_UPSTREAMS, routes: [] };
  });
  // {routes, upstreams?, reason, expectedVersion?, dryRun?}: without upstreams, the current ones are kept.
  router.put('/api/routes', guard, async (ctx) => {
    const body = await readJson(ctx);
    const current = await latestTable(api.db);
    const table = body['upstreams'] !== undefined ? { upstreams: body['upstreams'], routes: body['routes'] } : body['routes'];
    if (body['dryRun'] === true) {
      const checked = validateTable(table, { upstreams: current?.upstreams });
      ctx.body = checked.ok
        ? {
            dryRun: true,
            valid: true,
            version: current?.version ?? 0,
            changes: describeChange(current?.routes ?? [], checked.routes, current?.upstreams ?? [], checked.upstreams),
          }
        : { dryRun: true, valid: false, problems: checked.problems };
      return;
    }
    const saved = await saveTable(api.db, {
      routes: table,
      actor: typeof body['actor'] === 'string' && body['actor'] ? `${body['actor']} (admin API)` : 'admin API',
      reason: typeof body['reason'] === 'string' ? body['reason'] : '',
      ...(typeof body['expectedVersion'] === 'number' ? { expectedVersion: body['expectedVersion'] } : {}),
    });
    await api.changed(saved.version);
    ctx.body = {
      version: saved.version,
      changes: describeChange(current?.routes ?? [], saved.routes, current?.upstreams ?? [], saved.upstreams),
    };
  });
  router.get('/api/routes/history', guard, async (ctx) => {
    const limit = Math.min(Math.max(Number(ctx.query['limit'] ?? 50) || 50, 1), 1000);
    ctx.body = await auditLog(api.db, limit);
  });
  router.post('/api/routes/rollback', guard, async (ctx) => {
    const body = await readJson(ctx);
    if (typeof body['version'] !== 'number' || !Number.isInteger(body['version'])) {
      throw new BanyanError('bad-request', 'rollback needs {"version": N, "reason": "…"}');
    }
    const saved = await rollbackTable(
      api.db,
      body['version'],
      typeof body['actor'] === 'string' ? `${body['actor']} (admin API)` : 'admin API',
      typeof body['reason'] === 'string' ? body['reason'] : '',
    );
    await api.changed(saved.version);
    ctx.body = { version: saved.version, restored: body['version'] };
  });
  router.get('/api/status', guard, (ctx) => {
    ctx.body = api.status();
  });
  router.get('/api/upstreams', guard, (ctx) => {
    ctx.body = { upstreams: api.upstreams?.() ?? [] };
  });
  router.get('/api/upstreams/:name', guard, (ctx) => {
    const all = api.upstreams?.() ?? [];
    const one = all.find((u) => u.name === ctx.params['name']);
    if (!one)
      throw new BanyanError(
        'not-found',
        `this proxy has no upstream named "${ctx.params['name']}"`,
        `its upstreams: ${all.map((u) => u.name).join(', ')}`,
      );
    ctx.body = one;
  });
  router.get('/api/shadow/:route', guard, (ctx) => {
    ctx.body = api.shadow.report(ctx.params['route']!);
  });
}

/** Requires `Authorization: Bearer <token>`, compared in constant time. */
function bearer(token: string | undefined): Koa.Middleware {
  const expected = token ? createHash('sha256').update(token).digest() : undefined;
  return async (ctx, next) => {
    if (!expected) {
      throw new BanyanError(
        'admin-disabled',
        'the admin API is disabled because BANYAN_ADMIN_TOKEN is not set',
        'set BANYAN_ADMIN_TOKEN and restart the proxy',
      );
    }
    const header = ctx.get('authorization');
    const given = header.startsWith('Bearer ') ? createHash('sha256').update(header.slice(7)).digest() : undefined;
    if (!given || !timingSafeEqual(given, expected)) {
      ctx.set('WWW-Authenticate', 'Bearer realm="banyan-admin"');
      throw new BanyanError('unauthorized', 'missing or wrong admin token', 'send Authorization: Bearer $BANYAN_ADMIN_TOKEN');
    }
    await next();
  };
}

async function readJson(ctx: Koa.Context): Promise<Record<string, unknown>> {
  if (!ctx.is('application/json')) throw new BanyanError('bad-request', 'send the body as JSON with Content-Type: application/json');
  const bytes = await readUpTo(ctx.req, MAX_BODY);
  if (!bytes) throw new BanyanError('too-large', `the body is over ${MAX_BODY} bytes`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new BanyanError('bad-request', `the body is not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(parsed)) {
    throw new BanyanError('bad-request', 'the body must be a JSON object such as {"routes": [...], "reason": "…"}');
  }
  return parsed;
}
