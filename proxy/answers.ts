/**
 * The answers the proxy writes itself, in plain text with the request id:
 * refusals, retired routes, and the 502/503/504 pages that name the backend
 * that failed.
 */

import type { ServerResponse } from 'node:http';
import { UpstreamError } from './forwarder.js';

/** The answer of a retired route (or brownout) that names none of its own. */
export const DEFAULT_RETIRED = { status: 410, message: 'This feature has been retired.' };
/** How long a client whose write was not replayed is asked to wait before trying again. */
export const RETRY_AFTER_S = 5;

/** A plain-text answer; a response already under way is cut instead (the client sees it truncated). */
export function plain(res: ServerResponse, status: number, body: string, requestId: string, extra: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'x-request-id': requestId,
    ...extra,
  });
  res.end(res.req?.method === 'HEAD' ? undefined : body);
}

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  408: 'Request Timeout',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** 502, 504, 400 or 408 (a body too slow) for a forwarding failure, saying which backend failed and how. */
export function fail(res: ServerResponse, e: UpstreamError, requestId: string): void {
  plain(
    res,
    e.status,
    `${e.status} ${TITLES[e.status]}: ${e.message}.\nRequest id: ${requestId}\n`,
    requestId,
    e.status === 408 ? { connection: 'close' } : {},
  );
}

/**
 * What a service could not take: 503 with Retry-After, naming the service. A write is never replayed
 * elsewhere, and the answer says so; `why` already names the service when it starts with "the" or "no".
 */
export function notReplayed(res: ServerResponse, method: string, service: string, why: string, requestId: string, safe = false): void {
  const what = /^(the|no) /.test(why) ? why : `the ${service} backend ${why}`;
  plain(
    res,
    503,
    `503 Service Unavailable: ${what}. ${safe ? 'Try' : `Your ${method} was not retried elsewhere; try`}` +
      ` again in ${RETRY_AFTER_S} seconds.\nRequest id: ${requestId}\n`,
    requestId,
    { 'retry-after': String(RETRY_AFTER_S) },
  );
}

/** Any failure as an UpstreamError of `backend`. */
export function asUpstream(backend: string, err: unknown): UpstreamError {
  return err instanceof UpstreamError
    ? err
    : new UpstreamError(backend, 502, 'error', `the ${backend} backend failed`, String((err as Error)?.message ?? err));
}
