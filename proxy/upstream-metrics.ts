import type { ProxyMetrics } from '../metrics/catalog.js';
import type { UpstreamEvents } from './upstreams/index.js';

const BREAKER = { closed: 0, 'half-open': 1, open: 2 } as const;

/**
 * The upstreams' changes of state as Prometheus series: whether each endpoint
 * takes requests, its breaker, and its ejections. These are the only metrics
 * that carry an endpoint label, so cardinality stays the number of endpoints;
 * an endpoint that goes away takes its series with it.
 */
export function upstreamEvents(metrics: ProxyMetrics): UpstreamEvents {
  return {
    endpointUp: (service, endpoint, up) => metrics.endpointUp.set({ service, endpoint }, up ? 1 : 0),
    breaker: (service, endpoint, state) => metrics.breakerState.set({ service, endpoint }, BREAKER[state]),
    ejected: (service, endpoint, reason) => metrics.ejections.inc({ service, endpoint, reason }),
    removed: (service, endpoint) => {
      metrics.endpointUp.remove({ service, endpoint });
      metrics.breakerState.remove({ service, endpoint });
    },
  };
}
