import type { IndexDatabase } from '../package-index/schema.js';
import { quoted } from '../lib/quoted.js';
import Router from '@koa/router';
import Koa from 'koa';
import type { LoginThrottle } from '../lib/login-throttle.js';
import { isConnectionError } from '../lib/database.js';
import { httpStatusOf } from '../lib/errors.js';
import { inRequestScope, watchingRequests } from '../lib/request-scope.js';
import { dbForRequest, readReporter, type DbRouter, type FenceStore, type RequestDb } from '../routing/reads/index.js';
import type { DbFor } from './db-for.js';
import { WriteAnnouncer } from '../package-index/write-announcer.js';
import { fileRoutes } from './files.js';
import { jsonRoutes } from './json-api.js';
import { manageRoutes } from './manage-api.js';
import type { PageCache } from './page-cache.js';
import { projectPageRoutes } from './project-page.js';
import { simpleRoutes } from './simple-api.js';
import type { FileStore } from '../lib/file-store.js';
import { UPLOAD_FAILURES, uploadRoutes } from './upload/index.js';
import { DEFAULT_MAX_UPLOAD, DEFAULT_PROJECTS_PER_HOUR } from '../lib/config.js';
import type { OriginSettings } from './origin.js';
import { createAppMetrics, methodLabel, statusClass, type AppMetrics } from '../metrics/catalog.js';

export interface AppOptions {
  readonly router: DbRouter<IndexDatabase>;
  /** Resource fences (Redis); absent: reads honour only the session's own pin. */
  readonly fences?: FenceStore;
  /** Where uploaded files are kept (content-addressed). */
  readonly store: FileStore;
  /** Rendered simple pages (Redis); absent: no page cache. */
  readonly cache?: PageCache;
  /** The largest file an upload may carry (BANYAN_MAX_UPLOAD). */
  readonly maxUploadBytes?: number;
  /** New projects one account may create in an hour (BANYAN_PROJECTS_PER_HOUR). */
  readonly projectsPerHour?: number | undefined;
  /** The app's metrics (created here when not given); served at /metrics. */
  readonly metrics?: AppMetrics;
  /** Where absolute URLs point (BANYAN_PUBLIC_URL, BANYAN_TRUST_FORWARDED_HOST); default: the Host, varied on. */
  readonly origin?: OriginSettings | undefined;
  /** Password logins' throttle (Redis, or memory while it is down); absent: logins are not throttled. */
  readonly logins?: LoginThrottle | undefined;
}

/**
 * The new package index, as a Koa application. Every request gets one DB
 * handle from the router (reads on one replica that has replayed the
 * request's `X-Banyan-Min-LSN` fence, writes on the primary); the server it
 * read from is reported in `X-Banyan-Read-From`.
 */
export function createApp(options: AppOptions): Koa {
  const metrics = options.metrics ?? createAppMetrics(options.router, options.fences);
  const dbOf: DbFor = async (ctx, resources = []) => {
    const chosen = ctx.state['db'] as RequestDb<IndexDatabase> | undefined;
    if (chosen) return chosen;
    const db = await dbForRequest(
      options,
      ctx.req.headers,
      resources,
      readReporter(ctx.req.headers, (headers) => ctx.set(headers)),
    );
    ctx.state['db'] = db;
    metrics.dbReads.inc({ target: db.readTarget, reason: db.reason });
    ctx.set('X-Banyan-Read-From', db.readTarget);
    return db;
  };

  const originSettings = options.origin ?? {};
  return createService('app', metrics, (routes) => {
    routes.use(async (ctx, next) => {
      ctx.state['origin'] = originSettings;
      await next();
    });
    const announcer = new WriteAnnouncer(options.router, options.fences, options.cache);
    simpleRoutes(routes, dbOf, options.cache, (result) => metrics.pageCache.inc({ result }));
    jsonRoutes(routes, dbOf);
    projectPageRoutes(routes, dbOf);
    fileRoutes(routes, options.store);
    const projectsPerHour = options.projectsPerHour ?? DEFAULT_PROJECTS_PER_HOUR;
    // Every outcome's series starts at 0: the dashboard's upload panels draw 0, not nothing, before the first upload.
    for (const result of ['stored', 'exists', 'failed']) metrics.uploads.inc({ result }, 0);
    for (const reason of UPLOAD_FAILURES) metrics.uploadFailures.inc({ reason }, 0);
    uploadRoutes(routes, {
      dbOf,
      store: options.store,
      announcer,
      logins: options.logins,
      maxUploadBytes: options.maxUploadBytes ?? DEFAULT_MAX_UPLOAD,
      projectsPerHour,
      onUpload: (outcome) => {
        const failed = outcome !== 'stored' && outcome !== 'exists';
        metrics.uploads.inc({ result: failed ? 'failed' : outcome });
        if (failed) metrics.uploadFailures.inc({ reason: outcome });
      },
    });
    manageRoutes(routes, dbOf, announcer, projectsPerHour, options.store, options.logins);
  });
}

/**
 * What every process of the rewrite shares (the app, the files service):
 * request metrics by handler, plain-text error pages, `/_health` and
 * `/metrics`, around the routes `mount` adds. `name` prefixes the two
 * built-in handlers (`app.health`) and the error log lines.
 */
export function createService(name: string, metrics: AppMetrics, mount: (routes: Router) => void): Koa {
  const app = new Koa();
  app.proxy = true;
  if (watchingRequests())
    app.use((ctx, next) =>
      inRequestScope(ctx.req, ctx.res, () => (ctx as unknown as { _matchedRouteName?: string })._matchedRouteName, next),
    );
  app.use(async (ctx, next) => {
    const started = process.hrtime.bigint();
    try {
      await next();
    } finally {
      const handler = (ctx as unknown as { _matchedRouteName?: string })._matchedRouteName ?? 'unmatched';
      metrics.requests.inc({ handler, method: methodLabel(ctx.method), status_class: statusClass(ctx.status) });
      metrics.duration.observe({ handler }, Number(process.hrtime.bigint() - started) / 1e9);
    }
  });
  app.use(errorPages(name));
  app.on('error', (err: NodeJS.ErrnoException & { status?: number }) => {
    // A client that goes away mid-request is not the app's error: nothing to log.
    if (err.code === 'ECONNRESET' || err.code === 'ERR_STREAM_PREMATURE_CLOSE' || err.code?.startsWith('HPE_') || err.message === 'aborted')
      return;
    if (err.status !== undefined && err.status < 500) return;
    console.error(`${name}: ${err.stack ?? err.message}`);
  });

  const routes = new Router();
  mount(routes);
  routes.get(`${name}.health`, '/_health', (ctx) => {
    ctx.body = { ok: true };
  });
  routes.get(`${name}.metrics`, '/metrics', async (ctx) => {
    ctx.type = metrics.registry.contentType;
    ctx.body = await metrics.registry.metrics();
  });
  app.use(routes.routes());
  app.use(routes.allowedMethods());
  return app;
}

/** Plain-text error bodies that say what went wrong; server errors are logged (prefixed `name:`), not shown. */
const errorPages =
  (name: string) =>
  async (ctx: Koa.Context, next: Koa.Next): Promise<void> => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) ctx.throw(404, `nothing here: ${ctx.path}`);
    } catch (err) {
      const e = err as { status?: number; expose?: boolean; message: string };
      const status = httpStatusOf(err) ?? e.status;
      ctx.status = status && status >= 400 && status < 600 ? status : 500;
      ctx.type = 'text/plain; charset=utf-8';
      if (isConnectionError(err)) {
        // The primary (or every server) is down: say so plainly, fast, and that nothing was half-written.
        ctx.status = 503;
        ctx.set('Retry-After', '5');
        ctx.body = '503 The database is unavailable: nothing was changed. Try again in a few seconds.\n';
      } else if (ctx.status >= 500 && !e.expose) {
        console.error(`${name}: ${ctx.method} ${quoted(ctx.path)}: ${(err as Error).stack ?? e.message}`);
        ctx.body = `${ctx.status} Internal error. It has been logged; try again shortly.\n`;
      } else {
        ctx.body = `${ctx.status} ${e.message}\n`;
      }
    }
  };
