import Router from '@koa/router';
import Koa from 'koa';
import type { Registry } from 'prom-client';

export interface AdminOptions {
  readonly registry: Registry;
  /** Resolves true when every dependency the proxy needs answers. */
  readonly ready: () => Promise<Record<string, boolean>>;
}

/**
 * The admin listener (loopback by default): liveness, readiness and metrics.
 * Route management and the dashboard mount here too.
 */
export function createAdmin(options: AdminOptions): Koa {
  const app = new Koa();
  const router = new Router();
  router.get('/healthz', (ctx) => {
    ctx.body = { status: 'ok' };
  });
  router.get('/readyz', async (ctx) => {
    const checks = await options.ready();
    const ok = Object.values(checks).every(Boolean);
    ctx.status = ok ? 200 : 503;
    ctx.body = { status: ok ? 'ready' : 'not ready', checks };
  });
  router.get('/metrics', async (ctx) => {
    ctx.type = options.registry.contentType;
    ctx.body = await options.registry.metrics();
  });
  app.use(router.routes());
  app.use(router.allowedMethods());
  return app;
}
