/**
 * One client's share of a service: requests in flight per client address
 * (an IPv6 address counts by its /64, which one host usually owns whole) and
 * service, at most a share of the service's connections. A client that opens
 * hundreds of connections can keep at most that share of a backend busy;
 * everyone else keeps the rest.
 */

import { clientKey } from './client-key.js';
import type { TrustedProxies } from './headers.js';

export class ClientShares {
  readonly #inFlight = new Map<string, number>();
  readonly #percent: number;
  readonly #trusted: TrustedProxies;

  constructor(percent: number, trusted: TrustedProxies) {
    this.#percent = percent;
    this.#trusted = trusted;
  }

  /**
   * Takes one of `capacity` connections of `service` for `ip`, or returns false when that client
   * holds its share already. A trusted proxy's own address (no client behind it was named) is not limited.
   */
  enter(service: string, ip: string, capacity: number): string | false | undefined {
    if (this.#percent >= 100 || this.#trusted.has(ip)) return undefined;
    const key = `${service} ${clientKey(ip)}`;
    const held = this.#inFlight.get(key) ?? 0;
    if (held >= Math.max(1, Math.floor((capacity * this.#percent) / 100))) return false;
    this.#inFlight.set(key, held + 1);
    return key;
  }

  /** Gives back what `enter` took (its returned key). */
  leave(key: string | undefined): void {
    if (key === undefined) return;
    const left = (this.#inFlight.get(key) ?? 1) - 1;
    if (left <= 0) this.#inFlight.delete(key);
    else this.#inFlight.set(key, left);
  }
}
