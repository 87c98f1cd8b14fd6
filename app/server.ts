import Router from '@koa/router';
import Koa from 'koa';
import { isConnectionError } from '../routing/database.js';
import { fenceFromHeader, type DbRouter, type RequestDb } from '../routing/db-router.js';
import type { FenceStore } from '../routing/fences.js';
import { manageRoutes } from './manage-api.js';
import { simpleRoutes } from './simple-api.js';

export interface AppOptions {
  readonly router: DbRouter;
  /** Resource fences (Redis); absent: reads honour only the session's own pin. */
  readonly fences?: FenceStore;
}

/**
 * A request's DB handle, chosen on first use: reads declaring resources
 * (`project:<name>`) also wait for those resources' fences.
 */
export type DbFor = (ctx: Koa.Context, resources?: readonly string[]) => Promise<RequestDb>;

/**
 * The new package index, as a Koa application. Every request gets one DB
 * handle from the router (reads on one replica that has replayed the
 * request's `X-Banyan-Min-LSN` fence, writes on the primary); the server it
 * read from is reported in `X-Banyan-Read-From`.
 */
export function createApp(options: AppOptions): Koa {
  const app = new Koa();
  app.proxy = true;
  const dbOf: DbFor = async (ctx, resources = []) => {
    const chosen = ctx.state['db'] as RequestDb | undefined;
    if (chosen) return chosen;
    const fence = fenceFromHeader(ctx.req.headers['x-banyan-min-lsn']);
    const resourceFence = options.fences ? await options.fences.fenceFor(resources) : undefined;
    const db = await options.router.forRequest(resourceFence === 'primary' ? { primary: true }
      : { primary: fence.primary, minLsn: maxLsn(fence.minLsn, resourceFence) });
    ctx.state['db'] = db;
    ctx.set('X-Banyan-Read-From', db.readTarget);
    return db;
  };

  app.use(errorPages);

  const routes = new Router();
  simpleRoutes(routes, dbOf);
  manageRoutes(routes, dbOf, options.router, options.fences);
  routes.get('app.health', '/_health', (ctx) => { ctx.body = { ok: true }; });
  app.use(routes.routes());
  app.use(routes.allowedMethods());
  return app;
}

function maxLsn(a: bigint | undefined, b: bigint | undefined): bigint | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return a > b ? a : b;
}

/** Plain-text error bodies that say what went wrong; server errors are logged, not shown. */
async function errorPages(ctx: Koa.Context, next: Koa.Next): Promise<void> {
  try {
    await next();
    if (ctx.status === 404 && ctx.body === undefined) ctx.throw(404, `nothing here: ${ctx.path}`);
  } catch (err) {
    const e = err as { status?: number; expose?: boolean; message: string; code?: string };
    if (e.code === 'too-large') e.status = 413;
    if (e.code === 'bad-request') e.status = 400;
    ctx.status = e.status && e.status >= 400 && e.status < 600 ? e.status : 500;
    ctx.type = 'text/plain; charset=utf-8';
    if (isConnectionError(err)) {
      // The primary (or every server) is down: say so plainly, fast, and that nothing was half-written.
      ctx.status = 503;
      ctx.set('Retry-After', '5');
      ctx.body = '503 The database is unavailable: nothing was changed. Try again in a few seconds.\n';
    } else if (ctx.status >= 500 && !e.expose) {
      console.error(`app: ${ctx.method} ${ctx.path}: ${(err as Error).stack ?? e.message}`);
      ctx.body = `${ctx.status} Internal error. It has been logged; try again shortly.\n`;
    } else {
      ctx.body = `${ctx.status} ${e.message}\n`;
    }
  }
}
