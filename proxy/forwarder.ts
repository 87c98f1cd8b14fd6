import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { errors, type Dispatcher } from 'undici';
import { clientResponseHeaders, hasBody, parsedHeaders, type ClientInfo, upstreamRequestHeaders } from './headers.js';
import { SlowBodyError } from './request-body.js';

/**
 * Why forwarding failed, in words a person reading a 502 page understands: 4xx when the client's
 * request was at fault, 503 when no connection to the backend came free in time, 502/504 when the
 * backend failed.
 */
export class UpstreamError extends Error {
  /** `detail`: the HTTP client's own words, for the proxy's log only: they never reach a page. */
  constructor(
    readonly backend: string,
    readonly status: 400 | 408 | 502 | 503 | 504,
    readonly kind: string,
    message: string,
    readonly detail?: string,
  ) {
    super(message);
  }
}

/** Per-request forwarding choices. */
export interface ForwardOptions {
  readonly headersTimeoutMs?: number | undefined;
  readonly bodyTimeoutMs?: number | undefined;
  /** Headers to add (after the client's X-Banyan-* are stripped). */
  readonly extraHeaders?: Record<string, string> | undefined;
  /** The request body to send instead of reading `req`: a body read whole, or one the proxy read the start of. */
  readonly body?: Readable | Buffer | undefined;
  /** How long the request may wait in the endpoint's queue for a connection before it is given up with 503. */
  readonly queueTimeoutMs?: number | undefined;
  /** Keep a copy of up to this many response body bytes (for shadow comparison). */
  readonly captureBytes?: number | undefined;
  /**
   * Called with the upstream's status and headers before anything is sent to
   * the client; may add response headers (the proxy sets its pin cookie here,
   * after looking up the write's LSN).
   */
  readonly beforeHead?:
    | ((status: number, headers: Record<string, string | string[] | undefined>) => Promise<Record<string, string | string[]> | undefined>)
    | undefined;
  /** Debugging (BANYAN_DEBUG_HEADERS): backends' X-Banyan-Read-From and X-Legacy-Read-From reach the client. */
  readonly debug?: boolean | undefined;
  /** Called when the upstream's final response headers arrive (time to first byte). */
  readonly onResponseHead?: (() => void) | undefined;
  /** Headers the proxy adds to the answer, computed when the backend's head arrives (debug headers); no async work. */
  readonly addHeaders?: (() => Record<string, string>) | undefined;
}

/** A response as the client received it, kept for comparison. */
export interface CapturedResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
  readonly truncated: boolean;
}

export interface ForwarderOptions {
  /** Time to wait for the upstream's response headers. */
  readonly headersTimeoutMs?: number;
  /** Time allowed between two chunks of the upstream's body. */
  readonly bodyTimeoutMs?: number;
  /** Connections kept per endpoint. */
  readonly connections?: number;
}

/**
 * Sends `req` to one endpoint's keep-alive pool (undici) and streams the
 * answer into `res`, request and response bodies with backpressure, the
 * upstream request aborted when the client goes away. Resolves when the
 * response is complete; rejects with UpstreamError (naming `service`) when
 * nothing was sent to the client yet, so the caller can retry elsewhere,
 * answer 502/504 or fall back. This is the only module that knows which
 * HTTP client the proxy uses.
 */
export function forwardTo(
  pool: Dispatcher,
  service: string,
  req: IncomingMessage,
  res: ServerResponse,
  client: ClientInfo,
  options: ForwardOptions = {},
): Promise<CapturedResponse | undefined> {
  return new Promise((resolve, reject) => {
    const passage = new Passage(service, res, client.requestId, options, resolve, reject);
    if (options.queueTimeoutMs) passage.queueFor(options.queueTimeoutMs);
    pool.dispatch(
      {
        path: req.url ?? '/',
        method: req.method as 'GET',
        headers: upstreamRequestHeaders(req.headers, client, options.extraHeaders),
        body: hasBody(req) ? (options.body ?? req) : null,
        headersTimeout: options.headersTimeoutMs,
        bodyTimeout: options.bodyTimeoutMs,
      },
      passage,
    );
  });
}

/**
 * Passes on a 1xx answer the upstream sent before its final one: 103 Early
 * Hints (with their Link headers) and 102 Processing. 100 Continue is
 * answered by Node's server itself when the client expects it.
 */
function informational(res: ServerResponse, status: number, raw: Buffer[]): void {
  if (res.headersSent || res.destroyed) return;
  if (status === 103) {
    const hints = parsedHeaders(raw);
    if (hints['link'] !== undefined) res.writeEarlyHints(hints);
  } else if (status === 102) {
    res.writeProcessing();
  }
}

/**
 * One forwarded exchange, as undici's handler: the upstream's head becomes
 * the client's (reason phrase kept, headers cleaned, after the async
 * `beforeHead` hook when there is one), body chunks are written as they come
 * with the client's backpressure, trailers are passed on, and the upstream
 * request is aborted when the client goes away. No stream or promise per
 * chunk, and no header object beyond the one the client gets.
 */
class Passage implements Dispatcher.DispatchHandler {
  // undici hands the legacy handler Buffers (typed as strings in its declarations).
  #abort: ((reason?: Error) => void) | undefined;
  #resume: (() => void) | undefined;
  #gone = false;
  /** Given up while waiting for a connection: answered already, nothing more to do. */
  #expired = false;
  #queued: NodeJS.Timeout | undefined;
  #captured: { status: number; headers: Record<string, string | string[]>; chunks: Buffer[]; size: number; truncated: boolean } | undefined;

  constructor(
    readonly backend: string,
    readonly res: ServerResponse,
    readonly requestId: string,
    readonly options: ForwardOptions,
    readonly resolve: (captured: CapturedResponse | undefined) => void,
    readonly reject: (err: UpstreamError) => void,
  ) {
    (res as Carrying)[PASSAGE] = this;
    res.on('close', clientClosed);
  }

  /** The client's connection closed: if the answer was not complete, the upstream request is abandoned. */
  closed(): void {
    if (this.res.writableFinished) return;
    this.#gone = true;
    this.#abort?.(new ClientGoneError());
  }

  /** Gives the request up with 503 if it has not got a connection within `ms`. */
  queueFor(ms: number): void {
    this.#queued = setTimeout(() => {
      this.#queued = undefined;
      this.#expired = true;
      this.#gone = true;
      this.res.off('close', clientClosed);
      this.reject(
        new UpstreamError(this.backend, 503, 'queue_timeout', `the ${this.backend} backend had no free connection for ${ms / 1000} s`),
      );
    }, ms);
  }

  onConnect(abort: (reason?: Error) => void): void {
    if (this.#queued) {
      clearTimeout(this.#queued);
      this.#queued = undefined;
    }
    if (this.#gone) abort(new ClientGoneError());
    else this.#abort = abort;
  }

  onHeaders(status: number, raw: Buffer[], resume: () => void, statusMessage: string): boolean {
    const { res } = this;
    if (status < 200) {
      informational(res, status, raw);
      return true;
    }
    this.#resume = resume;
    this.options.onResponseHead?.();
    if (this.options.captureBytes) this.#captured = { status, headers: parsedHeaders(raw), chunks: [], size: 0, truncated: false };
    const hook = this.options.beforeHead;
    if (!hook) {
      this.#head(status, statusMessage, raw, undefined);
      return true;
    }
    // Paused until the hook's headers are known; the body waits in the upstream socket.
    hook(status, parsedHeaders(raw))
      .catch(() => undefined)
      .then((extra) => {
        if (this.#gone) return;
        this.#head(status, statusMessage, raw, extra);
        resume();
      })
      .catch((err: Error) => {
        // Outside undici's call now: a failure here would otherwise be an unhandled rejection that ends the
        // proxy. Abandoning the upstream request brings it to onError, which answers or cuts the client.
        this.#abort?.(err);
      });
    return false;
  }

  #head(status: number, statusMessage: string, raw: Buffer[], extra: Record<string, string | string[]> | undefined): void {
    const { res, options } = this;
    const headers = clientResponseHeaders(raw, this.requestId, options.debug);
    if (options.addHeaders) Object.assign(headers, options.addHeaders());
    if (extra) {
      for (const name in extra) {
        const existing = headers[name];
        // Cookies the backend set are kept; ours are added beside them.
        headers[name] =
          name === 'set-cookie' && existing !== undefined ? [...[existing].flat().map(String), ...[extra[name]!].flat()] : extra[name];
      }
    }
    if (statusMessage) res.statusMessage = statusMessage;
    res.writeHead(status, headers);
  }

  onData(chunk: Buffer): boolean {
    const captured = this.#captured;
    if (captured) keep(captured, chunk, this.options.captureBytes!);
    if (this.res.write(chunk)) return true;
    this.res.once('drain', this.#resume!);
    return false;
  }

  onComplete(trailers: (Buffer | string)[] | null): void {
    const { res } = this;
    res.off('close', clientClosed);
    if (trailers && trailers.length > 0 && !res.destroyed) {
      const pairs: [string, string][] = [];
      for (let i = 0; i + 1 < trailers.length; i += 2) pairs.push([trailers[i]!.toString('latin1'), trailers[i + 1]!.toString('latin1')]);
      res.addTrailers(pairs);
    }
    res.end();
    const c = this.#captured;
    this.resolve(c && { status: c.status, headers: c.headers, body: Buffer.concat(c.chunks), truncated: c.truncated });
  }

  onError(err: Error): void {
    const { res } = this;
    if (this.#queued) clearTimeout(this.#queued);
    if (this.#expired) return;
    res.off('close', clientClosed);
    if (res.headersSent || this.#gone) {
      // Too late for an error page: cut the connection so the client sees a truncated response.
      res.destroy();
      this.resolve(undefined);
      return;
    }
    this.reject(describe(this.backend, err));
  }
}

// The response's Passage, for one listener function shared by every response instead of a closure each.
const PASSAGE = Symbol('passage');
type Carrying = ServerResponse & { [PASSAGE]?: Passage };

function clientClosed(this: ServerResponse): void {
  (this as Carrying)[PASSAGE]?.closed();
}

/** The reason an upstream request is abandoned when its client went away. */
class ClientGoneError extends Error {
  constructor() {
    super('the client went away');
  }
}

/** Keeps the first `limit` bytes of a body, noting when more went by. */
function keep(into: { chunks: Buffer[]; size: number; truncated: boolean }, chunk: Buffer, limit: number): void {
  if (into.size < limit) {
    const part = chunk.subarray(0, limit - into.size);
    into.chunks.push(part);
    into.size += part.length;
    if (part.length < chunk.length) into.truncated = true;
  } else {
    into.truncated = true;
  }
}

function describe(backend: string, err: unknown): UpstreamError {
  const code = (err as { code?: string }).code ?? '';
  if (err instanceof errors.InvalidArgumentError) {
    return new UpstreamError(backend, 400, 'invalid', 'the request has a header or body that cannot be forwarded', (err as Error).message);
  }
  if (err instanceof SlowBodyError) {
    return new UpstreamError(backend, 408, 'slow_body', `the request body came too slowly: ${err.why}`);
  }
  if (err instanceof errors.RequestContentLengthMismatchError) {
    return new UpstreamError(backend, 400, 'invalid', 'the request body did not match its Content-Length');
  }
  if (err instanceof errors.HeadersTimeoutError || err instanceof errors.BodyTimeoutError || err instanceof errors.ConnectTimeoutError) {
    return new UpstreamError(backend, 504, 'timeout', `the ${backend} backend did not answer in time`);
  }
  if (code === 'ECONNREFUSED') {
    return new UpstreamError(backend, 502, 'refused', `the ${backend} backend refused the connection (is it running?)`);
  }
  if (code === 'ECONNRESET' || err instanceof errors.SocketError) {
    return new UpstreamError(backend, 502, 'reset', `the ${backend} backend closed the connection before answering`);
  }
  return new UpstreamError(backend, 502, 'error', `the ${backend} backend failed`, String((err as Error)?.message ?? err));
}
