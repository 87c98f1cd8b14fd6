import type { Metric, Registry } from 'prom-client';

/**
 * The one place that leans on prom-client's internals: what its Registry uses of a metric it holds
 * (prom-client 15's lib/registry.js). `metrics()` and `getMetricsAsJSON()` await `get()` and write its
 * `name`, `help`, `type` and `values`; the cluster aggregator merges by `aggregator`; `resetMetrics()`
 * calls `reset()`; `registerMetric()` keys by `name`. prom-client types a metric as one of its own
 * classes, so a metric of ours is registered through this cast. test/hot-metrics.test.ts fails if
 * prom-client starts to use anything else.
 */
export interface RegistryMetric {
  readonly name: string;
  readonly help: string;
  readonly type: string;
  readonly aggregator: string;
  get(): Promise<{
    name: string;
    help: string;
    type: string;
    aggregator: string;
    values: { labels: Record<string, string | number>; value: number; metricName?: string }[];
  }>;
  reset(): void;
}

export function registerIn(registry: Registry, metric: RegistryMetric): void {
  registry.registerMetric(metric as unknown as Metric);
}
