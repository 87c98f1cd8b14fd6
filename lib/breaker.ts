/**
 * A circuit breaker, asked before every call to a dependency (an upstream,
 * a replica). Closed, it lets calls through and counts their outcomes over a
 * rolling window; once the window holds `volumeThreshold` calls, a failure
 * share above `errorThresholdPercentage` opens it. Open, it refuses at once;
 * after `resetTimeoutMs` it goes half-open and lets one trial call through:
 * success closes it, failure opens it again.
 *
 * These are opossum's rules and settings, without its per-call machinery:
 * opossum's `fire()` wraps each call in promises, an argument array and
 * events, which cost about 2.5 KB of allocation per proxied request
 * (measured with the proxy bench's sampling heap profile). Here a call is
 * asked for with `admit()` and reported with `succeeded()` or `failed()`:
 * plain calls and counter increments.
 */

export type BreakerState = 'closed' | 'open' | 'half-open';

export interface BreakerOptions {
  /** Failure share (percent) over the rolling window above which the breaker opens. */
  readonly errorThresholdPercentage: number;
  /** Calls in the window before the share counts. */
  readonly volumeThreshold: number;
  /** How long the breaker stays open before one trial call. */
  readonly resetTimeoutMs: number;
  /** The rolling window's length, kept as 10 buckets. */
  readonly rollingWindowMs: number;
  /** Told of every change of state. */
  readonly onChange?: ((state: BreakerState) => void) | undefined;
  /** The clock (tests move it by hand). */
  readonly now?: () => number;
}

const BUCKETS = 10;

/** The error a refused call fails with: `code` is EOPENBREAKER, as opossum's. */
export class BreakerOpenError extends Error {
  readonly code = 'EOPENBREAKER';

  constructor() {
    super('Breaker is open');
  }
}

export class Breaker {
  #state: BreakerState = 'closed';
  /** Half-open: whether the one trial call is under way. */
  #trial = false;
  #timer: NodeJS.Timeout | undefined;
  readonly #options: BreakerOptions;
  readonly #now: () => number;
  readonly #bucketMs: number;
  readonly #calls = new Float64Array(BUCKETS);
  readonly #failures = new Float64Array(BUCKETS);
  /** The bucket counts are for: a number of bucket lengths since the epoch. */
  #bucket = 0;

  constructor(options: BreakerOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#bucketMs = Math.max(1, options.rollingWindowMs / BUCKETS);
    this.#bucket = Math.floor(this.#now() / this.#bucketMs);
  }

  get state(): BreakerState {
    return this.#state;
  }

  /** Whether a call may go ahead now. Half-open, only the first caller is admitted, as the trial. */
  admit(): boolean {
    if (this.#state === 'closed') return true;
    if (this.#state === 'half-open' && !this.#trial) {
      this.#trial = true;
      return true;
    }
    return false;
  }

  /** An admitted call succeeded (or failed in a way that says nothing about the dependency's health). */
  succeeded(): void {
    this.#count(false);
    if (this.#state === 'half-open') this.#become('closed');
  }

  /** An admitted call failed. */
  failed(): void {
    this.#count(true);
    if (this.#state === 'half-open') {
      this.#open();
      return;
    }
    if (this.#state !== 'closed') return;
    let calls = 0;
    let failures = 0;
    for (let i = 0; i < BUCKETS; i++) {
      calls += this.#calls[i]!;
      failures += this.#failures[i]!;
    }
    if (calls >= this.#options.volumeThreshold && (failures / calls) * 100 > this.#options.errorThresholdPercentage) this.#open();
  }

  /** Stops the reset timer (the breaker stays as it is). */
  shutdown(): void {
    clearTimeout(this.#timer);
  }

  #count(failure: boolean): void {
    const bucket = Math.floor(this.#now() / this.#bucketMs);
    if (bucket !== this.#bucket) {
      // Forget the buckets that went by since the last call (all of them after a quiet window).
      const passed = Math.min(BUCKETS, bucket - this.#bucket);
      for (let i = 1; i <= passed; i++) {
        const at = (this.#bucket + i) % BUCKETS;
        this.#calls[at] = 0;
        this.#failures[at] = 0;
      }
      this.#bucket = bucket;
    }
    const at = bucket % BUCKETS;
    this.#calls[at]!++;
    if (failure) this.#failures[at]!++;
  }

  #open(): void {
    this.#become('open');
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#trial = false;
      this.#become('half-open');
    }, this.#options.resetTimeoutMs);
    this.#timer.unref();
  }

  #become(state: BreakerState): void {
    if (state === this.#state) return;
    this.#state = state;
    if (state === 'closed') {
      // A closed breaker starts from a clean window: the failures that opened it are not held against it again.
      this.#calls.fill(0);
      this.#failures.fill(0);
    }
    this.#options.onChange?.(state);
  }
}
