import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Every metric Banyan exports, defined in one place. Each process makes its
 * own Registry (never the global one), so tests start from zero.
 */
export function createProxyMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'banyan_' });
  return {
    registry,
    requests: new Counter({
      name: 'banyan_proxy_requests_total',
      help: 'Requests answered by the proxy, by route name, backend, method and status class.',
      labelNames: ['route', 'backend', 'method', 'status_class'] as const,
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'banyan_proxy_request_duration_seconds',
      help: 'Time from receiving a request to finishing its response, by route and backend.',
      labelNames: ['route', 'backend'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    upstreamErrors: new Counter({
      name: 'banyan_proxy_upstream_errors_total',
      help: 'Requests the proxy could not forward, by backend and kind (refused, reset, timeout).',
      labelNames: ['backend', 'kind'] as const,
      registers: [registry],
    }),
    fallbacks: new Counter({
      name: 'banyan_proxy_fallbacks_total',
      help: 'Safe requests for the new app served by legacy instead, by route and reason (breaker_open, refused, reset, timeout, error).',
      labelNames: ['route', 'reason'] as const,
      registers: [registry],
    }),
    breakerState: new Gauge({
      name: 'banyan_proxy_breaker_state',
      help: 'Circuit breaker per upstream: 0 closed, 1 half-open, 2 open.',
      labelNames: ['backend'] as const,
      registers: [registry],
    }),
    shadowResults: new Counter({
      name: 'banyan_proxy_shadow_results_total',
      help: 'Shadow comparisons by route and result (match, mismatch, noise, error, skipped).',
      labelNames: ['route', 'result'] as const,
      registers: [registry],
    }),
    pins: new Counter({
      name: 'banyan_proxy_pins_total',
      help: 'Session pins by event: set (after a write), honoured (a read carried the fence), rejected_forged, rejected_expired, rejected_malformed.',
      labelNames: ['event'] as const,
      registers: [registry],
    }),
    tableVersion: new Gauge({
      name: 'banyan_route_table_version',
      help: 'The route table version in effect in this process.',
      registers: [registry],
    }),
  };
}

export type ProxyMetrics = ReturnType<typeof createProxyMetrics>;

/**
 * Records one answered request. The labelled series are looked up once per
 * combination and kept: prom-client otherwise hashes the label object on
 * every call, on the proxy's hottest path.
 */
export function requestRecorder(metrics: ProxyMetrics): (route: string, backend: string, method: string, status: number, seconds: number) => void {
  const series = new Map<string, { count: { inc(): void }; time: { observe(v: number): void } }>();
  return (route, backend, method, status, seconds) => {
    const m = methodLabel(method);
    const s = statusClass(status);
    const key = `${route}\u0000${backend}\u0000${m}\u0000${s}`;
    let entry = series.get(key);
    if (!entry) {
      entry = {
        count: metrics.requests.labels({ route, backend, method: m, status_class: s }),
        time: metrics.duration.labels({ route, backend }),
      };
      series.set(key, entry);
    }
    entry.count.inc();
    entry.time.observe(seconds);
  };
}

/** Prometheus label for an HTTP status: 2xx, 3xx, 4xx, 5xx. */
export function statusClass(status: number): string {
  return `${Math.floor(status / 100)}xx`;
}

/** Normalizes an HTTP method to a bounded label set. */
export function methodLabel(method: string): string {
  return ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'].includes(method) ? method : 'OTHER';
}
