/**
 * The proxy's upstreams: named services, each a pool of endpoints, balanced,
 * health-checked and each behind its own breaker. What the proxy uses is
 * exported here; the rest of the folder is private to it.
 */

export { endpointUrlProblem, parseEndpointList } from './endpoint-url.js';
export {
  Endpoint,
  ENDPOINT_BREAKER_DEFAULTS,
  POOL_DEFAULTS,
  type BreakerSettings,
  type CheckRecord,
  type EndpointFailure,
  type EndpointOutcome,
  type EndpointSnapshot,
  type EndpointState,
  type PoolSettings,
} from './upstream-endpoint.js';
export type { UpstreamEvents } from './upstream-events.js';
export type { Lookup } from './upstream-source.js';
export { UpstreamSet, type UpstreamSetOptions } from './upstream-set.js';
export { Upstream, type UpstreamSnapshot } from './upstream.js';
