import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Pool, errors, type Dispatcher } from 'undici';
import { clientResponseHeaders, type ClientInfo, upstreamRequestHeaders } from './headers.js';

/** Why forwarding failed, in words a person reading a 502 page understands. */
export class UpstreamError extends Error {
  constructor(readonly backend: string, readonly status: 400 | 502 | 504, readonly kind: string, message: string) {
    super(message);
  }
}

/** Per-request forwarding choices. */
export interface ForwardOptions {
  readonly headersTimeoutMs?: number | undefined;
  readonly bodyTimeoutMs?: number | undefined;
  /** Headers to add (after the client's X-Banyan-* are stripped). */
  readonly extraHeaders?: Record<string, string> | undefined;
  /** The request body to send instead of reading `req` (a body the proxy peeked at, replayed whole). */
  readonly body?: Readable | undefined;
  /** Keep a copy of up to this many response body bytes (for shadow comparison). */
  readonly captureBytes?: number | undefined;
  /**
   * Called with the upstream's status and headers before anything is sent to
   * the client; may add response headers (the proxy sets its pin cookie here,
   * after looking up the write's LSN).
   */
  readonly beforeHead?: ((status: number, headers: Record<string, string | string[] | undefined>) => Promise<Record<string, string | string[]> | undefined>) | undefined;
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
  readonly connections?: number;
}

/** What one streamed response needs beyond status and headers: filled in by the pool's handler. */
interface Passage {
  readonly res: ServerResponse;
  /** The upstream's reason phrase, passed on as it was. */
  statusMessage: string;
}

type LegacyHandler = Dispatcher.DispatchHandler & {
  onHeaders?: (statusCode: number, rawHeaders: Buffer[], resume: () => void, statusMessage: string) => boolean;
};

/**
 * A Pool whose streamed responses keep what `Pool.stream()` does not hand
 * to its factory: the reason phrase, and trailers (given to the client's
 * response before it ends). The request's `opaque` is its Passage.
 */
class TransparentPool extends Pool {
  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const passage = (options as { opaque?: unknown }).opaque;
    const h = handler as LegacyHandler;
    if (passage instanceof Object && 'statusMessage' in passage && h.onHeaders && h.onComplete) {
      const onHeaders = h.onHeaders;
      const onComplete = h.onComplete;
      const p = passage as Passage;
      h.onHeaders = function (this: unknown, statusCode, rawHeaders, resume, statusMessage) {
        if (statusCode >= 200) p.statusMessage = statusMessage;
        return onHeaders.call(this, statusCode, rawHeaders, resume, statusMessage);
      };
      h.onComplete = function (this: unknown, trailers: (Buffer | string)[] | null) {
        if (trailers && trailers.length > 0 && !p.res.destroyed) {
          const pairs: [string, string][] = [];
          const text = (v: Buffer | string) => (typeof v === 'string' ? v : v.toString('latin1'));
          for (let i = 0; i + 1 < trailers.length; i += 2) pairs.push([text(trailers[i]!), text(trailers[i + 1]!)]);
          p.res.addTrailers(pairs);
        }
        return onComplete.call(this, trailers as string[] | null);
      };
    }
    return super.dispatch(options, handler);
  }
}

/**
 * Forwards plain HTTP requests to named upstreams with undici: one keep-alive
 * Pool per upstream, request and response bodies streamed with backpressure,
 * and the upstream request aborted when the client goes away. This is the
 * only module that knows which HTTP client the proxy uses.
 */
export class Forwarder {
  readonly #pools = new Map<string, Pool>();
  readonly #options: ForwarderOptions;

  constructor(upstreams: Record<string, string>, options: ForwarderOptions = {}) {
    this.#options = options;
    for (const [name, url] of Object.entries(upstreams)) {
      this.#pools.set(name, new TransparentPool(url, {
        connections: options.connections ?? 128,
        keepAliveTimeout: 10_000,
        headersTimeout: options.headersTimeoutMs ?? 30_000,
        bodyTimeout: options.bodyTimeoutMs ?? 30_000,
      }));
    }
  }

  /**
   * Sends `req` to `backend` and streams the answer into `res`. Resolves when
   * the response is complete; rejects with UpstreamError when nothing was
   * sent to the client yet, so the caller can answer 502/504 or fall back.
   */
  async forward(backend: string, req: IncomingMessage, res: ServerResponse, client: ClientInfo,
    options: ForwardOptions = {}): Promise<CapturedResponse | undefined> {
    const pool = this.#pool(backend);
    if (!pool) throw new UpstreamError(backend, 502, 'unknown', `no upstream named ${backend} is configured`);
    const abort = new ClientGone();
    const onClose = () => { if (!res.writableFinished) abort.fire(); };
    res.once('close', onClose);
    const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
    let captured: { status: number; headers: Record<string, string | string[] | undefined>; chunks: Buffer[]; size: number; truncated: boolean } | undefined;
    try {
      if (options.beforeHead) {
        await this.#forwardWithHook(pool, req, res, client, options, hasBody, abort);
        return undefined;
      }
      const passage: Passage = { res, statusMessage: '' };
      await pool.stream({ ...dispatch(req, client, options, hasBody, abort), opaque: passage, onInfo: ({ statusCode, headers }) => informational(res, statusCode, headers) },
        ({ statusCode, headers }) => {
        if (passage.statusMessage) res.statusMessage = passage.statusMessage;
        const out = clientResponseHeaders(headers, client.requestId);
        if (options.addHeaders) Object.assign(out, options.addHeaders());
        res.writeHead(statusCode, out);
        if (!options.captureBytes) return res;
        captured = { status: statusCode, headers, chunks: [], size: 0, truncated: false };
        return teeInto(res, captured, options.captureBytes);
      });
    } catch (err) {
      if (res.headersSent || abort.aborted) {
        // Too late for an error page: cut the connection so the client sees a truncated response.
        res.destroy();
        return undefined;
      }
      throw describe(backend, err);
    } finally {
      res.off('close', onClose);
    }
    return captured && { status: captured.status, headers: captured.headers, body: Buffer.concat(captured.chunks), truncated: captured.truncated };
  }

  /** The slower path for responses whose headers need async work first: request(), then pipe the body. */
  async #forwardWithHook(pool: Pool, req: IncomingMessage, res: ServerResponse, client: ClientInfo, options: ForwardOptions,
    hasBody: boolean, abort: ClientGone): Promise<void> {
    const upstream = await pool.request(dispatch(req, client, options, hasBody, abort));
    let extra: Record<string, string | string[]> | undefined;
    try {
      extra = await options.beforeHead!(upstream.statusCode, upstream.headers);
    } catch {
      extra = undefined;
    }
    const headers = clientResponseHeaders(upstream.headers, client.requestId);
    if (options.addHeaders) Object.assign(headers, options.addHeaders());
    if (extra) {
      for (const [name, value] of Object.entries(extra)) {
        const existing = headers[name];
        // Cookies the backend set are kept; ours are added beside them.
        headers[name] = name === 'set-cookie' && existing !== undefined ? [...[existing].flat().map(String), ...[value].flat()] : value;
      }
    }
    if (upstream.statusText) res.statusMessage = upstream.statusText;
    res.writeHead(upstream.statusCode, headers);
    await pipeline(upstream.body, res);
  }

  /** The keep-alive pool of one upstream, for requests the proxy makes itself (shadow copies). */
  pool(backend: string): Pool {
    return this.#pool(backend);
  }

  #pool(backend: string): Pool {
    const pool = this.#pools.get(backend);
    if (!pool) throw new UpstreamError(backend, 502, 'unknown', `no upstream named ${backend} is configured`);
    return pool;
  }

  /** Closes every pool, waiting for requests in flight. */
  async close(): Promise<void> {
    await Promise.all([...this.#pools.values()].map((p) => p.close()));
  }
}

/** The upstream request: the client's method, path and cleaned headers, its body streamed, and the route's time limits. */
function dispatch(req: IncomingMessage, client: ClientInfo, options: ForwardOptions, hasBody: boolean, abort: ClientGone) {
  return {
    path: req.url ?? '/',
    method: req.method as 'GET',
    headers: upstreamRequestHeaders(req.headers, client, options.extraHeaders),
    body: hasBody ? (options.body ?? req) : null,
    signal: abort,
    ...(options.headersTimeoutMs ? { headersTimeout: options.headersTimeoutMs } : {}),
    ...(options.bodyTimeoutMs ? { bodyTimeout: options.bodyTimeoutMs } : {}),
  };
}

/**
 * Passes on a 1xx answer the upstream sent before its final one: 103 Early
 * Hints (with their Link headers) and 102 Processing. 100 Continue is
 * answered by Node's server itself when the client expects it.
 */
function informational(res: ServerResponse, status: number, headers: Record<string, string | string[] | undefined>): void {
  if (res.headersSent || res.destroyed) return;
  if (status === 103) {
    const hints: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(headers)) if (value !== undefined) hints[name] = value;
    if (hints['link'] !== undefined) res.writeEarlyHints(hints);
  } else if (status === 102) {
    res.writeProcessing();
  }
}

/**
 * Tells undici the client went away. undici takes any EventEmitter with an
 * `aborted` flag and an 'abort' event as a signal; an AbortController costs
 * about 25 µs of CPU per request here (measured), this almost nothing.
 */
class ClientGone extends EventEmitter {
  aborted = false;

  fire(): void {
    this.aborted = true;
    this.emit('abort');
  }
}

/** A writable that passes chunks to the client (with its backpressure) and keeps the first `limit` bytes. */
function teeInto(res: ServerResponse, into: { chunks: Buffer[]; size: number; truncated: boolean }, limit: number): Writable {
  const tee = new Writable({
    write(chunk: Buffer, _encoding, done) {
      if (into.size < limit) {
        const keep = chunk.subarray(0, limit - into.size);
        into.chunks.push(keep);
        into.size += keep.length;
        if (keep.length < chunk.length) into.truncated = true;
      } else {
        into.truncated = true;
      }
      if (res.write(chunk)) done();
      else res.once('drain', () => done());
    },
    final(done) {
      res.end(done);
    },
  });
  res.once('close', () => { if (!res.writableFinished) tee.destroy(); });
  return tee;
}

function describe(backend: string, err: unknown): UpstreamError {
  const code = (err as { code?: string }).code ?? '';
  if (err instanceof errors.InvalidArgumentError) {
    return new UpstreamError(backend, 400, 'invalid', `the request cannot be forwarded: ${(err as Error).message}`);
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
  return new UpstreamError(backend, 502, 'error', `the ${backend} backend failed: ${(err as Error).message}`);
}
