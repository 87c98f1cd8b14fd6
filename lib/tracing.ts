/**
 * OpenTelemetry tracing, on when the standard variables ask for it: an OTLP
 * endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`),
 * with `OTEL_EXPORTER_OTLP_PROTOCOL` `http/protobuf` (the default) or
 * `http/json`, `OTEL_SERVICE_NAME` and `OTEL_TRACES_SAMPLER` read by the SDK
 * as the specification says. Off, nothing of the SDK is loaded: the API's
 * tracer is its no-op one, and the servers skip their tracing code entirely
 * (`tracingOn()` is one boolean). Context travels as W3C `traceparent` and
 * `tracestate` (`OTEL_PROPAGATORS`, tracecontext and baggage by default).
 */

import { context, propagation, ROOT_CONTEXT, trace, type Context, type ContextManager, type Span, type Tracer } from '@opentelemetry/api';
import { BanyanError } from './errors.js';

/** What the environment asks for: the OTLP protocol to export with, or undefined for no tracing. */
export interface TracingSettings {
  readonly protocol: 'http/protobuf' | 'http/json';
}

const PROTOCOLS = ['http/protobuf', 'http/json'] as const;

/**
 * Whether `env` turns tracing on, and how. Off without an endpoint, with `OTEL_SDK_DISABLED=true` or
 * `OTEL_TRACES_EXPORTER=none`; a protocol this build cannot export with (grpc) is an error that says so.
 */
export function tracingSettings(env: NodeJS.ProcessEnv): TracingSettings | undefined {
  if (!env['OTEL_EXPORTER_OTLP_ENDPOINT'] && !env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT']) return undefined;
  if (env['OTEL_SDK_DISABLED']?.trim().toLowerCase() === 'true') return undefined;
  const exporters = (env['OTEL_TRACES_EXPORTER'] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (exporters.length > 0 && exporters.every((e) => e === 'none')) return undefined;
  const unsupported = exporters.filter((e) => e !== 'otlp' && e !== 'none');
  if (unsupported.length > 0) {
    throw new BanyanError(
      'bad-setting',
      `OTEL_TRACES_EXPORTER: "${unsupported.join(',')}" is not supported; Banyan exports traces with OTLP only`,
      'unset it, or set it to otlp (or none to turn tracing off)',
    );
  }
  const name = env['OTEL_EXPORTER_OTLP_TRACES_PROTOCOL'] ? 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL' : 'OTEL_EXPORTER_OTLP_PROTOCOL';
  const protocol = (env[name] || 'http/protobuf').trim();
  if (!(PROTOCOLS as readonly string[]).includes(protocol)) {
    throw new BanyanError(
      'bad-setting',
      `${name}: "${protocol}" is not supported; use http/protobuf or http/json`,
      "point it at the collector's OTLP/HTTP port (4318) with one of those",
    );
  }
  return { protocol: protocol as TracingSettings['protocol'] };
}

/** A started SDK; `shutdown` exports what is buffered, then stops. */
export interface Tracing {
  shutdown(): Promise<void>;
}

let on = false;
let tracer: Tracer = trace.getTracer('banyan');

/** Whether this process traces: checked once where a server is built, so tracing off costs one boolean per request. */
export function tracingOn(): boolean {
  return on;
}

/** The tracer Banyan's spans come from (the API's no-op tracer while tracing is off). */
export function banyanTracer(): Tracer {
  return tracer;
}

/**
 * Starts the Node SDK when `env` asks for tracing (see tracingSettings), loading it only then.
 * `service` is the `service.name` unless OTEL_SERVICE_NAME names another. `asyncContext: false` (the
 * proxy, which hands each span's context on itself) registers no AsyncLocalStorage context manager:
 * once one is in use, every promise of the process pays for it, sampled request or not.
 */
export async function startTracing(
  service: string,
  env: NodeJS.ProcessEnv = process.env,
  options: { asyncContext?: boolean } = {},
): Promise<Tracing | undefined> {
  const settings = tracingSettings(env);
  if (!settings) return undefined;
  const [{ NodeSDK }, exporter] = await Promise.all([
    import('@opentelemetry/sdk-node'),
    settings.protocol === 'http/json'
      ? import('@opentelemetry/exporter-trace-otlp-http').then((m) => new m.OTLPTraceExporter())
      : import('@opentelemetry/exporter-trace-otlp-proto').then((m) => new m.OTLPTraceExporter()),
  ]);
  const sdk = new NodeSDK({
    traceExporter: exporter,
    // Traces only: Banyan's metrics are Prometheus's, its logs go to stdout.
    metricReaders: [],
    logRecordProcessors: [],
    // null: register none (the SDK's own convention, which its type does not spell).
    ...(options.asyncContext === false ? { contextManager: null as unknown as ContextManager } : {}),
    ...(env['OTEL_SERVICE_NAME'] ? {} : { serviceName: service }),
  });
  sdk.start();
  on = true;
  tracer = trace.getTracer('banyan');
  return {
    shutdown: async () => {
      on = false;
      await sdk.shutdown().catch(() => {});
    },
  };
}

/** The context a request's headers carry (`traceparent`, `tracestate`), or the root context when they carry none. */
export function incomingContext(headers: Record<string, string | string[] | undefined>): Context {
  return propagation.extract(ROOT_CONTEXT, headers);
}

/** `traceparent` (and `tracestate`) naming `span` as the parent, for a request sent on its behalf. */
export function traceHeaders(span: Span, parent: Context = context.active()): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagation.inject(trace.setSpan(parent, span), carrier);
  return carrier;
}
