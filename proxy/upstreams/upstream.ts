/**
 * One named upstream (service) as it runs: its endpoints, where they come
 * from, their health checks, and the balancer that picks one per request.
 * A new spec is taken in place, so the proxy's reference stays good and the
 * endpoints that stay keep their breakers, health and counters.
 */

import { HEALTH_DEFAULTS, OUTLIER_DEFAULTS, type Balance, type UpstreamSpec } from '../../routing/table/upstreams.js';
import { pickBySession, pickLeastRequest, pickRoundRobin } from './upstream-balancer.js';
import {
  Endpoint,
  type BreakerSettings,
  type EndpointEvents,
  type EndpointPolicy,
  type EndpointSnapshot,
  type PoolSettings,
} from './upstream-endpoint.js';
import type { UpstreamEvents } from './upstream-events.js';
import { HealthChecker, type HealthSettings } from './upstream-health.js';
import { DnsEndpoints, describeSource, fixedEndpoints, type Found, type Lookup } from './upstream-source.js';

/** An upstream as operators see it. */
export interface UpstreamSnapshot {
  readonly name: string;
  /** Where its endpoints come from: `endpoints`, `dns http://app.internal:8081 every 5000 ms`, `env APP_URL`. */
  readonly source: string;
  readonly balance: Balance;
  readonly session: boolean;
  /** What is wrong with its source, when something is (`APP_URL is not set on this proxy`). */
  readonly problem?: string;
  /** Its endpoints, then those that left and are still draining. */
  readonly endpoints: readonly EndpointSnapshot[];
}

/** What the upstreams of one set share. */
export interface UpstreamContext {
  readonly environment: (name: string) => string | undefined;
  readonly events: UpstreamEvents | undefined;
  readonly log: (line: string) => void;
  readonly pool: Required<PoolSettings>;
  readonly breaker: BreakerSettings;
  readonly now: () => number;
  readonly lookup: Lookup;
  readonly random: () => number;
}

/** One named service: its endpoints, their source and checks, and its balancer. */
export class Upstream {
  readonly name: string;
  readonly #context: UpstreamContext;
  readonly #endpointEvents: EndpointEvents;
  #spec: UpstreamSpec;
  #policy: EndpointPolicy = { slowStartMs: 0, outlier: undefined, health: undefined };
  #health: HealthSettings | undefined;
  #endpoints: readonly Endpoint[] = [];
  /** Smooth round robin's running scores, one per endpoint. */
  #scores = new Float64Array(0);
  readonly #draining = new Set<Endpoint>();
  readonly #checkers = new Map<Endpoint, HealthChecker>();
  #source = '';
  #dns: DnsEndpoints | undefined;
  #settled: Promise<void> = Promise.resolve();
  #problem: string | undefined;

  constructor(spec: UpstreamSpec, context: UpstreamContext) {
    this.name = spec.name;
    this.#spec = spec;
    this.#context = context;
    const { events, log } = context;
    const name = spec.name;
    this.#endpointEvents = {
      up: (e, up) => {
        events?.endpointUp(name, e.url, up);
        if (up) log(`proxy: ${name} endpoint ${e.url} takes requests again`);
      },
      breaker: (e, state) => {
        events?.breaker(name, e.url, state);
        if (state !== 'half-open') log(`proxy: circuit breaker for ${name} endpoint ${e.url} ${state === 'open' ? 'opened' : 'closed'}`);
      },
      ejected: (e, reason) => {
        events?.ejected(name, e.url, reason);
        const { outlier, health } = this.#policy;
        log(
          reason === 'outlier'
            ? `proxy: ${name} endpoint ${e.url} ejected for ${outlier?.ejectMs} ms after ${outlier?.consecutiveFailures} failed answers in a row`
            : `proxy: ${name} endpoint ${e.url} is unhealthy after ${health?.unhealthy} failed checks in a row (${e.snapshot(context.now()).lastCheck?.detail})`,
        );
      },
    };
    this.update(spec);
  }

  /** The spec it runs. */
  get spec(): UpstreamSpec {
    return this.#spec;
  }

  /** Its endpoints (not those draining). */
  get endpoints(): readonly Endpoint[] {
    return this.#endpoints;
  }

  /**
   * The endpoint for one request, never `exclude` (the one a retry just
   * failed on); undefined when none is available. `sessionKey` counts only
   * for an upstream that keeps sessions. Call `begin()` on it next.
   */
  pick(sessionKey: string | undefined, exclude?: Endpoint): Endpoint | undefined {
    const now = this.#context.now();
    if (sessionKey !== undefined && this.#spec.session === true) return pickBySession(this.#endpoints, sessionKey, now, exclude);
    if (this.#spec.balance === 'round-robin') return pickRoundRobin(this.#endpoints, this.#scores, now, exclude);
    return pickLeastRequest(this.#endpoints, now, this.#context.random, exclude);
  }

  /** Runs `spec` from now on: what it leaves as it was (endpoints, checks, a name being resolved) goes on undisturbed. */
  update(spec: UpstreamSpec): void {
    this.#spec = spec;
    const health = healthOf(spec);
    this.#policy = policyOf(spec, health);
    for (const e of this.#endpoints) e.configure(this.#policy);
    if (JSON.stringify(health) !== JSON.stringify(this.#health)) {
      this.#health = health;
      for (const e of this.#endpoints) this.#check(e);
    }
    this.#follow(spec);
  }

  /** Settles once its source has first answered (at once, but for a DNS name). */
  settled(): Promise<void> {
    return this.#settled;
  }

  /** What operators see of it now. */
  snapshot(): UpstreamSnapshot {
    const now = this.#context.now();
    const endpoints: EndpointSnapshot[] = [];
    for (const e of this.#endpoints) endpoints.push(e.snapshot(now));
    for (const e of this.#draining) endpoints.push(e.snapshot(now));
    return {
      name: this.name,
      source: this.#source,
      balance: this.#spec.balance ?? 'least-request',
      session: this.#spec.session === true,
      ...(this.#problem === undefined ? {} : { problem: this.#problem }),
      endpoints,
    };
  }

  /** Leaves: stops resolving and checking, and drains every endpoint; settles when all their pools have closed. */
  async drain(): Promise<void> {
    this.#stopSource();
    for (const e of this.#endpoints) this.#remove(e);
    this.#endpoints = [];
    await Promise.all([...this.#draining].map((e) => e.closed));
  }

  /** Stops everything it runs and closes every pool, draining ones included. */
  async close(): Promise<void> {
    this.#stopSource();
    const checks = [...this.#checkers.values()].map((c) => c.stop());
    this.#checkers.clear();
    await Promise.all([...checks, ...this.#endpoints.map((e) => e.close()), ...[...this.#draining].map((e) => e.close())]);
  }

  #stopSource(): void {
    this.#dns?.stop();
    this.#dns = undefined;
  }

  /** Takes endpoints from the source `spec` names: a list or variable read now, or a name resolved from now on. */
  #follow(spec: UpstreamSpec): void {
    const source = describeSource(spec);
    if (spec.dns === undefined) {
      this.#stopSource();
      this.#reconcile(fixedEndpoints(spec, this.#context.environment));
      this.#settled = Promise.resolve();
    } else if (source !== this.#source) {
      // A name resolved as before goes on with the endpoints it has; another name starts from its first answer.
      this.#stopSource();
      this.#dns = new DnsEndpoints({ ...spec, dns: spec.dns }, this.#context.lookup, (found) => this.#reconcile(found));
      this.#settled = this.#dns.settled;
    }
    this.#source = source;
  }

  /** Takes a source's answer: endpoints that stay are kept as they are, new ones join, the others drain. */
  #reconcile(found: Found): void {
    const current = this.#endpoints;
    const urls = found.urls;
    if (urls === undefined) {
      const n = current.length;
      this.#setProblem(`${found.problem}; ${n === 0 ? 'no endpoints' : `keeping ${n} endpoint${n === 1 ? '' : 's'}`}`);
      return;
    }
    this.#setProblem(found.problem);
    if (current.length === urls.length && current.every((e, i) => e.url === urls[i])) return;
    const byUrl = new Map(current.map((e) => [e.url, e]));
    // Slow start shares traffic out relative to the others: with no others there is nothing to share it with.
    const slowStart = current.length > 0;
    const next = urls.map((url) => byUrl.get(url) ?? this.#add(url, slowStart, found.tlsName));
    for (const e of current) if (!urls.includes(e.url)) this.#remove(e);
    this.#endpoints = next;
    this.#scores = new Float64Array(next.length);
  }

  /** A new problem is said once in the log, so an operator sees at start why a service gets no requests. */
  #setProblem(problem: string | undefined): void {
    if (problem !== undefined && problem !== this.#problem) {
      this.#context.log(
        `proxy: upstream ${this.name}: ${problem}${this.#endpoints.length === 0 ? '; its routes fall back (safe requests, with fallback) or get 503' : ''}`,
      );
    }
    this.#problem = problem;
  }

  #add(url: string, slowStart: boolean, tlsName: string | undefined): Endpoint {
    const { events, log, now } = this.#context;
    const e = new Endpoint({
      url,
      policy: this.#policy,
      breaker: this.#context.breaker,
      pool: this.#context.pool,
      slowStart,
      tlsName,
      events: this.#endpointEvents,
      now,
    });
    events?.endpointUp(this.name, url, true);
    events?.breaker(this.name, url, 'closed');
    this.#check(e);
    // The endpoints an upstream starts with are in its snapshot; a log line is for a change while it runs.
    const ramp = this.#policy.slowStartMs;
    if (slowStart) log(`proxy: ${this.name} endpoint ${url} joined${ramp > 0 ? `, in slow start for ${ramp} ms` : ''}`);
    return e;
  }

  #remove(e: Endpoint): void {
    void this.#checkers.get(e)?.stop();
    this.#checkers.delete(e);
    this.#draining.add(e);
    this.#context.events?.removed(this.name, e.url);
    this.#context.log(`proxy: ${this.name} endpoint ${e.url} left; it drains ${e.inFlight} requests in flight`);
    void e.drain().then(() => this.#draining.delete(e));
  }

  /** (Re)starts the health checks of `e`, as the upstream's checks now are. */
  #check(e: Endpoint): void {
    void this.#checkers.get(e)?.stop();
    this.#checkers.delete(e);
    if (this.#health) this.#checkers.set(e, new HealthChecker(e, this.#health, this.#context.random));
  }
}

/** The health checks of `spec` with their defaults, or undefined for none. */
function healthOf(spec: UpstreamSpec): HealthSettings | undefined {
  if (!spec.health) return undefined;
  return {
    path: spec.health.path,
    intervalMs: spec.health.intervalMs ?? HEALTH_DEFAULTS.intervalMs,
    timeoutMs: spec.health.timeoutMs ?? HEALTH_DEFAULTS.timeoutMs,
    healthy: spec.health.healthy ?? HEALTH_DEFAULTS.healthy,
    unhealthy: spec.health.unhealthy ?? HEALTH_DEFAULTS.unhealthy,
  };
}

/** How the endpoints of `spec` judge themselves, defaults filled in. */
function policyOf(spec: UpstreamSpec, health: HealthSettings | undefined): EndpointPolicy {
  return {
    slowStartMs: spec.slowStartMs ?? 0,
    outlier:
      spec.outlier === false
        ? undefined
        : {
            consecutiveFailures: spec.outlier?.consecutiveFailures ?? OUTLIER_DEFAULTS.consecutiveFailures,
            ejectMs: spec.outlier?.ejectMs ?? OUTLIER_DEFAULTS.ejectMs,
          },
    health: health && { healthy: health.healthy, unhealthy: health.unhealthy },
  };
}
