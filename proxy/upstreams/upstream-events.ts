import type { BreakerState } from '../../lib/breaker.js';

/**
 * What the upstreams tell the proxy as it happens, for Prometheus: changes
 * of an endpoint's state, never one call per request. `endpoint` is the
 * endpoint's URL.
 */
export interface UpstreamEvents {
  /** It joined (up), or started or stopped taking requests: healthy, not ejected, its breaker not open. */
  endpointUp(service: string, endpoint: string, up: boolean): void;
  /** Its breaker changed state (also told, as closed, when it joins). */
  breaker(service: string, endpoint: string, state: BreakerState): void;
  /** It was taken out: by outlier detection, or by failing its health checks. */
  ejected(service: string, endpoint: string, reason: 'outlier' | 'health'): void;
  /** It left its upstream (it drains): its series can go. */
  removed(service: string, endpoint: string): void;
}
