/**
 * How a request reaches its service: one endpoint, chosen by the service's
 * balancer, each endpoint behind its own circuit breaker. A safe bodiless
 * request that cannot connect, or is reset before the first response byte,
 * is tried once more on another endpoint; nothing else is ever replayed. On
 * the new side, a safe bodiless request the service cannot answer falls back
 * (to legacy, or to the upstream the route names) when the route allows; a
 * write gets 503 with Retry-After, naming the service, and the client
 * decides. A failure before anything was sent becomes a 502/504 page.
 */

import { quoted } from '../lib/quoted.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ProxyMetrics } from '../metrics/catalog.js';
import { asUpstream, fail, notReplayed } from './answers.js';
import { forwardTo, UpstreamError, type CapturedResponse, type ForwardOptions } from './forwarder.js';
import { hasBody, isSafe, type ClientInfo } from './headers.js';
import type { ClientShares } from './client-share.js';
import type { Exchange } from './request-accounting.js';
import type { Endpoint, Upstream, UpstreamSet } from './upstreams/index.js';

/** Circuit breaker settings (one breaker per endpoint) and their defaults. */
export { ENDPOINT_BREAKER_DEFAULTS as DEFAULT_BREAKER, type BreakerSettings } from './upstreams/index.js';

/** Every endpoint of a service is out (down, ejected, its breaker open), or it has none. */
export class UnavailableError extends UpstreamError {
  constructor(
    service: string,
    readonly reason: 'breaker_open' | 'unavailable' | 'no_endpoints' | 'unknown_service' | 'client_share',
    detail: string,
  ) {
    super(service, 502, reason, detail);
  }
}

/** How the new side's answer may be replaced when its service fails. */
export interface NewSide {
  readonly service: string;
  /** The upstream a safe bodiless request falls back to, or undefined for none. */
  readonly fallback: string | undefined;
  /** A session key for upstreams that keep a session on one endpoint. */
  readonly sessionKey: string | undefined;
}

export class ForwardingPolicy {
  readonly upstreams: UpstreamSet;
  readonly #metrics: ProxyMetrics;
  readonly #log: (line: string) => void;
  readonly #shares: ClientShares | undefined;
  readonly #connections: number;

  /** `shares`: what one client may hold of a service, whose endpoints keep `connections` each. */
  constructor(
    upstreams: UpstreamSet,
    options: { metrics: ProxyMetrics; log: (line: string) => void; shares?: ClientShares | undefined; connections: number },
  ) {
    this.upstreams = upstreams;
    this.#metrics = options.metrics;
    this.#log = options.log;
    this.#shares = options.shares;
    this.#connections = options.connections;
  }

  /**
   * To the route's service on the new side. When it fails, a safe bodiless request with a fallback goes
   * there (the exchange records that it did, and why); an unsafe one gets 503 and is not replayed; a safe
   * one without fallback gets 502/503/504.
   */
  async toNew(
    req: IncomingMessage,
    res: ServerResponse,
    client: ClientInfo,
    forward: ForwardOptions,
    exchange: Exchange,
    side: NewSide,
  ): Promise<void> {
    try {
      await this.#send(side.service, req, res, client, forward, exchange, side.sessionKey);
      return;
    } catch (err) {
      const e = asUpstream(side.service, err);
      if (e.status < 500) {
        fail(res, e, exchange.requestId);
        return;
      }
      this.#noteFailure(e, req, exchange);
      const safe = isSafe(exchange.method);
      // A client over its share is not sent elsewhere: its own load is the problem, not the service.
      if (side.fallback !== undefined && safe && !hasBody(req) && !isOverShare(e)) {
        this.#metrics.fallbacks.inc({ route: exchange.route, service: side.service, reason: e.kind });
        exchange.served = side.fallback === 'legacy' ? 'legacy' : 'new';
        exchange.service = side.fallback;
        exchange.fallbackReason = e.kind;
        await this.toOrFail(side.fallback, req, res, client, forward, exchange);
        return;
      }
      if (!safe || e instanceof UnavailableError || e.status === 503) {
        notReplayed(res, exchange.method, side.service, e.message, exchange.requestId, safe);
        return;
      }
      fail(res, e, exchange.requestId);
    }
  }

  /** To `service` (legacy, or a fallback); on failure answers 502/503/504 (or 400) itself. */
  async toOrFail(
    service: string,
    req: IncomingMessage,
    res: ServerResponse,
    client: ClientInfo,
    forward: ForwardOptions,
    exchange: Exchange,
    sessionKey?: string,
  ): Promise<CapturedResponse | undefined> {
    try {
      return await this.#send(service, req, res, client, forward, exchange, sessionKey);
    } catch (err) {
      const e = asUpstream(service, err);
      this.#noteFailure(e, req, exchange);
      if (e instanceof UnavailableError || e.status === 503)
        notReplayed(res, exchange.method, service, e.message, exchange.requestId, isSafe(exchange.method));
      else fail(res, e, exchange.requestId);
      return undefined;
    }
  }

  #noteFailure(e: UpstreamError, req: IncomingMessage, exchange: Exchange): void {
    if (e instanceof UnavailableError || e.status < 500) return;
    this.#metrics.upstreamErrors.inc({ backend: exchange.served, service: e.backend, kind: e.kind });
    this.#log(
      `proxy: ${exchange.requestId} ${req.method} ${quoted(req.url ?? '/')} → ${e.backend} (${exchange.endpoint ?? 'no endpoint'}): ${e.message}${e.detail ? ` (${e.detail})` : ''}`,
    );
  }

  /** One endpoint, and for a replayable request that never reached an answer, one more. */
  async #send(
    service: string,
    req: IncomingMessage,
    res: ServerResponse,
    client: ClientInfo,
    forward: ForwardOptions,
    exchange: Exchange,
    sessionKey: string | undefined,
  ): Promise<CapturedResponse | undefined> {
    const upstream = this.upstreams.get(service);
    if (!upstream) throw new UnavailableError(service, 'unknown_service', `no upstream named ${service} is configured on this proxy`);
    const share = this.#shares?.enter(service, client.ip, upstream.endpoints.length * this.#connections);
    if (share === false) {
      this.#metrics.upstreamErrors.inc({ backend: exchange.served, service, kind: 'client_share' });
      throw new UnavailableError(service, 'client_share', `the ${service} service is busy with other requests from your address`);
    }
    try {
      return await this.#sendTo(upstream, req, res, client, forward, exchange, sessionKey);
    } finally {
      this.#shares?.leave(share);
    }
  }

  async #sendTo(
    upstream: Upstream,
    req: IncomingMessage,
    res: ServerResponse,
    client: ClientInfo,
    forward: ForwardOptions,
    exchange: Exchange,
    sessionKey: string | undefined,
  ): Promise<CapturedResponse | undefined> {
    const service = upstream.name;
    const first = take(upstream, sessionKey, undefined);
    if (!first) throw unavailable(upstream);
    try {
      return await this.#once(first, upstream.name, req, res, client, forward, exchange);
    } catch (err) {
      if (
        !(err instanceof UpstreamError) ||
        (err.kind !== 'refused' && err.kind !== 'reset') ||
        res.headersSent ||
        res.destroyed ||
        !isSafe(exchange.method) ||
        (hasBody(req) && !Buffer.isBuffer(forward.body))
      )
        throw err;
      const second = take(upstream, sessionKey, first);
      if (!second) throw err;
      this.#metrics.retries.inc({ service, reason: err.kind });
      return await this.#once(second, upstream.name, req, res, client, forward, exchange);
    }
  }

  #once(
    endpoint: Endpoint,
    service: string,
    req: IncomingMessage,
    res: ServerResponse,
    client: ClientInfo,
    forward: ForwardOptions,
    exchange: Exchange,
  ): Promise<CapturedResponse | undefined> {
    exchange.endpoint = endpoint.url;
    return forwardTo(endpoint.pool, service, req, res, client, forward).then(
      (captured) => {
        endpoint.end({ ok: true, status: res.statusCode });
        return captured;
      },
      (err: unknown) => {
        const e = err instanceof UpstreamError ? err : undefined;
        // A request that never got a connection, or that the client spoiled (malformed, too slow), says nothing about its health.
        if (e?.kind === 'queue_timeout') endpoint.release();
        else if (e && e.status < 500) endpoint.end({ ok: true, status: e.status });
        else endpoint.end({ ok: false, kind: e ? failureKind(e.kind) : 'error' });
        throw err;
      },
    );
  }

  async close(): Promise<void> {
    await this.upstreams.close();
  }
}

function isOverShare(e: UpstreamError): boolean {
  return e instanceof UnavailableError && e.reason === 'client_share';
}

/** An endpoint that admits the request (its breaker may refuse a second trial), other than `exclude`. */
function take(upstream: Upstream, sessionKey: string | undefined, exclude: Endpoint | undefined): Endpoint | undefined {
  const endpoint = upstream.pick(sessionKey, exclude);
  if (!endpoint) return undefined;
  if (endpoint.begin()) return endpoint;
  const other = upstream.pick(sessionKey, endpoint);
  return other && other !== exclude && other.begin() ? other : undefined;
}

function failureKind(kind: string): 'refused' | 'reset' | 'timeout' | 'error' {
  return kind === 'refused' || kind === 'reset' || kind === 'timeout' ? kind : 'error';
}

/** Why no endpoint of `upstream` takes requests, in the words of its snapshot. */
function unavailable(upstream: Upstream): UnavailableError {
  const snapshot = upstream.snapshot();
  const problem = snapshot.problem;
  // Draining endpoints are leaving the table: they say nothing about why the others are out.
  const endpoints = snapshot.endpoints.filter((e) => e.state !== 'draining');
  if (endpoints.length === 0) {
    return new UnavailableError(
      upstream.name,
      'no_endpoints',
      `the ${upstream.name} service has no endpoints${problem ? ` (${problem})` : ''}`,
    );
  }
  if (endpoints.every((e) => e.breaker === 'open')) {
    return new UnavailableError(upstream.name, 'breaker_open', `the ${upstream.name} service is failing and is being given a rest`);
  }
  const states = new Map<string, number>();
  for (const e of endpoints) states.set(e.state, (states.get(e.state) ?? 0) + 1);
  const how = [...states].map(([state, n]) => `${n} ${state}`).join(', ');
  return new UnavailableError(upstream.name, 'unavailable', `no endpoint of the ${upstream.name} service is taking requests (${how})`);
}
