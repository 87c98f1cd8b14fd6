/**
 * Every upstream the proxy runs, kept in step with the route table's
 * `upstreams`: `apply()` reconciles what runs with a table version's specs,
 * so a table change (or rollback) never drops a connection it need not.
 */

import type { UpstreamSpec } from '../../routing/table/upstreams.js';
import { ENDPOINT_BREAKER_DEFAULTS, POOL_DEFAULTS, type BreakerSettings, type PoolSettings } from './upstream-endpoint.js';
import type { UpstreamEvents } from './upstream-events.js';
import { lookupAll, type Lookup } from './upstream-source.js';
import { Upstream, type UpstreamContext, type UpstreamSnapshot } from './upstream.js';

/** What a set of upstreams is made with. */
export interface UpstreamSetOptions {
  /** Where `env` upstreams read their endpoints (the proxy's environment, with its shorthands). */
  readonly environment: (name: string) => string | undefined;
  /** Told of endpoints' changes of state, for metrics. */
  readonly events?: UpstreamEvents | undefined;
  readonly log: (line: string) => void;
  /** Each endpoint's keep-alive pool (defaults: POOL_DEFAULTS). */
  readonly pool?: PoolSettings | undefined;
  /** Each endpoint's circuit breaker (defaults: ENDPOINT_BREAKER_DEFAULTS). */
  readonly breaker?: Partial<BreakerSettings> | undefined;
  /** The clock (default Date.now). */
  readonly now?: (() => number) | undefined;
  /** How `dns` upstreams resolve their name (default: the system resolver; tests give their own answers). */
  readonly lookup?: Lookup | undefined;
}

/** The proxy's upstreams by name, reconciled with each table version's specs. */
export class UpstreamSet {
  readonly #upstreams = new Map<string, Upstream>();
  /** Upstreams no longer in the specs, until their endpoints have drained. */
  readonly #leaving = new Set<Upstream>();
  readonly #context: UpstreamContext;

  constructor(options: UpstreamSetOptions) {
    this.#context = {
      environment: options.environment,
      events: options.events,
      log: options.log,
      pool: { ...POOL_DEFAULTS, ...definedOnly(options.pool) },
      breaker: { ...ENDPOINT_BREAKER_DEFAULTS, ...definedOnly(options.breaker) },
      now: options.now ?? Date.now,
      lookup: options.lookup ?? lookupAll,
      random: Math.random,
    };
  }

  /**
   * Runs `specs` from now on: an unchanged upstream is kept as it is; a
   * changed one keeps the endpoints whose URL stays (breakers, health,
   * counters), adds the new ones in slow start and drains the others; an
   * upstream no longer named drains and goes.
   */
  apply(specs: readonly UpstreamSpec[]): void {
    const named = new Set<string>();
    for (const spec of specs) {
      named.add(spec.name);
      const running = this.#upstreams.get(spec.name);
      if (running) running.update(spec);
      else this.#upstreams.set(spec.name, new Upstream(spec, this.#context));
    }
    for (const [name, upstream] of this.#upstreams) {
      if (named.has(name)) continue;
      this.#upstreams.delete(name);
      this.#leaving.add(upstream);
      this.#context.log(`proxy: upstream ${name} is no longer in the route table; it drains`);
      void upstream.drain().then(() => this.#leaving.delete(upstream));
    }
  }

  /** The upstream named `name`, if the specs name it. */
  get(name: string): Upstream | undefined {
    return this.#upstreams.get(name);
  }

  /** The names of the upstreams, in the order the specs first named them. */
  names(): string[] {
    return [...this.#upstreams.keys()];
  }

  /** Every upstream as operators see it. */
  snapshot(): UpstreamSnapshot[] {
    return [...this.#upstreams.values()].map((u) => u.snapshot());
  }

  /** Settles once every upstream's source has first answered (a DNS name its first lookup). */
  async settled(): Promise<void> {
    await Promise.all([...this.#upstreams.values()].map((u) => u.settled()));
  }

  /** Stops every timer and closes every pool, those of leaving upstreams too. */
  async close(): Promise<void> {
    const all = [...this.#upstreams.values(), ...this.#leaving];
    this.#upstreams.clear();
    this.#leaving.clear();
    await Promise.all(all.map((u) => u.close()));
  }
}

/** `{ ...defaults, ...given }` must not let a given `undefined` hide a default. */
function definedOnly<T extends object>(given: T | undefined): Partial<T> {
  return given === undefined ? {} : (Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined)) as Partial<T>);
}
