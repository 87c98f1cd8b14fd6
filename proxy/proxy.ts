import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import Koa from 'koa';
import type { ProxyMetrics } from '../metrics/catalog.js';
import type { UsageLedger } from '../metrics/usage.js';
import type { CompiledTable, Decision } from '../routing/table/index.js';
import type { AccessEntry } from './access-log.js';
import { DEFAULT_RETIRED, plain } from './answers.js';
import { sessionCookie } from './canary-session.js';
import { FeatureExtraction, type Extracted } from './feature-extraction.js';
import type { ForwarderOptions, ForwardOptions } from './forwarder.js';
import { DEFAULT_BREAKER, ForwardingPolicy, type BreakerSettings } from './forwarding-policy.js';
import { DEFAULTS } from '../lib/config.js';
import { ClientShares } from './client-share.js';
import { admitBody, DEFAULT_BODY, type BodySettings } from './request-body.js';
import {
  acceptableRequestId,
  clientInfo,
  hasBody,
  isSafe,
  newRequestId,
  trustedProxies,
  upstreamRequestHeaders,
  type ClientInfo,
} from './headers.js';
import type { Pin } from './pin.js';
import { PREVIEW_PATH } from './preview.js';
import { RequestAccounting, type Exchange, type Observer } from './request-accounting.js';
import { settleTarget } from './request-target.js';
import { RouteDecider } from './route-decision.js';
import { beginRequestSpan } from './request-span.js';
import { tracingOn } from '../lib/tracing.js';
import { SessionPins, withSession, type PinSettings } from './session-pins.js';
import { DEFAULT_SHADOW, Shadower, type ShadowSettings } from './shadow.js';
import { POOL_DEFAULTS, UpstreamSet } from './upstreams/index.js';
import { upstreamEvents } from './upstream-metrics.js';
import { WebSocketForwarder } from './websocket.js';
import { rawAnswer } from './raw-answer.js';

export { DEFAULT_BREAKER, type BreakerSettings } from './forwarding-policy.js';
export type { PinSettings } from './session-pins.js';

export interface ProxyOptions {
  /** LEGACY_URL: the endpoints (a comma list of URLs) of upstreams whose table entry says `"env": "LEGACY_URL"`. */
  readonly legacyUrl?: string | undefined;
  /** APP_URL, the same for the app. */
  readonly appUrl?: string | undefined;
  /** Where other `env` upstreams read their endpoints (default: this process's environment). */
  readonly environment?: ((name: string) => string | undefined) | undefined;
  readonly metrics: ProxyMetrics;
  /** Where the current route table is read from, on every request. */
  readonly table: { readonly current: CompiledTable };
  readonly forwarding?: ForwarderOptions;
  readonly breaker?: Partial<BreakerSettings>;
  readonly shadow?: Partial<ShadowSettings>;
  /** Comma list of proxies whose X-Forwarded-* headers are believed (BANYAN_TRUSTED_PROXIES). */
  readonly trustedProxies?: string | undefined;
  /** A legacy session cookie whose value keys canary stickiness (BANYAN_SESSION_COOKIE). */
  readonly sessionCookie?: string | undefined;
  /**
   * Debugging (BANYAN_DEBUG_HEADERS): each forwarded answer says which route decided it and which
   * backend served it (`Banyan-Route`), and how long the backend took (`Server-Timing`). Off by
   * default: the proxy adds nothing a client can see that the route did not ask for.
   */
  readonly debugHeaders?: boolean | undefined;
  /** Where each request's access-log entry goes (BANYAN_LOG); none when absent. */
  readonly accessLog?: ((entry: AccessEntry) => void) | undefined;
  readonly pins?: PinSettings | undefined;
  /** Per-route and per-feature counts for the durable usage ledger. */
  readonly usage?: UsageLedger | undefined;
  /** Each answered request, for the autopilot's evidence (`fellBack`: the new app failed it and legacy answered). */
  readonly observe?: Observer | undefined;
  /** How request bodies are admitted before an upstream connection is taken (default DEFAULT_BODY). */
  readonly bodies?: BodySettings | undefined;
  /** How long a request may wait for a connection to its upstream before 503 (BANYAN_UPSTREAM_QUEUE_TIMEOUT). */
  readonly queueTimeoutMs?: number | undefined;
  /** The percentage of a service's connections one client address may hold (BANYAN_CLIENT_SHARE; 100: no limit). */
  readonly clientSharePercent?: number | undefined;
  /** Distinct normalized unmatched paths (and features) labelled before the rest count as `other` (default 200). */
  readonly maxLabels?: number;
  readonly log?: (line: string) => void;
}

/** The proxy: its Koa app, its upgrade handler, and what the admin side reads. */
export interface Proxy {
  readonly app: Koa;
  readonly shadow: Shadower;
  /** The services this proxy sends to, with their endpoints' health, for operators. */
  readonly upstreams: UpstreamSet;
  /** Pass to `server.on('upgrade')`: forwards WebSocket upgrades by route. */
  readonly upgrade: (req: IncomingMessage, socket: Socket, head: Buffer) => void;
  /** Closes WebSocket tunnels (the HTTP server cannot: they are no longer HTTP). */
  closeTunnels(): void;
  close(): Promise<void>;
}

const GONE: Extracted = { features: [], body: undefined };

/**
 * Koa, minus what a proxy that writes every answer on `res` itself does not
 * use: Koa's handleRequest sets a default 404, attaches on-finished listeners
 * to the response and its socket to catch errors of a body Koa would send,
 * and runs respond(). The proxy sets `ctx.respond = false` and sends no
 * `ctx.body`, so all of that was per-request cost for nothing (about 4 KB
 * allocated per request, measured with the bench). Errors still reach
 * `ctx.onerror`, as in Koa.
 */
class ProxyApp extends Koa {
  // Koa's own method, called by its callback(); not in Koa's type declarations.
  handleRequest(ctx: Koa.Context, fnMiddleware: (ctx: Koa.Context) => Promise<unknown>): Promise<unknown> {
    return fnMiddleware(ctx).catch((err: Error) => ctx.onerror(err));
  }
}

/** The debugging headers (BANYAN_DEBUG_HEADERS): which route and backend answered, and how long the backend took. */
function debugHeaders(exchange: Exchange): Record<string, string> {
  return {
    'banyan-route': `${exchange.route}; mode=${exchange.mode}; backend=${exchange.served}; service=${exchange.service}`,
    'server-timing': `${exchange.service};dur=${(performance.now() - exchange.started).toFixed(1)};desc="${exchange.route}"`,
  };
}

/**
 * The strangler proxy. Each request is matched against the current route
 * table and answered by legacy, the new app, or the proxy itself (retired
 * routes and brownouts). New-app requests pass a circuit breaker; safe ones
 * fall back to legacy when it fails, unsafe ones are never replayed. Shadow
 * routes copy safe requests to the new app and compare. No body parser runs
 * here: bodies stream through untouched.
 *
 * This is the wiring, in the order a request meets it: target, route
 * decision, session pin, features, accounting, then the backend.
 */
export function createProxy(options: ProxyOptions): Proxy {
  const { metrics } = options;
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const upstreams = new UpstreamSet({
    environment: environmentOf(options),
    events: upstreamEvents(metrics),
    log,
    pool: options.forwarding,
    breaker: { ...DEFAULT_BREAKER, ...options.breaker },
  });
  upstreams.apply(options.table.current.upstreams);
  const trusted = trustedProxies(options.trustedProxies);
  const policy = new ForwardingPolicy(upstreams, {
    metrics,
    log,
    connections: options.forwarding?.connections ?? POOL_DEFAULTS.connections,
    shares: new ClientShares(options.clientSharePercent ?? DEFAULTS.clientSharePercent, trusted),
  });
  const parts: Parts = {
    policy,
    table: options.table,
    applied: options.table.current.upstreams,
    shadow: new Shadower(upstreams, { ...DEFAULT_SHADOW, ...options.shadow }, metrics),
    trusted,
    websockets: new WebSocketForwarder(upstreams),
    pins: options.pins ? new SessionPins(options.pins, metrics) : undefined,
    routes: new RouteDecider(options.table, options.sessionCookie, options.pins?.secrets),
    extraction: new FeatureExtraction(),
    accounting: new RequestAccounting({
      metrics,
      usage: options.usage,
      observe: options.observe,
      accessLog: options.accessLog,
      maxLabels: options.maxLabels ?? 200,
      log,
    }),
    metrics,
    debugHeaders: options.debugHeaders === true,
    bodies: options.bodies ?? DEFAULT_BODY,
    queueTimeoutMs: options.queueTimeoutMs ?? DEFAULTS.upstreamQueueTimeoutMs,
    tracing: tracingOn(),
  };
  const app = new ProxyApp();
  app.use(requestHandler(parts));
  return {
    app,
    shadow: parts.shadow,
    upstreams,
    upgrade: upgradeHandler(parts),
    closeTunnels: () => parts.websockets.close(),
    close: async () => {
      parts.websockets.close();
      await policy.close();
    },
  };
}

/** Where `env` upstreams find their endpoints: LEGACY_URL and APP_URL as given, the rest from the environment. */
function environmentOf(options: ProxyOptions): (name: string) => string | undefined {
  const lookup = options.environment ?? ((name: string) => process.env[name]);
  return (name) => (name === 'LEGACY_URL' && options.legacyUrl) || (name === 'APP_URL' && options.appUrl) || lookup(name) || undefined;
}

/** The table's upstreams take effect with the first request that sees its version (one comparison per request). */
function followUpstreams(parts: Parts): void {
  const wanted = parts.table.current.upstreams;
  if (wanted === parts.applied) return;
  parts.applied = wanted;
  parts.policy.upstreams.apply(wanted);
}

/** What the proxy is made of, made once by createProxy and shared by every request. */
interface Parts {
  readonly policy: ForwardingPolicy;
  readonly table: { readonly current: CompiledTable };
  /** The upstreams in effect: the table version's that the last request saw. */
  applied: CompiledTable['upstreams'];
  readonly shadow: Shadower;
  readonly trusted: ReturnType<typeof trustedProxies>;
  readonly websockets: WebSocketForwarder;
  readonly pins: SessionPins | undefined;
  readonly routes: RouteDecider;
  readonly extraction: FeatureExtraction;
  readonly accounting: RequestAccounting;
  readonly metrics: ProxyMetrics;
  readonly debugHeaders: boolean;
  readonly bodies: BodySettings;
  readonly queueTimeoutMs: number;
  /** Whether this process traces (lib/tracing.ts), decided once: off, no request pays for it. */
  readonly tracing: boolean;
}

/** The proxy's one middleware: a request, in the order it meets the parts, up to its backend. */
function requestHandler(parts: Parts): Koa.Middleware {
  const { accounting, routes, pins, extraction, trusted } = parts;
  return async (ctx) => {
    const started = performance.now();
    const { req, res } = ctx;
    ctx.respond = false;
    const requestId = acceptableRequestId(req.headers['x-request-id']) ?? newRequestId();
    const method = req.method ?? 'GET';
    const refusal = settleTarget(req);
    if (refusal) {
      accounting.refused(method, 400, started);
      plain(res, 400, `400 Bad Request: ${refusal}.\nRequest id: ${requestId}\n`, requestId, { connection: 'close' });
      return;
    }
    const client = clientInfo(req.headers, req.socket.remoteAddress ?? '', 'encrypted' in req.socket, trusted, requestId);
    if (method === 'GET' && (req.url === PREVIEW_PATH || req.url?.startsWith(`${PREVIEW_PATH}?`))) {
      routes.openPreview(req, res, requestId, client.proto === 'https');
      return;
    }
    followUpstreams(parts);
    const pin = pins?.read(req);
    const decision = routes.decide(req, client);
    // The body comes before any backend: a client that trickles it holds no upstream connection meanwhile.
    let admitted: Readable | Buffer | undefined;
    if (decision.target !== 'proxy' && hasBody(req)) {
      const outcome = await admitBody(req, req, parts.bodies);
      if ('gone' in outcome) {
        res.destroy();
        return;
      }
      if ('refused' in outcome) {
        accounting.refused(method, 408, started);
        plain(res, 408, `408 Request Timeout: ${outcome.refused.why}.\nRequest id: ${requestId}\n`, requestId, { connection: 'close' });
        return;
      }
      admitted = outcome.body;
    }
    const extracted = extraction.extract(req, decision, method, admitted);
    const { features, body: peeked } = extracted instanceof Promise ? ((await extracted) ?? GONE) : extracted;
    const body = peeked ?? admitted;
    if (features === GONE.features) {
      // The client went away while sending its body: nobody to answer.
      res.destroy();
      return;
    }
    const exchange: Exchange = {
      requestId,
      started,
      method,
      route: decision.route,
      mode: decision.mode,
      served: decision.target,
      service: decision.service,
      endpoint: undefined,
      fallbackReason: undefined,
      features,
      ready: performance.now(),
      headersAt: undefined,
      trace: parts.tracing ? beginRequestSpan(req, decision, pin, requestId, started) : undefined,
    };
    accounting.track(exchange, req, res);
    if (decision.target === 'proxy') {
      const answer = decision.spec?.retired ?? DEFAULT_RETIRED;
      plain(res, answer.status, `${answer.message}\n`, requestId);
      return;
    }
    await toBackend(parts, req, res, { client, pin, decision, exchange, body });
  };
}

/** A decided request to its backend: the new app (with fallback or never-replay), or legacy (with a shadow copy). */
async function toBackend(
  parts: Parts,
  req: IncomingMessage,
  res: ServerResponse,
  request: {
    client: ClientInfo;
    pin: Pin | undefined;
    decision: Decision & { readonly minted?: string };
    exchange: Exchange;
    body: Readable | Buffer | undefined;
  },
): Promise<void> {
  const { client, pin, decision, exchange } = request;
  const { method } = exchange;
  const { pins, policy } = parts;
  const timeouts = decision.spec?.timeouts;
  const safe = isSafe(method);
  const forward: ForwardOptions = {
    headersTimeoutMs: timeouts?.headersMs,
    bodyTimeoutMs: timeouts?.bodyMs,
    // The backend (the fallback too) continues the proxy's span, not the client's.
    extraHeaders: exchange.trace ? { ...pins?.forwardHeaders(pin), ...exchange.trace.headers } : pins?.forwardHeaders(pin),
    beforeHead: withSession(pins?.hook(pin, client, safe), decision.minted && sessionCookie(decision.minted, client.proto === 'https')),
    addHeaders: parts.debugHeaders ? () => debugHeaders(exchange) : undefined,
    debug: parts.debugHeaders,
    body: request.body,
    queueTimeoutMs: parts.queueTimeoutMs,
    // The last attempt's head is the answer's: a fallback's time includes the failed try, as the client waited for both.
    onResponseHead: () => {
      exchange.headersAt = performance.now();
    },
  };
  const spec = decision.spec;
  if (decision.target === 'new') {
    const service = decision.service;
    await policy.toNew(req, res, client, forward, exchange, {
      service,
      fallback: fallbackOf(spec),
      sessionKey: parts.policy.upstreams.get(service)?.spec.session ? parts.routes.sessionKey(req, client) : undefined,
    });
    return;
  }
  const copy =
    decision.mode === 'shadow' && (method === 'GET' || method === 'HEAD') && spec !== undefined
      ? parts.shadow.begin(
          spec,
          {
            method,
            path: req.url ?? '/',
            headers: upstreamRequestHeaders(req.headers, client, forward.extraHeaders),
            requestId: exchange.requestId,
            trace: exchange.trace,
          },
          spec.shadow?.percent !== undefined && spec.shadow.percent < 100 ? parts.routes.sessionKey(req, client) : undefined,
        )
      : undefined;
  const captured = await policy.toOrFail(
    'legacy',
    req,
    res,
    client,
    copy ? { ...forward, captureBytes: copy.captureBytes } : forward,
    exchange,
  );
  copy?.finish(captured);
}

/** Where a new-side route's safe requests go when its service fails: legacy for `true`, the upstream it names, or nowhere. */
function fallbackOf(route: Decision['spec']): string | undefined {
  const fallback = route?.fallback;
  return fallback === true ? 'legacy' : typeof fallback === 'string' ? fallback : undefined;
}

/** WebSocket upgrades, by route: refused with an HTTP answer when malformed, answered by a retired route, else tunnelled. */
function upgradeHandler(parts: Parts): Proxy['upgrade'] {
  return (req, socket, head) => {
    const requestId = acceptableRequestId(req.headers['x-request-id']) ?? newRequestId();
    const refusal =
      (req.headers.upgrade ?? '').toLowerCase() !== 'websocket'
        ? `only WebSocket upgrades are proxied, not "${String(req.headers.upgrade).slice(0, 40)}"`
        : settleTarget(req);
    if (refusal) {
      socket.end(rawAnswer(400, `400 Bad Request: ${refusal}.\nRequest id: ${requestId}\n`));
      return;
    }
    const client = clientInfo(req.headers, req.socket.remoteAddress ?? '', 'encrypted' in req.socket, parts.trusted, requestId);
    const decision = parts.routes.decide(req, client);
    parts.metrics.requests.inc({
      route: decision.route,
      backend: decision.target,
      service: decision.service,
      method: 'GET',
      status_class: '1xx',
    });
    if (decision.target === 'proxy') {
      const answer = decision.spec?.retired ?? DEFAULT_RETIRED;
      socket.end(rawAnswer(answer.status, `${answer.message}\n`));
      return;
    }
    followUpstreams(parts);
    parts.websockets.forward(decision.service, req, socket, head, client);
  };
}
