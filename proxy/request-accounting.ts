/**
 * What each request leaves behind once its answer is complete (or its client
 * gone, counted as 499): the Prometheus counts and latency (to the first
 * byte), the access-log line (with the whole time), the usage ledger's counts with features and user agent, and the
 * autopilot's evidence. Nothing here can fail the request.
 */

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { requestRecorder, type ProxyMetrics } from '../metrics/catalog.js';
import { CappedLabels, normalizePath } from '../metrics/paths.js';
import type { UsageLedger } from '../metrics/usage.js';
import { UNMATCHED } from '../routing/table/index.js';
import type { AccessEntry } from './access-log.js';
import { endRequestSpan, type RequestTrace } from './request-span.js';
import { CLIENT_CLOSED } from '../lib/http-status.js';
import type { ObservedRequest } from '../autopilot/evidence.js';

// What track() keeps on the response, for one 'close' listener function shared by every response.
const TRACKED = Symbol('tracked');
type Tracked = ServerResponse & {
  [TRACKED]?: { accounting: RequestAccounting; exchange: Exchange; req: IncomingMessage; socket: Socket; bytesBefore: number };
};

function answered(this: ServerResponse): void {
  const t = (this as Tracked)[TRACKED];
  t?.accounting.record(t.exchange, t.req, this, t.socket, t.bytesBefore);
}

export { CLIENT_CLOSED };

/** One request as the proxy handled it; `served` and `fallbackReason` change when it falls back. */
export interface Exchange {
  readonly requestId: string;
  /** When the request arrived, in `performance.now()` milliseconds. */
  readonly started: number;
  readonly method: string;
  readonly route: string;
  readonly mode: string;
  /** The side that answered: legacy, new or proxy. */
  served: string;
  /** The upstream that answered (legacy, app, files, …), or proxy. */
  service: string;
  /** The endpoint the last attempt went to, when one was chosen. */
  endpoint: string | undefined;
  fallbackReason: string | undefined;
  features: readonly string[];
  /** When the request was ready to send upstream (its body admitted), in `performance.now()` milliseconds. */
  readonly ready: number;
  /** When the answering upstream's response headers arrived; undefined when the proxy answered itself. */
  headersAt: number | undefined;
  /** The request's span, when tracing is on. */
  readonly trace?: RequestTrace | undefined;
}

/**
 * A request's latency as evidence (Prometheus' histogram, the autopilot's
 * samples): from the request being ready to go upstream to the upstream's
 * response headers, time to first byte. How slowly the client sent its body
 * or reads the answer is its own business, and must not judge a backend: a
 * slow reader on the new side cannot force a rollback. Answers the proxy made
 * itself count until they were written.
 */
export function evidenceSeconds(exchange: Pick<Exchange, 'ready' | 'headersAt'>, now: number): number {
  return ((exchange.headersAt ?? now) - exchange.ready) / 1e3;
}

/** Told of every answered request (the autopilot's evidence). */
export type Observer = (request: ObservedRequest) => void;

export interface AccountingOptions {
  readonly metrics: ProxyMetrics;
  readonly usage?: UsageLedger | undefined;
  readonly observe?: Observer | undefined;
  readonly accessLog?: ((entry: AccessEntry) => void) | undefined;
  /** Distinct normalized unmatched paths labelled before the rest count as `other`. */
  readonly maxLabels: number;
  readonly log: (line: string) => void;
}

export class RequestAccounting {
  readonly #o: AccountingOptions;
  readonly #record: ReturnType<typeof requestRecorder>;
  readonly #unmatchedPaths: CappedLabels;
  readonly #unmatchedSeries = new Map<string, { inc(): void }>();
  readonly #featureSeries = new Map<string, { inc(): void }>();

  constructor(options: AccountingOptions) {
    this.#o = options;
    this.#record = requestRecorder(options.metrics);
    this.#unmatchedPaths = new CappedLabels(options.maxLabels);
  }

  /** A request refused before routing (an ambiguous target): counted as unmatched, answered by the proxy. */
  refused(method: string, status: number, started: number): void {
    this.#record(UNMATCHED, 'proxy', 'proxy', method, status, (performance.now() - started) / 1e3);
  }

  /**
   * Records `exchange` when `res` closes: on close, not finish, because a request the client gave up
   * on is use too (499, nginx's "client closed request").
   */
  track(exchange: Exchange, req: IncomingMessage, res: ServerResponse): void {
    // The socket, kept now: by 'close' the request may have been detached from it (req.socket is then null).
    (res as Tracked)[TRACKED] = { accounting: this, exchange, req, socket: req.socket, bytesBefore: req.socket.bytesWritten };
    res.on('close', answered);
  }

  /** What a request leaves behind, once its response closed. */
  record(exchange: Exchange, req: IncomingMessage, res: ServerResponse, socket: Socket, bytesBefore: number): void {
    const status = res.writableFinished ? res.statusCode : CLIENT_CLOSED;
    const now = performance.now();
    const seconds = (now - exchange.started) / 1e3;
    const evidence = evidenceSeconds(exchange, now);
    const o = this.#o;
    this.#record(exchange.route, exchange.served, exchange.service, exchange.method, status, evidence);
    if (exchange.trace) endRequestSpan(exchange.trace, exchange, status);
    if (o.accessLog) {
      try {
        o.accessLog({
          reqId: exchange.requestId,
          method: exchange.method,
          url: req.url ?? '/',
          route: exchange.route,
          mode: exchange.mode,
          backend: exchange.served,
          service: exchange.service,
          endpoint: exchange.endpoint,
          status,
          ms: Math.round(seconds * 1e4) / 10,
          bytes: socket.bytesWritten - bytesBefore,
          fallback: exchange.fallbackReason,
        });
      } catch (err) {
        // The access log must never take the proxy down.
        o.log(`proxy: access log: ${(err as Error).message}`);
      }
    }
    if (exchange.route === UNMATCHED) this.#countUnmatched(req.url);
    for (const f of exchange.features) this.#countFeature(f);
    const agent = req.headers['user-agent'];
    o.usage?.record({
      route: exchange.route,
      backend: exchange.served,
      service: exchange.service,
      status,
      features: exchange.features,
      userAgent: agent,
    });
    o.observe?.({
      route: exchange.route,
      served: exchange.served,
      status,
      seconds: evidence,
      fellBack: exchange.fallbackReason !== undefined,
      userAgent: agent,
    });
  }

  #countUnmatched(url: string | undefined): void {
    const label = this.#unmatchedPaths.label(normalizePath(url ?? '/'));
    let child = this.#unmatchedSeries.get(label);
    if (!child) this.#unmatchedSeries.set(label, (child = this.#o.metrics.unmatched.labels({ path: label })));
    child.inc();
  }

  #countFeature(feature: string): void {
    let child = this.#featureSeries.get(feature);
    if (!child) this.#featureSeries.set(feature, (child = this.#o.metrics.features.labels({ feature })));
    child.inc();
  }
}
