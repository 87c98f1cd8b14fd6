/**
 * How a request reaches its backend: through that backend's circuit breaker;
 * for the new app, a safe bodiless request falls back to legacy when it
 * fails (if the route allows), and anything else is never replayed: the
 * client gets 503 with Retry-After and decides. A failure before anything
 * was sent becomes a 502/504 page naming the backend.
 */

import type { IncomingMessage, ServerResponse } from 'node:http';
import { Breaker, BreakerOpenError, type BreakerOptions } from '../lib/breaker.js';
import type { ProxyMetrics } from '../metrics/catalog.js';
import { asUpstream, fail, notReplayed } from './answers.js';
import { Forwarder, UpstreamError, type CapturedResponse, type ForwarderOptions, type ForwardOptions } from './forwarder.js';
import type { ClientInfo } from './headers.js';
import type { Exchange } from './request-accounting.js';

/** Circuit breaker settings, one breaker per upstream. */
export type BreakerSettings = Pick<BreakerOptions, 'errorThresholdPercentage' | 'volumeThreshold' | 'resetTimeoutMs' | 'rollingWindowMs'>;

export const DEFAULT_BREAKER: BreakerSettings = { errorThresholdPercentage: 50, volumeThreshold: 5, resetTimeoutMs: 5_000, rollingWindowMs: 10_000 };

type Backend = 'legacy' | 'new';

export class ForwardingPolicy {
  readonly forwarder: Forwarder;
  readonly #breakers: Record<Backend, Breaker>;
  readonly #metrics: ProxyMetrics;
  readonly #log: (line: string) => void;

  constructor(upstreams: Record<Backend, string>, options: { forwarding?: ForwarderOptions | undefined; breaker?: Partial<BreakerSettings> | undefined; metrics: ProxyMetrics; log: (line: string) => void }) {
    this.forwarder = new Forwarder(upstreams, options.forwarding);
    this.#metrics = options.metrics;
    this.#log = options.log;
    const settings = { ...DEFAULT_BREAKER, ...options.breaker };
    this.#breakers = { legacy: makeBreaker('legacy', settings, options.metrics, options.log), new: makeBreaker('new', settings, options.metrics, options.log) };
  }

  breakerState(backend: Backend): 'closed' | 'half-open' | 'open' {
    return this.#breakers[backend].state;
  }

  /**
   * To the new app. When it fails, a request `mayFallBack` goes to legacy (the exchange records that it
   * did, and why); an unsafe one gets 503 and is not replayed; a safe one without fallback gets 502/504.
   */
  async toNew(req: IncomingMessage, res: ServerResponse, client: ClientInfo, forward: ForwardOptions, exchange: Exchange, mayFallBack: boolean, safe: boolean): Promise<void> {
    try {
      await this.#send('new', req, res, client, forward);
      return;
    } catch (err) {
      const open = isOpenBreaker(err);
      const reason = open ? 'breaker_open' : err instanceof UpstreamError ? err.kind : 'error';
      if (err instanceof UpstreamError && err.status === 400) {
        fail(res, err, exchange.requestId);
        return;
      }
      if (!open) {
        this.#metrics.upstreamErrors.inc({ backend: 'new', kind: reason });
        this.#log(`proxy: ${exchange.requestId} ${exchange.method} ${req.url} → new: ${(err as Error).message}`);
      }
      if (mayFallBack) {
        this.#metrics.fallbacks.inc({ route: exchange.route, reason });
        exchange.served = 'legacy';
        exchange.fallbackReason = reason;
        await this.toOrFail('legacy', req, res, client, forward, exchange.requestId);
        return;
      }
      if (!safe) {
        notReplayed(res, exchange.method, open ? 'is failing and is being given a rest' : `failed (${(err as Error).message})`, exchange.requestId);
        return;
      }
      fail(res, open ? new UpstreamError('new', 502, 'breaker_open', 'the new backend is failing and is being given a rest') : asUpstream('new', err), exchange.requestId);
    }
  }

  /** To `backend`; on failure answers 502/504 (or 400) itself. */
  async toOrFail(backend: Backend, req: IncomingMessage, res: ServerResponse, client: ClientInfo,
    forward: ForwardOptions, requestId: string): Promise<CapturedResponse | undefined> {
    try {
      return await this.#send(backend, req, res, client, forward);
    } catch (err) {
      const e = isOpenBreaker(err) ? new UpstreamError(backend, 502, 'breaker_open', `the ${backend} backend is failing and is being given a rest`) : asUpstream(backend, err);
      if (e.kind !== 'breaker_open') {
        this.#metrics.upstreamErrors.inc({ backend, kind: e.kind });
        this.#log(`proxy: ${requestId} ${req.method} ${req.url} → ${backend}: ${e.message}`);
      }
      fail(res, e, requestId);
      return undefined;
    }
  }

  #send(backend: Backend, req: IncomingMessage, res: ServerResponse, client: ClientInfo, forward: ForwardOptions): Promise<CapturedResponse | undefined> {
    const breaker = this.#breakers[backend];
    if (!breaker.admit()) return Promise.reject(new BreakerOpenError());
    return this.forwarder.forward(backend, req, res, client, forward).then((captured) => {
      breaker.succeeded();
      return captured;
    }, (err: unknown) => {
      // A request the upstream rejected as malformed says nothing about its health.
      if (err instanceof UpstreamError && err.status === 400) breaker.succeeded();
      else breaker.failed();
      throw err;
    });
  }

  async close(): Promise<void> {
    this.#breakers.legacy.shutdown();
    this.#breakers.new.shutdown();
    await this.forwarder.close();
  }
}

const GAUGE = { closed: 0, 'half-open': 1, open: 2 } as const;

function makeBreaker(backend: Backend, settings: BreakerSettings, metrics: ProxyMetrics, log: (line: string) => void): Breaker {
  metrics.breakerState.set({ backend }, 0);
  return new Breaker({
    ...settings,
    onChange: (state) => {
      metrics.breakerState.set({ backend }, GAUGE[state]);
      if (state !== 'half-open') log(`proxy: circuit breaker for the ${backend} backend ${state === 'open' ? 'opened' : 'closed'}`);
    },
  });
}

function isOpenBreaker(err: unknown): boolean {
  return err instanceof BreakerOpenError;
}
