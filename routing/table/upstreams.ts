/**
 * Upstreams: the named services a route table sends requests to. `legacy`
 * is always one of them; the rewrite is any number of new services (`app`,
 * `files`, …). Each is a pool of endpoints, given as a list of URLs, as one
 * URL whose host name is resolved again and again (every A/AAAA answer is an
 * endpoint), or as the name of an environment variable each proxy reads (a
 * comma list of URLs: `LEGACY_URL` and `APP_URL` are the shorthands for the
 * two-upstream case). Pure types and defaults, no I/O.
 */

export const BALANCES = ['least-request', 'round-robin'] as const;
export type Balance = (typeof BALANCES)[number];

/** The upstream every table has: what no route claims goes there, and what falls back lands there. */
export const LEGACY = 'legacy';
/** The service a route on the new side goes to when it names none. */
export const DEFAULT_SERVICE = 'app';

/** An active HTTP check of each endpoint: a GET of `path`; a 2xx or 3xx within `timeoutMs` is a pass. */
export interface HealthCheck {
  readonly path: string;
  /** Time between two checks of one endpoint (default 2000). */
  readonly intervalMs?: number;
  /** Time a check may take (default 1000). */
  readonly timeoutMs?: number;
  /** Passes in a row that make an unhealthy endpoint healthy again (default 2). */
  readonly healthy?: number;
  /** Failures in a row that make a healthy endpoint unhealthy (default 3). */
  readonly unhealthy?: number;
}

/** Passive ejection: an endpoint whose answers fail so many times in a row is taken out for a while. */
export interface OutlierDetection {
  /** Connect errors, resets, timeouts or 5xx answers in a row that eject an endpoint (default 5). */
  readonly consecutiveFailures?: number;
  /** How long an ejected endpoint stays out (default 10000). */
  readonly ejectMs?: number;
}

/** One upstream as operators write it, in the table's `upstreams` list. */
export interface UpstreamSpec {
  readonly name: string;
  /** Exactly one of `endpoints`, `dns` and `env` says where the endpoints are. */
  readonly endpoints?: readonly string[];
  /** One URL (`http://app.internal:8081`) whose host is resolved every `resolveEveryMs`; each address is an endpoint. */
  readonly dns?: string;
  /** An environment variable of each proxy that holds a comma list of endpoint URLs (`APP_URL`). */
  readonly env?: string;
  /** dns only: how often the name is resolved again (default 5000). */
  readonly resolveEveryMs?: number;
  /** How a request picks an endpoint (default least-request: the less busy of two chosen at random). */
  readonly balance?: Balance;
  /** Keep a session on one endpoint while it is up, for apps that keep sessions in memory. */
  readonly session?: boolean;
  readonly health?: HealthCheck;
  /** Passive ejection; `false` turns it off. */
  readonly outlier?: OutlierDetection | false;
  /** An endpoint that comes back (or is new) gets its full share of traffic over this long, from a tenth of it (default 0: at once). */
  readonly slowStartMs?: number;
}

export const HEALTH_DEFAULTS = { intervalMs: 2_000, timeoutMs: 1_000, healthy: 2, unhealthy: 3 } as const;
export const OUTLIER_DEFAULTS = { consecutiveFailures: 5, ejectMs: 10_000 } as const;
export const RESOLVE_EVERY_DEFAULT_MS = 5_000;

/** The upstreams of a table that names none: legacy and the app, from the two shorthand variables. */
export const IMPLICIT_UPSTREAMS: readonly UpstreamSpec[] = Object.freeze([
  Object.freeze({ name: LEGACY, env: 'LEGACY_URL' }),
  Object.freeze({ name: DEFAULT_SERVICE, env: 'APP_URL' }),
]);
