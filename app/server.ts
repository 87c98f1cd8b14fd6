import Router from '@koa/router';
import Koa from 'koa';
import type { DbRouter, RequestDb } from '../routing/db-router.js';
import { simpleRoutes } from './simple-api.js';

export interface AppOptions {
  readonly router: DbRouter;
}

/**
 * The new package index, as a Koa application. Every request gets one DB
 * handle from the router (reads on one replica, writes on the primary); the
 * server it read from is reported in `X-Banyan-Read-From`.
 */
export function createApp(options: AppOptions): Koa {
  const app = new Koa();
  app.proxy = true;
  const dbOf = (ctx: Koa.Context): RequestDb => ctx.state['db'] as RequestDb;

  app.use(async (ctx, next) => {
    const db = options.router.forRequest();
    ctx.state['db'] = db;
    ctx.set('X-Banyan-Read-From', db.readTarget);
    await next();
  });
  app.use(errorPages);

  const routes = new Router();
  simpleRoutes(routes, dbOf);
  routes.get('app.health', '/_health', (ctx) => { ctx.body = { ok: true }; });
  app.use(routes.routes());
  app.use(routes.allowedMethods());
  return app;
}

/** Plain-text error bodies that say what went wrong; server errors are logged, not shown. */
async function errorPages(ctx: Koa.Context, next: Koa.Next): Promise<void> {
  try {
    await next();
    if (ctx.status === 404 && ctx.body === undefined) ctx.throw(404, `nothing here: ${ctx.path}`);
  } catch (err) {
    const e = err as { status?: number; expose?: boolean; message: string };
    ctx.status = e.status && e.status >= 400 && e.status < 600 ? e.status : 500;
    ctx.type = 'text/plain; charset=utf-8';
    if (ctx.status >= 500 && !e.expose) {
      console.error(`app: ${ctx.method} ${ctx.path}: ${(err as Error).stack ?? e.message}`);
      ctx.body = `${ctx.status} Internal error. It has been logged; try again shortly.\n`;
    } else {
      ctx.body = `${ctx.status} ${e.message}\n`;
    }
  }
}
