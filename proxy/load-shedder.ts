import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * Load shedding on the proxy's own event loop. A proxy past its capacity does
 * not fail: it gets slower for everyone, as requests wait their turn on one
 * thread. The loop's delay shows that queue: a timer every 10 ms measures how
 * late it fires, and over each 100 ms the smallest of those delays is taken
 * (as CoDel takes the minimum sojourn time), so a garbage collection or one
 * long task does not count, only a standing queue. A loop that is late but
 * mostly idle (the machine's other processes have the CPU) is not over its own
 * capacity, so the loop must also have been busy (event loop utilization of
 * 90 % or more) over the same 100 ms. While both hold, a growing share of new requests (up to 95 %) is answered at once
 * with 503 and `Retry-After`, at a fraction of a forwarded request's cost;
 * below it, the share falls back to none. Admitted requests keep their
 * latency; the excess learns to retry instead of timing out.
 */
export class LoadShedder {
  readonly #targetMs: number;
  #share = 0;
  #windowMin = Infinity;
  #windowStart = performance.now();
  #busy = performance.eventLoopUtilization();
  #timer: NodeJS.Timeout | undefined;
  /** Requests answered 503 so far. */
  shed = 0;

  /** `targetMs` 0: never sheds (no timer runs). */
  constructor(
    targetMs: number,
    readonly onShed: () => void = () => {},
  ) {
    this.#targetMs = targetMs;
    if (targetMs > 0) this.#tick(performance.now() + SAMPLE_MS);
  }

  /** The share of new requests shed now, 0 to MAX_SHARE. */
  get share(): number {
    return this.#share;
  }

  #tick(expected: number): void {
    this.#timer = setTimeout(() => {
      const now = performance.now();
      this.#windowMin = Math.min(this.#windowMin, now - expected);
      if (now - this.#windowStart >= WINDOW_MS) {
        const busy = performance.eventLoopUtilization(this.#busy).utilization;
        this.#busy = performance.eventLoopUtilization();
        const over = this.#windowMin > this.#targetMs && busy >= BUSY;
        this.#share = over ? Math.min(MAX_SHARE, this.#share + STEP_UP) : Math.max(0, this.#share - STEP_DOWN);
        this.#windowMin = Infinity;
        this.#windowStart = now;
      }
      this.#tick(now + SAMPLE_MS);
    }, SAMPLE_MS);
    this.#timer.unref();
  }

  /** Whether to serve a new request; false after answering it 503. */
  admit(req: IncomingMessage, res: ServerResponse): boolean {
    if (this.#share === 0 || Math.random() >= this.#share) return true;
    this.shed++;
    this.onShed();
    const body = '503 Service Unavailable: this proxy is over its capacity. Retry after 1 s.\n';
    // A request with a body would have to be read to keep the connection: closing it is cheaper.
    const hasBody =
      (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0') ||
      req.headers['transfer-encoding'] !== undefined;
    res.writeHead(503, {
      'Retry-After': '1',
      'Content-Type': 'text/plain; charset=utf-8',
      'Content-Length': Buffer.byteLength(body),
      'Cache-Control': 'no-store',
      ...(hasBody ? { Connection: 'close' } : {}),
    });
    res.end(body);
    return false;
  }

  close(): void {
    clearTimeout(this.#timer);
  }
}

const SAMPLE_MS = 10;
const WINDOW_MS = 100;
const MAX_SHARE = 0.95;
const BUSY = 0.9;
const STEP_UP = 0.1;
const STEP_DOWN = 0.05;
