import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { CounterSeries, HistogramSeries, HotCounter, HotHistogram } from './hot-metrics.js';

/**
 * Every metric Banyan exports, defined in this one file. Each process makes
 * its own Registry (never prom-client's global one), so tests start from
 * zero. Names follow Prometheus practice: `banyan_` prefix, base units
 * (seconds, bytes), `_total` for counters; `promtool check metrics` passes.
 * Labels are bounded: route names from the route table, never raw URLs.
 */

/**
 * prom-client's default Node metrics, prefixed `banyan_`, without the three
 * gauges it names with a counter's `_total` suffix (promtool rejects them);
 * the same numbers stay available per type as `banyan_nodejs_active_handles`,
 * `_requests` and `_resources`.
 */
function defaultMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry, prefix: 'banyan_' });
  for (const name of ['handles', 'requests', 'resources']) registry.removeSingleMetric(`banyan_nodejs_active_${name}_total`);
}

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** The proxy's metrics. */
/** A counter whose series for every known value of `label` start at 0: a panel shows 0, not nothing, before the first event. */
function preZeroed<L extends string>(counter: Counter<L>, label: L, values: readonly string[]): Counter<L> {
  for (const value of values) counter.inc({ [label]: value } as Partial<Record<L, string>>, 0);
  return counter;
}

export function createProxyMetrics() {
  const registry = new Registry();
  const lastSeen = new Map<string, number>();
  defaultMetrics(registry);
  const registers = [registry];
  return {
    registry,
    requests: new HotCounter({
      name: 'banyan_http_requests_total',
      help: 'Requests answered through the proxy, by route name, backend (legacy, new, proxy), service (the upstream that answered: legacy, app, files, …, or proxy), method and status class.',
      labelNames: ['route', 'backend', 'service', 'method', 'status_class'] as const,
      registers,
    }),
    duration: new HotHistogram({
      name: 'banyan_http_request_duration_seconds',
      help: "Time to first byte: from a request being ready to go upstream (its body received) to the upstream's response headers (the proxy's own answers: until written), by route, backend and service.",
      labelNames: ['route', 'backend', 'service'] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    lastRequest: new Gauge({
      name: 'banyan_route_last_request_timestamp_seconds',
      help: 'Unix time of the last request to each route; 0 when it has had none since this process started.',
      labelNames: ['route'] as const,
      aggregator: 'max',
      registers,
      // Set when scraped, from what requestRecorder noted (a Map write per request, not a gauge update).
      collect() {
        for (const [route, ms] of lastSeen) this.set({ route }, ms / 1000);
      },
    }),
    /** Per route, the time (ms) of its last request, for the gauge above. */
    lastSeen,
    unmatched: new Counter({
      name: 'banyan_unmatched_requests_total',
      help: 'Requests no route matched (sent to legacy), by normalized path (numbers, hashes, UUIDs, versions replaced); capped, then "other".',
      labelNames: ['path'] as const,
      registers,
    }),
    features: new Counter({
      name: 'banyan_legacy_feature_requests_total',
      help: "Requests by legacy feature, from the routes' feature extractors (query parameters, XML-RPC method names, form fields).",
      labelNames: ['feature'] as const,
      registers,
    }),
    upstreamErrors: new Counter({
      name: 'banyan_proxy_upstream_errors_total',
      help: 'Requests the proxy could not forward, by backend (legacy, new), service and kind (refused, reset, timeout, error).',
      labelNames: ['backend', 'service', 'kind'] as const,
      registers,
    }),
    fallbacks: new Counter({
      name: 'banyan_proxy_fallbacks_total',
      help: 'Safe requests for a new service answered by its fallback instead, by route, the service that failed, and reason (breaker_open, unavailable, no_endpoints, refused, reset, timeout, error).',
      labelNames: ['route', 'service', 'reason'] as const,
      registers,
    }),
    breakerState: new Gauge({
      name: 'banyan_proxy_breaker_state',
      help: 'Circuit breaker per endpoint of each service: 0 closed, 1 half-open, 2 open.',
      labelNames: ['service', 'endpoint'] as const,
      aggregator: 'max',
      registers,
    }),
    endpointUp: new Gauge({
      name: 'banyan_upstream_endpoint_up',
      help: '1 when an endpoint of a service takes requests (healthy, not ejected, breaker not open), else 0.',
      labelNames: ['service', 'endpoint'] as const,
      aggregator: 'min',
      registers,
    }),
    ejections: new Counter({
      name: 'banyan_upstream_ejections_total',
      help: 'Endpoints taken out of a service, by reason: outlier (failures in a row) or health (the active check failed).',
      labelNames: ['service', 'endpoint', 'reason'] as const,
      registers,
    }),
    shed: new Counter({
      name: 'banyan_proxy_shed_total',
      help: 'Requests answered 503 with Retry-After at once because the proxy was over its capacity (load shedding, BANYAN_SHED_LAG).',
      registers,
    }),
    retries: new Counter({
      name: 'banyan_proxy_retries_total',
      help: 'Safe requests tried again on another endpoint of the same service after a refused or reset connection, by service and reason.',
      labelNames: ['service', 'reason'] as const,
      registers,
    }),
    shadowResults: new Counter({
      name: 'banyan_proxy_shadow_results_total',
      help: 'Shadow comparisons by route and result (match, mismatch, noise, error, skipped).',
      labelNames: ['route', 'result'] as const,
      registers,
    }),
    pins: preZeroed(
      new Counter({
        name: 'banyan_proxy_pins_total',
        help: 'Session pins by event: set (after a write), honoured (a read carried the fence), rejected_forged, rejected_expired, rejected_malformed.',
        labelNames: ['event'] as const,
        registers,
      }),
      'event',
      ['set', 'honoured', 'rejected_forged', 'rejected_expired', 'rejected_malformed'],
    ),
    tableVersion: new Gauge({
      name: 'banyan_route_table_version',
      help: 'The route table version in effect (the lowest among workers, so a worker lagging behind shows).',
      aggregator: 'min',
      registers,
    }),
    usageFlushes: new Counter({
      name: 'banyan_usage_flushes_total',
      help: 'Usage ledger flushes to PostgreSQL by result (ok, duplicate: an earlier attempt had landed, failed: kept for the next flush).',
      labelNames: ['result'] as const,
      registers,
    }),
    planStep: new Gauge({
      name: 'banyan_autopilot_plan_step',
      help: 'The step each running or paused cutover plan is on (1-based; 0 before its first), with the number of steps in `of`.',
      labelNames: ['route', 'kind', 'status', 'of'] as const,
      aggregator: 'max',
      registers,
    }),
    planStepAge: new Gauge({
      name: 'banyan_autopilot_plan_step_age_seconds',
      help: 'How long each running or paused cutover plan has been on its current step.',
      labelNames: ['route', 'kind'] as const,
      aggregator: 'max',
      registers,
    }),
    planHeld: new Gauge({
      name: 'banyan_autopilot_plan_held',
      help: "1 when a cutover plan's step is past its hold but its evidence does not yet allow the next step (it is held), else 0.",
      labelNames: ['route', 'kind'] as const,
      aggregator: 'max',
      registers,
    }),
  };
}

export type ProxyMetrics = ReturnType<typeof createProxyMetrics>;

/** What the app's metrics read from its DB router. */
export interface ReplicaStates {
  readonly states: readonly { readonly name: string; readonly healthy: boolean; readonly lagBytes: number; readonly lagSeconds: number }[];
  /** Reads a replica failed and the primary answered. */
  readonly readRetries?: number;
  /** Reads a standby cancelled for a recovery conflict, answered by another server. */
  readonly recoveryConflictRetries?: number;
  /** Fenced reads answered by a replica that had replayed the fence when the primary was down. */
  readonly primaryDownRescues?: number;
  /** Fences of writes an old primary acknowledged past the end of its timeline: lost in a failover. */
  readonly lostWrites?: number;
}

/** The new app's metrics: its requests, DB reads and replica lag, uploads and page cache. */
export function createAppMetrics(router?: ReplicaStates, fences?: { readonly skipped: number }) {
  const registry = new Registry();
  defaultMetrics(registry);
  const registers = [registry];
  return {
    registry,
    requests: new Counter({
      name: 'banyan_app_requests_total',
      help: 'Requests the new app answered, by handler (its route name), method and status class.',
      labelNames: ['handler', 'method', 'status_class'] as const,
      registers,
    }),
    duration: new Histogram({
      name: 'banyan_app_request_duration_seconds',
      help: 'Time the new app took to answer, by handler.',
      labelNames: ['handler'] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    dbReads: new Counter({
      name: 'banyan_db_reads_total',
      help: 'Request DB handles by the server reads went to (primary, db-N, replica-N) and why (no_fence, fence_met, fence_wait, fence_unmet: no replica had replayed the fence, pinned: a timed pin, lagging, replica_down, primary_busy, no_replica, old_timeline: a fence from before a failover).',
      labelNames: ['target', 'reason'] as const,
      registers,
    }),
    dbReadRetries: new Counter({
      name: 'banyan_db_read_retries_total',
      help: 'Reads answered by another server than the one first chosen, by why: replica_failed (the primary answered), recovery_conflict (the standby cancelled the query), primary_down (a replica that had replayed the fence answered a fenced read).',
      labelNames: ['why'] as const,
      registers,
      collect() {
        this.reset();
        this.inc({ why: 'replica_failed' }, router?.readRetries ?? 0);
        this.inc({ why: 'recovery_conflict' }, router?.recoveryConflictRetries ?? 0);
        this.inc({ why: 'primary_down' }, router?.primaryDownRescues ?? 0);
      },
    }),
    lostWrites: new Counter({
      name: 'banyan_db_lost_writes_total',
      help: 'Writes acknowledged by an old primary that the promoted one never received (their pin or resource fence is past the point where the old timeline ended), each counted once when a read first carries its fence.',
      registers,
      collect() {
        this.reset();
        this.inc(router?.lostWrites ?? 0);
      },
    }),
    fencesSkipped: new Counter({
      name: 'banyan_fences_skipped_total',
      help: 'Resource fence reads and writes skipped because Redis did not answer (BANYAN_FENCES_REDIS_DOWN decides what such reads do).',
      registers,
      collect() {
        this.reset();
        this.inc(fences?.skipped ?? 0);
      },
    }),
    replicaLagSeconds: new Gauge({
      name: 'banyan_db_replica_lag_seconds',
      help: "How far each replica's replay is behind the primary, in seconds (as the DB router last measured it).",
      labelNames: ['replica'] as const,
      registers,
      collect() {
        for (const s of router?.states ?? []) this.set({ replica: s.name }, s.lagSeconds);
      },
    }),
    replicaLagBytes: new Gauge({
      name: 'banyan_db_replica_lag_bytes',
      help: "How far each replica's replay is behind the primary, in bytes of WAL.",
      labelNames: ['replica'] as const,
      registers,
      collect() {
        for (const s of router?.states ?? []) this.set({ replica: s.name }, s.lagBytes);
      },
    }),
    replicaUp: new Gauge({
      name: 'banyan_db_replica_up',
      help: '1 when the DB router can reach a replica, else 0.',
      labelNames: ['replica'] as const,
      registers,
      collect() {
        for (const s of router?.states ?? []) this.set({ replica: s.name }, s.healthy ? 1 : 0);
      },
    }),
    uploads: new Counter({
      name: 'banyan_upload_attempts_total',
      help: 'Upload attempts by result (stored, exists: an identical file was already there, failed).',
      labelNames: ['result'] as const,
      registers,
    }),
    uploadFailures: new Counter({
      name: 'banyan_upload_failures_total',
      help: 'Refused uploads by reason (auth-missing, auth-invalid, forbidden, bad-digest, digest-mismatch, file-exists, too-large, ...).',
      labelNames: ['reason'] as const,
      registers,
    }),
    pageCache: new Counter({
      name: 'banyan_page_cache_requests_total',
      help: 'Simple pages by where they came from: hit (Redis), miss (rendered and stored), off (Redis unavailable).',
      labelNames: ['result'] as const,
      registers,
    }),
  };
}

export type AppMetrics = ReturnType<typeof createAppMetrics>;

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];
const BACKENDS = ['legacy', 'new', 'proxy'];
const STATUS_CLASSES = ['0xx', '1xx', '2xx', '3xx', '4xx', '5xx', '6xx', '7xx', '8xx', '9xx'];

/**
 * Records one answered request. Each combination of labels is looked up once and its series kept,
 * keyed per route by a small number (no label object, no string built per request).
 */
export function requestRecorder(
  metrics: ProxyMetrics,
): (route: string, backend: string, service: string, method: string, status: number, seconds: number) => void {
  const byRoute = new Map<string, Map<string, Map<number, { count: CounterSeries<string>; time: HistogramSeries<string> }>>>();
  return (route, backend, service, method, status, seconds) => {
    const m = METHODS.indexOf(method);
    const b = BACKENDS.indexOf(backend);
    const s = status >= 0 && status < 1000 ? Math.floor(status / 100) : 0;
    const code = ((b + 1) * 8 + (m + 1)) * 10 + s;
    let services = byRoute.get(route);
    if (!services) byRoute.set(route, (services = new Map()));
    let series = services.get(service);
    if (!series) services.set(service, (series = new Map()));
    let entry = series.get(code);
    if (!entry) {
      const labels = { route, backend, service, method: methodLabel(method), status_class: STATUS_CLASSES[s]! };
      entry = { count: metrics.requests.labels(labels), time: metrics.duration.labels({ route, backend, service }) };
      series.set(code, entry);
    }
    entry.count.inc();
    entry.time.observe(seconds);
    metrics.lastSeen.set(route, Date.now());
  };
}

/**
 * Creates every configured route's series at zero, so a route nobody uses
 * shows 0 on dashboards rather than nothing: requests by the backend its mode
 * sends to, and the last-request time.
 */
const SHADOW_RESULTS = ['match', 'mismatch', 'noise', 'error', 'skipped'] as const;

export function preZeroRoutes(
  metrics: ProxyMetrics,
  routes: readonly { name: string; mode: string; service?: string; match: { methods?: readonly string[] } }[],
): void {
  for (const route of routes) {
    const service = route.service ?? 'app';
    const sides: [string, string][] =
      route.mode === 'retired'
        ? [['proxy', 'proxy']]
        : route.mode === 'new'
          ? [['new', service]]
          : route.mode === 'canary'
            ? [
                ['legacy', 'legacy'],
                ['new', service],
              ]
            : [['legacy', 'legacy']];
    const method = methodLabel(route.match.methods?.[0] ?? 'GET');
    for (const [backend, answering] of sides) {
      metrics.requests.inc({ route: route.name, backend, service: answering, method, status_class: '2xx' }, 0);
      metrics.duration.zero({ route: route.name, backend, service: answering });
    }
    // A gauge already set keeps its value: only routes never seen start at 0.
    const seen = metrics.lastRequest.labels({ route: route.name });
    seen.inc(0);
    if (route.mode === 'shadow') for (const result of SHADOW_RESULTS) metrics.shadowResults.inc({ route: route.name, result }, 0);
  }
}

/** Prometheus label for an HTTP status: 2xx, 3xx, 4xx, 5xx. */
export function statusClass(status: number): string {
  return STATUS_CLASSES[Math.floor(status / 100)] ?? `${Math.floor(status / 100)}xx`;
}

/** Normalizes an HTTP method to a bounded label set. */
export function methodLabel(method: string): string {
  return METHODS.includes(method) ? method : 'OTHER';
}
