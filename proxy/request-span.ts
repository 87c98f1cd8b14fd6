/**
 * The proxy's spans (when tracing is on): one server span per request,
 * continuing the client's `traceparent` or starting a trace, with the route
 * decision on it; and one span per shadow copy, a child of the request's span
 * and linked to it, with what the comparison found. The backends receive the
 * `traceparent` of the span they work for: the request's (the fallback too),
 * or the shadow copy's.
 */

import type { IncomingMessage } from 'node:http';
import { SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span } from '@opentelemetry/api';
import { formatLsn } from '../lib/lsn.js';
import { banyanTracer, incomingContext, traceHeaders } from '../lib/tracing.js';
import type { Decision } from '../routing/table/index.js';
import { cookieValue, PIN_COOKIE, type Pin } from './pin.js';

/** A request's span, its context (the parent of what is done for it), and the headers that carry it upstream. */
export interface RequestTrace {
  readonly span: Span;
  readonly context: Context;
  readonly headers: Record<string, string>;
}

/** What ends a request's span: how it was answered (a fallback changes the service and sets the reason). */
export interface Answered {
  readonly service: string;
  readonly served: string;
  readonly endpoint: string | undefined;
  readonly fallbackReason: string | undefined;
}

/** Where the request's pin came from (`none`, `cookie` or `header`) and its LSN (`timed` for a timed pin). */
export function pinAttributes(req: IncomingMessage, pin: Pin | undefined): Attributes {
  if (!pin) return { 'banyan.pin': 'none' };
  return {
    'banyan.pin': cookieValue(req.headers.cookie, PIN_COOKIE) !== undefined ? 'cookie' : 'header',
    'banyan.pin.lsn': pin.lsn === undefined ? 'timed' : formatLsn(pin.lsn),
  };
}

/**
 * Starts a decided request's server span (at `started`, a `performance.now()` time, when the request
 * arrived), a child of the client's `traceparent` when it sent one.
 */
export function beginRequestSpan(
  req: IncomingMessage,
  decision: Decision,
  pin: Pin | undefined,
  requestId: string,
  started: number,
): RequestTrace {
  const parent = incomingContext(req.headers);
  const method = req.method ?? 'GET';
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const attributes: Attributes = {
    'http.request.method': method,
    'url.path': q < 0 ? url : url.slice(0, q),
    'banyan.request_id': requestId,
    'banyan.route.name': decision.route,
    'banyan.route.mode': decision.mode,
    'banyan.service': decision.service,
    ...pinAttributes(req, pin),
  };
  if (decision.mode === 'canary') attributes['banyan.canary.side'] = decision.target;
  if (req.headers['user-agent']) attributes['user_agent.original'] = req.headers['user-agent'];
  const span = banyanTracer().startSpan(`${method} ${decision.route}`, { kind: SpanKind.SERVER, startTime: started, attributes }, parent);
  return { span, context: trace.setSpan(parent, span), headers: traceHeaders(span, parent) };
}

/** Ends a request's span with what answered it and the status the client got (499: it went away first). */
export function endRequestSpan(traced: RequestTrace, answered: Answered, status: number): void {
  const { span } = traced;
  if (span.isRecording()) {
    span.setAttributes({
      'http.response.status_code': status,
      'banyan.service': answered.service,
      'banyan.backend': answered.served,
    });
    if (answered.endpoint) span.setAttribute('banyan.endpoint', answered.endpoint);
    if (answered.fallbackReason) span.setAttribute('banyan.fallback.reason', answered.fallbackReason);
    if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR, message: `answered ${status}` });
  }
  span.end();
}

/** A shadow copy's span, and the headers that make the copy's backend span its child. */
export interface ShadowTrace {
  readonly span: Span;
  readonly headers: Record<string, string>;
}

/** Starts the span of a shadow copy of the request `parent` traces, sent to `service`. */
export function beginShadowSpan(parent: RequestTrace, route: string, service: string, method: string, path: string): ShadowTrace {
  const q = path.indexOf('?');
  const span = banyanTracer().startSpan(
    `shadow ${route}`,
    {
      kind: SpanKind.CLIENT,
      links: [{ context: parent.span.spanContext(), attributes: { 'banyan.link': 'shadowed request' } }],
      attributes: {
        'banyan.route.name': route,
        'banyan.service': service,
        'banyan.route.mode': 'shadow',
        'http.request.method': method,
        'url.path': q < 0 ? path : path.slice(0, q),
      },
    },
    parent.context,
  );
  return { span, headers: traceHeaders(span, parent.context) };
}

/** Ends a shadow copy's span with the comparison's result, how many places differed and the first of them. */
export function endShadowSpan(traced: ShadowTrace, result: string, status: number | undefined, places: readonly string[]): void {
  const { span } = traced;
  if (span.isRecording()) {
    span.setAttributes({ 'banyan.shadow.result': result, 'banyan.shadow.differences': places.length });
    if (status !== undefined) span.setAttribute('http.response.status_code', status);
    if (places.length > 0) span.setAttribute('banyan.shadow.where', places.slice(0, 10));
    if (result === 'error') span.setStatus({ code: SpanStatusCode.ERROR, message: 'the copy failed or could not be compared' });
  }
  span.end();
}
