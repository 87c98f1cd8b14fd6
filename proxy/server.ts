import { randomUUID } from 'node:crypto';
import Koa from 'koa';
import { methodLabel, statusClass, type ProxyMetrics } from '../metrics/catalog.js';
import { Forwarder, UpstreamError, type ForwarderOptions } from './forwarder.js';
import { acceptableRequestId } from './headers.js';
import { decide, DEFAULT_ROUTES, type StaticRoute } from './route-table.js';

export interface ProxyOptions {
  readonly legacyUrl: string;
  readonly appUrl: string;
  readonly metrics: ProxyMetrics;
  readonly routes?: readonly StaticRoute[];
  readonly forwarding?: ForwarderOptions;
}

/** The proxy's Koa application and what must be closed with it. */
export interface Proxy {
  readonly app: Koa;
  close(): Promise<void>;
}

/**
 * The strangler proxy: every request is matched against the route table and
 * streamed to the new app or the legacy backend. No body parser runs here:
 * bodies pass through untouched.
 */
export function createProxy(options: ProxyOptions): Proxy {
  const routes = options.routes ?? DEFAULT_ROUTES;
  const forwarder = new Forwarder({ legacy: options.legacyUrl, new: options.appUrl }, options.forwarding);
  const { metrics } = options;
  const app = new Koa();

  app.use(async (ctx) => {
    const started = process.hrtime.bigint();
    const requestId = acceptableRequestId(ctx.get('x-request-id') || undefined) ?? randomUUID();
    const decision = decide(routes, ctx.path);
    ctx.respond = false;
    const res = ctx.res;
    res.once('finish', () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      metrics.requests.inc({ route: decision.route, backend: decision.backend, method: methodLabel(ctx.method), status_class: statusClass(res.statusCode) });
      metrics.duration.observe({ route: decision.route, backend: decision.backend }, seconds);
    });
    try {
      await forwarder.forward(decision.backend, ctx.req, res, {
        ip: ctx.req.socket.remoteAddress ?? '', proto: 'http', host: ctx.get('host') || undefined, requestId,
      });
    } catch (err) {
      const e = err instanceof UpstreamError ? err : new UpstreamError(decision.backend, 502, 'error', (err as Error).message);
      metrics.upstreamErrors.inc({ backend: e.backend, kind: e.kind });
      const body = `${e.status} ${e.status === 504 ? 'Gateway Timeout' : 'Bad Gateway'}: ${e.message}.\nRequest id: ${requestId}\n`;
      res.writeHead(e.status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), 'x-request-id': requestId });
      res.end(body);
    }
  });

  return { app, close: () => forwarder.close() };
}
