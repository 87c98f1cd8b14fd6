import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import CircuitBreaker from 'opossum';
import Koa from 'koa';
import { requestRecorder, type ProxyMetrics } from '../metrics/catalog.js';
import { FeatureLabels, queryFeatures, readsBody, type FeatureExtractor } from '../metrics/features.js';
import { CappedLabels, normalizePath } from '../metrics/paths.js';
import type { UsageLedger } from '../metrics/usage.js';
import { canaryBucket, decide, UNMATCHED, type CompiledTable, type Decision } from '../routing/route-table.js';
import { peekFeature } from './peek.js';
import { newSession, SESSION_COOKIE, sessionBucket, sessionCookie } from './canary-session.js';
import { PREVIEW_COOKIE, PREVIEW_PATH, safeNext, verifyPreview } from './preview.js';
import { normalizeTarget } from './request-target.js';
import { Forwarder, UpstreamError, type CapturedResponse, type ForwarderOptions, type ForwardOptions } from './forwarder.js';
import type { AccessEntry } from './access-log.js';
import { acceptableRequestId, clientInfo, trustedProxies, upstreamRequestHeaders, type ClientInfo } from './headers.js';
import { DEFAULT_SHADOW, Shadower, type ShadowSettings } from './shadow.js';
import { cookieValue, newPinId, PIN_COOKIE, PIN_HEADER, signPin, verifyPin, type Pin } from './pin.js';
import { WebSocketForwarder } from './websocket.js';
import { formatLsn, parseLsn } from '../lib/lsn.js';

/** Circuit breaker settings, one breaker per upstream. */
export interface BreakerSettings {
  /** Failure share (percent) over the rolling window that opens the breaker. */
  readonly errorThresholdPercentage: number;
  /** Requests in the window before the share counts. */
  readonly volumeThreshold: number;
  /** How long the breaker stays open before one trial request. */
  readonly resetTimeoutMs: number;
  readonly rollingWindowMs: number;
}

export const DEFAULT_BREAKER: BreakerSettings = { errorThresholdPercentage: 50, volumeThreshold: 5, resetTimeoutMs: 5_000, rollingWindowMs: 10_000 };

/** Read-your-writes pins: after a write, the session reads at or past it. */
export interface PinSettings {
  /** BANYAN_SECRET's list, newest first: the first signs, all verify. */
  readonly secrets: readonly string[];
  /** The cap on a pin's life. */
  readonly ttlMs: number;
  /** `lsn`: pin to the write's WAL position; `timed`: read from the primary until the pin expires. */
  readonly mode: 'lsn' | 'timed';
  /** The primary's current WAL position, when the backend did not report the write's. */
  readonly currentLsn: () => Promise<bigint>;
}

export interface ProxyOptions {
  readonly legacyUrl: string;
  readonly appUrl: string;
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
  readonly observe?: ((route: string, served: string, status: number, seconds: number, fellBack: boolean, userAgent: string | undefined) => void) | undefined;
  /** Distinct normalized unmatched paths (and features) labelled before the rest count as `other` (default 200). */
  readonly maxLabels?: number;
  readonly log?: (line: string) => void;
}

const NO_FEATURES: readonly string[] = [];

/** The proxy: its Koa app, its upgrade handler, and what the admin side reads. */
export interface Proxy {
  readonly app: Koa;
  readonly shadow: Shadower;
  /** Pass to `server.on('upgrade')`: forwards WebSocket upgrades by route. */
  readonly upgrade: (req: IncomingMessage, socket: Socket, head: Buffer) => void;
  breakerState(backend: 'legacy' | 'new'): 'closed' | 'half-open' | 'open';
  /** Closes WebSocket tunnels (the HTTP server cannot: they are no longer HTTP). */
  closeTunnels(): void;
  close(): Promise<void>;
}

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);
/** The answer of a retired route (or brownout) that names none of its own. */
const DEFAULT_RETIRED = { status: 410, message: 'This feature has been retired.' };
const RETRY_AFTER_S = 5;
/** The status recorded for a request whose client went away before the answer was complete. */
const CLIENT_CLOSED = 499;

/**
 * The strangler proxy. Each request is matched against the current route
 * table and answered by legacy, the new app, or the proxy itself (retired
 * routes and brownouts). New-app requests pass a circuit breaker; safe ones
 * fall back to legacy when it fails, unsafe ones are never replayed. Shadow
 * routes copy safe requests to the new app and compare. No body parser runs
 * here: bodies stream through untouched.
 */
export function createProxy(options: ProxyOptions): Proxy {
  const { metrics, table } = options;
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const forwarder = new Forwarder({ legacy: options.legacyUrl, new: options.appUrl }, options.forwarding);
  const shadow = new Shadower({ legacy: forwarder.pool('legacy'), new: forwarder.pool('new') }, { ...DEFAULT_SHADOW, ...options.shadow }, metrics);
  const trusted = trustedProxies(options.trustedProxies);
  const breakers = {
    legacy: makeBreaker('legacy', { ...DEFAULT_BREAKER, ...options.breaker }, metrics, log),
    new: makeBreaker('new', { ...DEFAULT_BREAKER, ...options.breaker }, metrics, log),
  };
  const websockets = new WebSocketForwarder({ legacy: options.legacyUrl, new: options.appUrl });
  const pins = options.pins;

  /**
   * The canary bucket of a request: the one its `banyan_sid` carries, else the
   * configured legacy session cookie's, else the client address's. A request
   * without a session cookie gets one minted with that bucket (`mint`), so a
   * browser keeps its side for the session's life, through writes and pin
   * expiry; a client that keeps no cookies stays keyed by its address.
   */
  const bucketOf = (req: IncomingMessage, client: ClientInfo, mint: (sid: string) => void): number => {
    const cookies = req.headers.cookie;
    const sid = cookieValue(cookies, SESSION_COOKIE);
    const carried = sid === undefined ? undefined : sessionBucket(sid);
    if (carried !== undefined) return carried;
    const legacySession = options.sessionCookie ? cookieValue(cookies, options.sessionCookie) : undefined;
    const bucket = canaryBucket(legacySession ?? client.ip);
    mint(newSession(bucket));
    return bucket;
  };

  const routeFor = (req: IncomingMessage, client: ClientInfo, mint: (sid: string) => void): Decision => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const query = q < 0 ? '' : url.slice(q + 1);
    const decision = decide(table.current, req.method ?? 'GET', req.headers.host, path, query, () => bucketOf(req, client, mint), Date.now());
    // A staff browser previewing this route (banyan routes preview) goes to the new app, and only on this route.
    if (decision.target !== 'new' && decision.spec && previewedRoute(req) === decision.route) return { ...decision, target: 'new' };
    return decision;
  };

  const previewedRoute = (req: IncomingMessage): string | undefined => {
    if (!pins) return undefined;
    const token = cookieValue(req.headers.cookie, PREVIEW_COOKIE);
    return token ? verifyPreview(token, pins.secrets, Date.now())?.route : undefined;
  };

  /** `GET /_banyan/preview?token=…&next=/path`: the link `banyan routes preview` prints; sets the cookie and goes on. */
  const openPreview = (req: IncomingMessage, res: ServerResponse, requestId: string): void => {
    const params = new URLSearchParams((req.url ?? '').split('?')[1] ?? '');
    const preview = pins ? verifyPreview(params.get('token') ?? '', pins.secrets, Date.now()) : undefined;
    if (!preview) {
      plain(res, 400, `400 This preview link is not valid${pins ? ' or has expired' : ' (BANYAN_SECRET is not set)'}. Ask for a new one: banyan routes preview ROUTE.\nRequest id: ${requestId}\n`, requestId);
      return;
    }
    const maxAge = Math.ceil((preview.expires - Date.now()) / 1000);
    res.writeHead(303, {
      location: safeNext(params.get('next') ?? undefined), 'x-request-id': requestId, 'content-length': '0', 'cache-control': 'no-store',
      'set-cookie': `${PREVIEW_COOKIE}=${params.get('token')}; Path=/; Max-Age=${maxAge}; HttpOnly; SameSite=Lax`,
    });
    res.end();
  };

  // A session sends the same cookie on every request: remember values already verified (keyed by the
  // whole signed value, so a hit proves the same MAC was checked) instead of computing an HMAC each time.
  const verified = new Map<string, Pin>();
  const honoured = metrics.pins.labels({ event: 'honoured' });

  /** The session's valid pin, if it has one; forged, tampered and expired ones are counted and ignored. */
  const readPin = (req: IncomingMessage): Pin | undefined => {
    if (!pins) return undefined;
    const header = req.headers[PIN_HEADER];
    const value = cookieValue(req.headers.cookie, PIN_COOKIE) ?? (typeof header === 'string' ? header.trim() : undefined);
    if (!value) return undefined;
    const now = Date.now();
    let pin = verified.get(value);
    if (!pin) {
      const check = verifyPin(value, pins.secrets, now);
      if (!check.ok) {
        metrics.pins.inc({ event: `rejected_${check.reason}` });
        return undefined;
      }
      pin = check.pin;
      if (verified.size >= 10_000) verified.clear();
      verified.set(value, pin);
    } else if (pin.expires <= now) {
      verified.delete(value);
      metrics.pins.inc({ event: 'rejected_expired' });
      return undefined;
    }
    honoured.inc();
    return pin;
  };

  /** After a successful write: a pin at the write's LSN (the backend's, else the primary's now). */
  const issuePin = (previous: Pin | undefined, client: ClientInfo) => async (status: number, headers: Record<string, string | string[] | undefined>) => {
    if (!pins || status < 200 || status >= 400) return undefined;
    let lsn: bigint | undefined;
    if (pins.mode === 'lsn') {
      const reported = headers['x-banyan-write-lsn'];
      lsn = (typeof reported === 'string' ? parseLsn(reported) : undefined) ?? await pins.currentLsn().catch(() => undefined);
      // Without any LSN the pin is timed: reads go to the primary until it expires.
      if (lsn !== undefined && previous?.lsn !== undefined && previous.lsn > lsn) lsn = previous.lsn;
    }
    const value = signPin({ id: previous?.id ?? newPinId(), lsn, expires: Date.now() + pins.ttlMs }, pins.secrets[0]!);
    metrics.pins.inc({ event: 'set' });
    const secure = client.proto === 'https' ? '; Secure' : '';
    return {
      'set-cookie': `${PIN_COOKIE}=${value}; Path=/; Max-Age=${Math.ceil(pins.ttlMs / 1000)}; HttpOnly; SameSite=Lax${secure}`,
      [PIN_HEADER]: value,
    };
  };

  const send = (backend: 'legacy' | 'new', req: IncomingMessage, res: ServerResponse, client: ClientInfo, forward: ForwardOptions) =>
    breakers[backend].fire(() => forwarder.forward(backend, req, res, client, forward)) as Promise<CapturedResponse | undefined>;

  const record = requestRecorder(metrics);
  const usage = options.usage;
  const unmatchedPaths = new CappedLabels(options.maxLabels ?? 200);
  // Per route: one route's junk cannot crowd out another's features. A new table version brings new
  // extractor objects (perhaps new known values); the route's spent budget carries over.
  const featureLabels = new Map<string, FeatureLabels>();
  const labelsFor = (route: string, extractors: readonly FeatureExtractor[]) => {
    let labels = featureLabels.get(route);
    if (labels?.extractors !== extractors) featureLabels.set(route, (labels = new FeatureLabels(extractors, labels)));
    return labels;
  };
  const unmatchedSeries = new Map<string, { inc(): void }>();
  const featureSeries = new Map<string, { inc(): void }>();
  const countUnmatched = (url: string | undefined) => {
    const label = unmatchedPaths.label(normalizePath(url ?? '/'));
    let child = unmatchedSeries.get(label);
    if (!child) unmatchedSeries.set(label, (child = metrics.unmatched.labels({ path: label })));
    child.inc();
  };
  const countFeature = (feature: string) => {
    let child = featureSeries.get(feature);
    if (!child) featureSeries.set(feature, (child = metrics.features.labels({ feature })));
    child.inc();
  };

  const app = new Koa();
  app.use(async (ctx) => {
    const started = process.hrtime.bigint();
    const req = ctx.req;
    const res = ctx.res;
    ctx.respond = false;
    const requestId = acceptableRequestId(req.headers['x-request-id']) ?? randomUUID();
    const refusal = checkTarget(req);
    if (refusal) {
      record(UNMATCHED, 'proxy', req.method ?? 'GET', 400, Number(process.hrtime.bigint() - started) / 1e9);
      plain(res, 400, `400 Bad Request: ${refusal}.\nRequest id: ${requestId}\n`, requestId, { connection: 'close' });
      return;
    }
    if (req.method === 'GET' && (req.url === PREVIEW_PATH || req.url?.startsWith(`${PREVIEW_PATH}?`))) {
      openPreview(req, res, requestId);
      return;
    }
    const client = clientInfo(req.headers, req.socket.remoteAddress ?? '', 'encrypted' in req.socket, trusted, requestId);
    const pin = readPin(req);
    let minted: string | undefined;
    const decision = routeFor(req, client, (sid) => { minted = sid; });
    const method = req.method ?? 'GET';
    let served: string = decision.target;
    let fallbackReason: string | undefined;
    let features = NO_FEATURES;
    let peekedBody: Readable | undefined;
    const extractors = decision.spec?.features;
    if (extractors) {
      const q = (req.url ?? '').indexOf('?');
      features = q < 0 ? NO_FEATURES : queryFeatures(extractors, req.url!.slice(q + 1));
      if (readsBody(extractors) && !SAFE.has(method) && hasBody(req)) {
        try {
          const peeked = await peekFeature(req, extractors);
          peekedBody = peeked.body;
          if (peeked.feature) features = [...features, peeked.feature];
        } catch {
          // The client went away while sending its body: nobody to answer.
          res.destroy();
          return;
        }
      }
      if (features.length) {
        const labels = labelsFor(decision.route, extractors);
        features = features.map((f) => labels.label(f));
      }
    }
    // On close, not finish: a request the client gave up on is use too (counted as 499, nginx's "client closed request").
    // The socket, kept now: by 'close' the request may have been detached from it (req.socket is then null).
    const socket = req.socket;
    const bytesBefore = socket.bytesWritten;
    res.once('close', () => {
      const status = res.writableFinished ? res.statusCode : CLIENT_CLOSED;
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      record(decision.route, served, method, status, seconds);
      if (options.accessLog) {
        try {
          options.accessLog({
            reqId: requestId, method, url: req.url ?? '/', route: decision.route, mode: decision.mode ?? 'none', backend: served, status,
            ms: Math.round(seconds * 1e4) / 10, bytes: socket.bytesWritten - bytesBefore, fallback: fallbackReason,
          });
        } catch (err) {
          // The access log must never take the proxy down.
          log(`proxy: access log: ${(err as Error).message}`);
        }
      }
      if (decision.route === UNMATCHED) countUnmatched(req.url);
      for (const f of features) countFeature(f);
      usage?.record(decision.route, served, status, features, req.headers['user-agent']);
      options.observe?.(decision.route, served, status, seconds, fallbackReason !== undefined, req.headers['user-agent']);
    });

    if (decision.target === 'proxy') {
      const answer = decision.spec?.retired ?? DEFAULT_RETIRED;
      plain(res, answer.status, `${answer.message}\n`, requestId);
      return;
    }
    const timeouts = decision.spec?.timeouts;
    const safe = SAFE.has(method);
    const forward: ForwardOptions = {
      headersTimeoutMs: timeouts?.headersMs,
      bodyTimeoutMs: timeouts?.bodyMs,
      extraHeaders: pin ? fenceHeader(pin) : undefined,
      beforeHead: withSession(pins && !safe ? issuePin(pin, client) : undefined, minted && sessionCookie(minted, client.proto === 'https')),
      addHeaders: options.debugHeaders ? () => ({
        'banyan-route': `${decision.route}; mode=${decision.mode ?? 'none'}; backend=${served}`,
        'server-timing': `${served};dur=${(Number(process.hrtime.bigint() - started) / 1e6).toFixed(1)};desc="${decision.route}"`,
      }) : undefined,
      body: peekedBody,
    };

    if (decision.target === 'new') {
      // A body would have been read by the failed attempt: only bodiless requests are replayed.
      const fallback = decision.spec?.fallback === true && safe && !hasBody(req);
      try {
        await send('new', req, res, client, forward);
        return;
      } catch (err) {
        const open = isOpenBreaker(err);
        const reason = open ? 'breaker_open' : err instanceof UpstreamError ? err.kind : 'error';
        if (err instanceof UpstreamError && err.status === 400) {
          fail(res, err, requestId);
          return;
        }
        if (!open) {
          metrics.upstreamErrors.inc({ backend: 'new', kind: reason });
          log(`proxy: ${requestId} ${method} ${req.url} → new: ${(err as Error).message}`);
        }
        if (fallback) {
          metrics.fallbacks.inc({ route: decision.route, reason });
          served = 'legacy';
          fallbackReason = reason;
          await forwardOrFail('legacy', req, res, client, forward, requestId);
          return;
        }
        if (!safe) {
          // Never replayed on legacy: the client decides whether to try again.
          const why = open ? 'is failing and is being given a rest' : `failed (${(err as Error).message})`;
          plain(res, 503, `503 Service Unavailable: the new backend ${why}. Your ${method} was not retried elsewhere; ` +
            `try again in ${RETRY_AFTER_S} seconds.\nRequest id: ${requestId}\n`, requestId, { 'retry-after': String(RETRY_AFTER_S) });
          return;
        }
        fail(res, open ? new UpstreamError('new', 502, 'breaker_open', 'the new backend is failing and is being given a rest') : asUpstream('new', err), requestId);
        return;
      }
    }

    const shadowing = decision.mode === 'shadow' && (method === 'GET' || method === 'HEAD') && decision.spec !== undefined;
    const copy = shadowing
      ? shadow.begin(decision.spec!, { method, path: req.url ?? '/', headers: upstreamRequestHeaders(req.headers, client, forward.extraHeaders), requestId })
      : undefined;
    const captured = await forwardOrFail('legacy', req, res, client, copy ? { ...forward, captureBytes: copy.captureBytes } : forward, requestId);
    copy?.finish(captured);
  });

  /** Forwards to `backend`; on failure answers 502/504 (or 400) itself. */
  async function forwardOrFail(backend: 'legacy' | 'new', req: IncomingMessage, res: ServerResponse, client: ClientInfo,
    forward: ForwardOptions, requestId: string): Promise<CapturedResponse | undefined> {
    try {
      return await send(backend, req, res, client, forward);
    } catch (err) {
      const e = isOpenBreaker(err) ? new UpstreamError(backend, 502, 'breaker_open', `the ${backend} backend is failing and is being given a rest`) : asUpstream(backend, err);
      if (e.kind !== 'breaker_open') {
        metrics.upstreamErrors.inc({ backend, kind: e.kind });
        log(`proxy: ${requestId} ${req.method} ${req.url} → ${backend}: ${e.message}`);
      }
      fail(res, e, requestId);
      return undefined;
    }
  }

  const upgrade = (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const requestId = acceptableRequestId(req.headers['x-request-id']) ?? randomUUID();
    const refusal = (req.headers.upgrade ?? '').toLowerCase() !== 'websocket'
      ? `only WebSocket upgrades are proxied, not "${String(req.headers.upgrade).slice(0, 40)}"` : checkTarget(req);
    if (refusal) {
      const body = `400 Bad Request: ${refusal}.\nRequest id: ${requestId}\n`;
      socket.end(`HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
      return;
    }
    const client = clientInfo(req.headers, req.socket.remoteAddress ?? '', 'encrypted' in req.socket, trusted, requestId);
    const decision = routeFor(req, client, () => {});
    metrics.requests.inc({ route: decision.route, backend: decision.target, method: 'GET', status_class: '1xx' });
    if (decision.target === 'proxy') {
      const answer = decision.spec?.retired ?? DEFAULT_RETIRED;
      socket.end(`HTTP/1.1 ${answer.status} Retired\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n${answer.message}\n`);
      return;
    }
    websockets.forward(decision.target, req, socket, head, client);
  };

  return {
    app,
    shadow,
    upgrade,
    breakerState: (backend) => (breakers[backend].opened ? 'open' : breakers[backend].halfOpen ? 'half-open' : 'closed'),
    closeTunnels: () => websockets.close(),
    close: async () => {
      breakers.legacy.shutdown();
      breakers.new.shutdown();
      websockets.close();
      await forwarder.close();
    },
  };
}

function makeBreaker(backend: 'legacy' | 'new', settings: BreakerSettings, metrics: ProxyMetrics, log: (line: string) => void) {
  const breaker = new CircuitBreaker((run: () => Promise<unknown>) => run(), {
    timeout: false,
    errorThresholdPercentage: settings.errorThresholdPercentage,
    volumeThreshold: settings.volumeThreshold,
    resetTimeout: settings.resetTimeoutMs,
    rollingCountTimeout: settings.rollingWindowMs,
    rollingCountBuckets: 10,
    // A request the upstream rejected as malformed says nothing about its health.
    errorFilter: (err: unknown) => err instanceof UpstreamError && err.status === 400,
  });
  metrics.breakerState.set({ backend }, 0);
  breaker.on('open', () => { metrics.breakerState.set({ backend }, 2); log(`proxy: circuit breaker for the ${backend} backend opened`); });
  breaker.on('halfOpen', () => metrics.breakerState.set({ backend }, 1));
  breaker.on('close', () => { metrics.breakerState.set({ backend }, 0); log(`proxy: circuit breaker for the ${backend} backend closed`); });
  return breaker;
}

const fenceHeaders = new WeakMap<Pin, Record<string, string>>();

/** The `X-Banyan-Min-LSN` header for a pin, formatted once per pin. */
function fenceHeader(pin: Pin): Record<string, string> {
  let header = fenceHeaders.get(pin);
  if (!header) {
    header = { 'x-banyan-min-lsn': pin.lsn === undefined ? 'primary' : formatLsn(pin.lsn) };
    fenceHeaders.set(pin, header);
  }
  return header;
}

/**
 * Makes the request target unambiguous in place (the backend receives what
 * the route table decided on), or says why it cannot be: an ambiguous path,
 * or more than one Host header.
 */
function checkTarget(req: IncomingMessage): string | undefined {
  const target = normalizeTarget(req.url ?? '/');
  if (!target.ok) return target.reason;
  if (target.target !== req.url) req.url = target.target;
  const raw = req.rawHeaders;
  let hosts = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 4 && name.toLowerCase() === 'host' && ++hosts > 1) return 'the request has more than one Host header';
  }
  return undefined;
}

type HeadHook = NonNullable<ForwardOptions['beforeHead']>;

/** The response hook with the new session's cookie added (the pin's hook may set a cookie too). */
function withSession(hook: HeadHook | undefined, cookie: string | undefined): HeadHook | undefined {
  if (!cookie) return hook;
  return async (status, headers) => {
    const extra = hook ? await hook(status, headers) : undefined;
    const pinCookie = extra?.['set-cookie'];
    return { ...extra, 'set-cookie': pinCookie ? [pinCookie, cookie].flat() : cookie };
  };
}

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

function isOpenBreaker(err: unknown): boolean {
  return (err as { code?: string }).code === 'EOPENBREAKER';
}

function asUpstream(backend: string, err: unknown): UpstreamError {
  return err instanceof UpstreamError ? err : new UpstreamError(backend, 502, 'error', `the ${backend} backend failed: ${(err as Error).message}`);
}

function fail(res: ServerResponse, e: UpstreamError, requestId: string): void {
  const title = e.status === 504 ? 'Gateway Timeout' : e.status === 400 ? 'Bad Request' : 'Bad Gateway';
  plain(res, e.status, `${e.status} ${title}: ${e.message}.\nRequest id: ${requestId}\n`, requestId);
}

function plain(res: ServerResponse, status: number, body: string, requestId: string, extra: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), 'x-request-id': requestId, ...extra });
  res.end(res.req?.method === 'HEAD' ? undefined : body);
}
