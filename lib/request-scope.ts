/**
 * A backend's request, as its database queries see it: the request id, the
 * handler that serves it, where its reads were sent and why. The scope exists
 * only while something reads it (tracing or the query log, switched on with
 * `watchRequests` at start); otherwise a request runs exactly as before.
 * With tracing on, each request also gets a server span continuing the
 * proxy's `traceparent`, and its queries become that span's children.
 */

import { AsyncLocalStorage } from 'node:async_hooks';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { banyanTracer, incomingContext, tracingOn } from './tracing.js';
import { CLIENT_CLOSED } from './http-status.js';

/** What a query knows of the request it runs for. */
export interface RequestScope {
  readonly requestId: string | undefined;
  /** The handler's name (`simple.detail`, `legacy.simple.detail`), once routing has chosen it. */
  route(): string | undefined;
  /** Where the request's reads go (`primary`, `replica-1`) and why (`fence_met`, `pinned`, …): the read router's choice. */
  readTarget: string | undefined;
  readReason: string | undefined;
}

const scopes = new AsyncLocalStorage<RequestScope>();
const retries = new AsyncLocalStorage<string>();
let watching = false;

/** Turns request scopes on for this process (tracing or the query log needs them). */
export function watchRequests(on: boolean): void {
  watching = on;
}

/** Whether requests are watched: servers add their scope only then. */
export function watchingRequests(): boolean {
  return watching;
}

/** The scope of the request running now, if any. */
export function currentScope(): RequestScope | undefined {
  return watching ? scopes.getStore() : undefined;
}

/** The read router's choice for the request running now, for its queries' spans and log lines. */
export function noteReadChoice(target: string, reason: string): void {
  const scope = currentScope();
  if (!scope) return;
  scope.readTarget = target;
  scope.readReason = reason;
}

/** Runs a read again elsewhere, its queries marked with why (`recovery_conflict_retry`, `replica_failed_retry`). */
export function retryingRead<T>(why: string, fn: () => T): T {
  return watching ? retries.run(why, fn) : fn();
}

/** Why the read running now is a retry, if it is one. */
export function currentRetry(): string | undefined {
  return watching ? retries.getStore() : undefined;
}

/**
 * Serves one backend request inside its scope, and with tracing on inside a server span (ended when the
 * response closes, with its status and the handler `route()` names by then).
 */
export function inRequestScope<T>(req: IncomingMessage, res: ServerResponse, route: () => string | undefined, serve: () => T): T {
  const id = req.headers['x-request-id'];
  const scope: RequestScope = { requestId: typeof id === 'string' ? id : undefined, route, readTarget: undefined, readReason: undefined };
  if (!tracingOn()) return scopes.run(scope, serve);
  const parent = incomingContext(req.headers);
  const method = req.method ?? 'GET';
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const span = banyanTracer().startSpan(
    method,
    {
      kind: SpanKind.SERVER,
      attributes: {
        'http.request.method': method,
        'url.path': q < 0 ? url : url.slice(0, q),
        ...(scope.requestId ? { 'banyan.request_id': scope.requestId } : {}),
      },
    },
    parent,
  );
  res.once('close', () => {
    const handler = route();
    const status = res.writableFinished ? res.statusCode : CLIENT_CLOSED;
    span.setAttribute('http.response.status_code', status);
    if (handler) {
      span.setAttribute('http.route', handler);
      span.updateName(`${method} ${handler}`);
    }
    if (scope.readTarget) span.setAttributes({ 'banyan.read.target': scope.readTarget, 'banyan.read.reason': scope.readReason ?? '' });
    if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR, message: `answered ${status}` });
    span.end();
  });
  return context.with(trace.setSpan(parent, span), () => scopes.run(scope, serve));
}
