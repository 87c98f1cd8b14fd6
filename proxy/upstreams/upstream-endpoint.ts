/**
 * One endpoint of an upstream: its keep-alive pool, its circuit breaker and
 * what the proxy knows of its health (active checks, passive ejection, slow
 * start, draining). The proxy asks `available()` and `weight()` when it
 * picks, and brackets every request with `begin()` and `end()`: counter
 * updates only, nothing allocated.
 */

import { Pool } from 'undici';
import { Breaker, type BreakerOptions, type BreakerState } from '../../lib/breaker.js';
import { slowStartWeight } from './upstream-balancer.js';

/** Circuit breaker settings, one breaker per endpoint. */
export type BreakerSettings = Pick<BreakerOptions, 'errorThresholdPercentage' | 'volumeThreshold' | 'resetTimeoutMs' | 'rollingWindowMs'>;

/** Breaker settings of an endpoint when the proxy gives none. */
export const ENDPOINT_BREAKER_DEFAULTS: BreakerSettings = Object.freeze({
  errorThresholdPercentage: 50,
  volumeThreshold: 5,
  resetTimeoutMs: 5_000,
  rollingWindowMs: 10_000,
});

/** The keep-alive pool of each endpoint. */
export interface PoolSettings {
  /** Connections kept per endpoint. */
  readonly connections?: number;
  /** How long an idle connection is kept. */
  readonly keepAliveTimeoutMs?: number;
  /** Time to wait for the endpoint's response headers. */
  readonly headersTimeoutMs?: number;
  /** Time allowed between two chunks of the endpoint's body. */
  readonly bodyTimeoutMs?: number;
}

/** Pool settings when the proxy gives none. */
export const POOL_DEFAULTS: Required<PoolSettings> = Object.freeze({
  connections: 128,
  keepAliveTimeoutMs: 10_000,
  headersTimeoutMs: 30_000,
  bodyTimeoutMs: 30_000,
});

/** How a request to an endpoint failed before a status arrived. */
export type EndpointFailure = 'refused' | 'reset' | 'timeout' | 'error';

/** How a request to an endpoint ended: the status it answered, or how it failed. */
export type EndpointOutcome = { readonly ok: true; readonly status: number } | { readonly ok: false; readonly kind: EndpointFailure };

/** What an endpoint is doing, for operators: the first that applies, in this order. */
export type EndpointState = 'draining' | 'unhealthy' | 'ejected' | 'breaker-open' | 'slow-start' | 'healthy';

/** How an endpoint judges itself: its upstream's settings with defaults filled in. They may change while it runs. */
export interface EndpointPolicy {
  readonly slowStartMs: number;
  readonly outlier: { readonly consecutiveFailures: number; readonly ejectMs: number } | undefined;
  /** Active checks' thresholds; undefined when the upstream is not checked (an endpoint is then healthy). */
  readonly health: { readonly healthy: number; readonly unhealthy: number } | undefined;
}

/** Told of an endpoint's changes of state (never per request). */
export interface EndpointEvents {
  /** It started or stopped taking requests (not told when it drains). */
  up(endpoint: Endpoint, up: boolean): void;
  breaker(endpoint: Endpoint, state: BreakerState): void;
  /** It was taken out: by outlier detection (for a while) or by failing health checks (until they pass). */
  ejected(endpoint: Endpoint, reason: 'outlier' | 'health'): void;
}

/** What an endpoint is made with. */
export interface EndpointOptions {
  /** Its origin, `http://127.0.0.1:8081`. */
  readonly url: string;
  readonly policy: EndpointPolicy;
  readonly breaker: BreakerSettings;
  readonly pool: Required<PoolSettings>;
  /** Whether it joins in slow start (an endpoint added to an upstream that had some) or at its full share. */
  readonly slowStart: boolean;
  /** The DNS name its address came from: the name its TLS certificate carries. */
  readonly tlsName?: string | undefined;
  readonly events: EndpointEvents;
  readonly now: () => number;
}

/** The last active check of an endpoint. */
export interface CheckRecord {
  readonly at: string;
  readonly ok: boolean;
  readonly detail: string;
}

/** An endpoint as operators see it; times are ISO strings, null for never. */
export interface EndpointSnapshot {
  readonly url: string;
  readonly state: EndpointState;
  readonly inFlight: number;
  readonly requests: number;
  /** Answers that counted against it: connect errors, resets, timeouts and 5xx. */
  readonly failures: number;
  /** Times it was taken out, by outlier detection or health checks. */
  readonly ejections: number;
  readonly breaker: BreakerState;
  readonly weight: number;
  readonly lastRequestAt: string | null;
  readonly lastFailureAt: string | null;
  readonly ejectedAt: string | null;
  readonly ejectedUntil: string | null;
  readonly lastCheck: CheckRecord | null;
}

/** One origin of an upstream, with its pool, breaker and health; kept across spec changes while its URL stays. */
export class Endpoint {
  /** Its origin, also its identity within an upstream. */
  readonly url: string;
  /** Its keep-alive connections, for requests the proxy forwards. */
  readonly pool: Pool;
  /** The DNS name its address came from, if it came from one. */
  readonly tlsName: string | undefined;
  readonly #breaker: Breaker;
  readonly #events: EndpointEvents;
  readonly #now: () => number;
  #policy: EndpointPolicy;
  #inFlight = 0;
  #requests = 0;
  #failures = 0;
  #ejections = 0;
  #lastRequestAt: number | undefined;
  #lastFailureAt: number | undefined;
  #ejectedAt: number | undefined;
  /** Out by outlier detection until then; 0 when never ejected. */
  #ejectedUntil = 0;
  #ejectTimer: NodeJS.Timeout | undefined;
  /** Failed answers in a row, for outlier detection. */
  #failedInRow = 0;
  /** Passed active checks since the last ejection: enough of them end it early (as Envoy's successful_active_health_check_uneject_host). */
  #passesWhileEjected = 0;
  #healthy = true;
  /** Checks in a row that disagree with `#healthy`. */
  #checksAgainst = 0;
  #lastCheck: { at: number; ok: boolean; detail: string } | undefined;
  /** When slow start began: when it joined or last came back. */
  #since: number;
  /** Half-open, the one trial request is under way: no other may be picked. */
  #trial = false;
  /** Whether `up` last told it takes requests. */
  #up = true;
  #draining = false;
  #closing: Promise<void> | undefined;
  readonly #drained: () => void;
  /** Settles when its pool has closed, after it was drained or closed. */
  readonly closed: Promise<void>;

  constructor(options: EndpointOptions) {
    this.url = options.url;
    this.tlsName = options.tlsName;
    this.#policy = options.policy;
    this.#events = options.events;
    this.#now = options.now;
    this.#since = options.slowStart ? options.now() : -Infinity;
    const { pool } = options;
    this.pool = new Pool(options.url, {
      connections: pool.connections,
      keepAliveTimeout: pool.keepAliveTimeoutMs,
      headersTimeout: pool.headersTimeoutMs,
      bodyTimeout: pool.bodyTimeoutMs,
      ...(options.tlsName !== undefined && options.url.startsWith('https:') ? { connect: { servername: options.tlsName } } : {}),
    });
    this.#breaker = new Breaker({ ...options.breaker, now: options.now, onChange: (state) => this.#breakerChanged(state) });
    let drained!: () => void;
    this.closed = new Promise((resolve) => {
      drained = resolve;
    });
    this.#drained = drained;
  }

  /** Requests begun and not yet ended. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Its breaker's state (half-open: one trial request may go). */
  get breakerState(): BreakerState {
    return this.#breaker.state;
  }

  /** Whether it may be picked: healthy, not ejected, its breaker letting a request through, and not draining. */
  available(now: number): boolean {
    if (this.#draining || !this.#healthy || now < this.#ejectedUntil) return false;
    const breaker = this.#breaker.state;
    return breaker === 'closed' || (breaker === 'half-open' && !this.#trial);
  }

  /** Its share of traffic relative to the others: rising from a tenth to all of it over slow start. */
  weight(now: number): number {
    return this.#policy.slowStartMs > 0 ? slowStartWeight(now - this.#since, this.#policy.slowStartMs) : 1;
  }

  /** A request is about to be sent: false when the breaker refuses it (another trial is under way) or it drains. */
  begin(): boolean {
    if (this.#draining || !this.#breaker.admit()) return false;
    if (this.#breaker.state === 'half-open') this.#trial = true;
    this.#inFlight++;
    this.#requests++;
    this.#lastRequestAt = this.#now();
    return true;
  }

  /**
   * A begun request ended. A 5xx answer counts for outlier detection but is a
   * success for the breaker, which is about reaching the endpoint at all.
   */
  /** A request that `begin` admitted but that never reached the endpoint (it waited too long for a connection): it says nothing of its health. */
  release(): void {
    this.#inFlight--;
    if (this.#draining && this.#inFlight === 0) void this.#closePool();
  }

  end(outcome: EndpointOutcome): void {
    this.#inFlight--;
    if (this.#draining) {
      // Its breaker and ejection no longer matter (and must not start timers again).
      if (!outcome.ok || outcome.status >= 500) this.#countFailure();
      if (this.#inFlight === 0) void this.#closePool();
      return;
    }
    if (outcome.ok) {
      this.#breaker.succeeded();
      if (outcome.status >= 500) this.#failedAnswer();
      else this.#failedInRow = 0;
    } else {
      this.#breaker.failed();
      this.#failedAnswer();
    }
    // Any outcome reported half-open moves the breaker on (closed or open again), so no trial is left under way.
    this.#trial = false;
  }

  /** An active health check's result. */
  checked(ok: boolean, detail: string): void {
    const now = this.#now();
    this.#lastCheck = { at: now, ok, detail };
    const health = this.#policy.health;
    if (!health || this.#draining) return;
    if (ok === this.#healthy) {
      this.#checksAgainst = 0;
      if (ok && now < this.#ejectedUntil && ++this.#passesWhileEjected >= health.healthy) this.#uneject(now);
      else if (!ok) this.#passesWhileEjected = 0;
      return;
    }
    this.#checksAgainst++;
    if (this.#checksAgainst < (ok ? health.healthy : health.unhealthy)) return;
    this.#checksAgainst = 0;
    this.#healthy = ok;
    if (ok) {
      this.#since = now;
    } else {
      this.#ejections++;
      this.#events.ejected(this, 'health');
    }
    this.#refresh();
  }

  /** Takes its upstream's new settings, keeping its counters and state. */
  configure(policy: EndpointPolicy): void {
    this.#policy = policy;
    const now = this.#now();
    if (!policy.health && !this.#healthy) {
      // Nothing checks it any more, so nothing can say it came back.
      this.#healthy = true;
      this.#since = now;
    }
    if (!policy.outlier && now < this.#ejectedUntil) {
      clearTimeout(this.#ejectTimer);
      this.#ejectedUntil = now;
      this.#since = now;
    }
    this.#refresh();
  }

  /** Takes no new request; its pool closes once the requests in flight have ended. */
  drain(): Promise<void> {
    this.#stop();
    if (this.#inFlight === 0) void this.#closePool();
    return this.closed;
  }

  /** Closes its pool now (undici still lets the requests it is carrying finish). */
  close(): Promise<void> {
    this.#stop();
    return this.#closePool();
  }

  /** What operators see of it at `now`. */
  snapshot(now: number): EndpointSnapshot {
    return {
      url: this.url,
      state: this.#state(now),
      inFlight: this.#inFlight,
      requests: this.#requests,
      failures: this.#failures,
      ejections: this.#ejections,
      breaker: this.#breaker.state,
      weight: Math.round(this.weight(now) * 1000) / 1000,
      lastRequestAt: iso(this.#lastRequestAt),
      lastFailureAt: iso(this.#lastFailureAt),
      ejectedAt: iso(this.#ejectedAt),
      ejectedUntil: this.#ejectedAt === undefined ? null : iso(this.#ejectedUntil),
      lastCheck: this.#lastCheck ? { at: iso(this.#lastCheck.at)!, ok: this.#lastCheck.ok, detail: this.#lastCheck.detail } : null,
    };
  }

  #state(now: number): EndpointState {
    if (this.#draining) return 'draining';
    if (!this.#healthy) return 'unhealthy';
    if (now < this.#ejectedUntil) return 'ejected';
    const breaker = this.#breaker.state;
    // Half-open with its one trial under way, it takes no request either.
    if (breaker === 'open' || (breaker === 'half-open' && this.#trial)) return 'breaker-open';
    if (this.weight(now) < 1) return 'slow-start';
    return 'healthy';
  }

  #countFailure(): number {
    const now = this.#now();
    this.#failures++;
    this.#lastFailureAt = now;
    return now;
  }

  #failedAnswer(): void {
    const now = this.#countFailure();
    const outlier = this.#policy.outlier;
    // Answers to requests sent before an ejection say nothing new once it is out.
    if (!outlier || now < this.#ejectedUntil) return;
    if (++this.#failedInRow < outlier.consecutiveFailures) return;
    this.#failedInRow = 0;
    this.#passesWhileEjected = 0;
    this.#ejections++;
    this.#ejectedAt = now;
    this.#ejectedUntil = now + outlier.ejectMs;
    this.#since = this.#ejectedUntil;
    this.#scheduleReturn(outlier.ejectMs);
    this.#events.ejected(this, 'outlier');
    this.#refresh();
  }

  /**
   * An ejected endpoint that passed `healthy` active checks in a row is back before its time is up (a
   * restarted instance needs not sit out the whole ejection), in slow start like any return.
   */
  #uneject(now: number): void {
    clearTimeout(this.#ejectTimer);
    this.#ejectedUntil = now;
    this.#since = now;
    this.#passesWhileEjected = 0;
    this.#refresh();
  }

  /** Its return from ejection must be told, though no request or check may come to notice it. */
  #scheduleReturn(ms: number): void {
    clearTimeout(this.#ejectTimer);
    this.#ejectTimer = setTimeout(() => {
      const left = this.#ejectedUntil - this.#now();
      if (left > 0) this.#scheduleReturn(left);
      else this.#refresh();
    }, ms);
    this.#ejectTimer.unref();
  }

  #breakerChanged(state: BreakerState): void {
    if (state === 'half-open') this.#since = this.#now();
    this.#events.breaker(this, state);
    this.#refresh();
  }

  /** Tells `up` when whether it takes requests changed. */
  #refresh(): void {
    const up = !this.#draining && this.#healthy && this.#now() >= this.#ejectedUntil && this.#breaker.state !== 'open';
    if (up === this.#up) return;
    this.#up = up;
    if (!this.#draining) this.#events.up(this, up);
  }

  #stop(): void {
    this.#draining = true;
    clearTimeout(this.#ejectTimer);
    this.#breaker.shutdown();
  }

  #closePool(): Promise<void> {
    this.#closing ??= this.pool
      .close()
      .catch(() => {})
      .then(this.#drained);
    return this.#closing;
  }
}

function iso(at: number | undefined): string | null {
  return at === undefined ? null : new Date(at).toISOString();
}
