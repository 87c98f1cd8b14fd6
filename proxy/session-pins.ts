/**
 * Read-your-writes pins on the proxy's side: a session's signed pin is read
 * from its cookie (or the `Banyan-Pin` header of a client without cookies),
 * verified once per value, and turned into the fence header the backends
 * honour; after a successful write a new pin is issued at the write's LSN.
 */

import type { IncomingMessage } from 'node:http';
import { formatLsn, laterPosition, parseLsn, parseTimeline, type WalPosition } from '../lib/lsn.js';
import type { ProxyMetrics } from '../metrics/catalog.js';
import type { ForwardOptions } from './forwarder.js';
import type { ClientInfo } from './headers.js';
import { cookieValue, newPinId, PIN_COOKIE, PIN_HEADER, signPin, verifyPin, type Pin } from './pin.js';

/** Read-your-writes pins: after a write, the session reads at or past it. */
export interface PinSettings {
  /** BANYAN_SECRET's list, newest first: the first signs, all verify. */
  readonly secrets: readonly string[];
  /** The cap on a pin's life. */
  readonly ttlMs: number;
  /** `lsn`: pin to the write's WAL position; `timed`: read from the primary until the pin expires. */
  readonly mode: 'lsn' | 'timed';
  /** The primary's current WAL position (and timeline), when the backend did not report the write's. */
  readonly currentPosition: () => Promise<WalPosition>;
  /**
   * `read-your-writes` (the default): a session reads at or past what it wrote. `monotonic` (BANYAN_READ_CONSISTENCY):
   * also never older than what it has read; backends report where each read was served, and the pin rises to it.
   */
  readonly consistency?: 'read-your-writes' | 'monotonic' | undefined;
}

export type HeadHook = NonNullable<ForwardOptions['beforeHead']>;

export class SessionPins {
  readonly #settings: PinSettings;
  readonly #metrics: ProxyMetrics;
  // A session sends the same cookie on every request: remember values already verified (keyed by the
  // whole signed value, so a hit proves the same MAC was checked) instead of computing an HMAC each time.
  readonly #verified = new Map<string, Pin>();
  readonly #honoured: { inc(): void };

  constructor(settings: PinSettings, metrics: ProxyMetrics) {
    this.#settings = settings;
    this.#metrics = metrics;
    this.#honoured = metrics.pins.labels({ event: 'honoured' });
  }

  get secrets(): readonly string[] {
    return this.#settings.secrets;
  }

  /** The session's valid pin, if it has one; forged, tampered and expired ones are counted and ignored. */
  read(req: IncomingMessage): Pin | undefined {
    const header = req.headers[PIN_HEADER];
    const value = cookieValue(req.headers.cookie, PIN_COOKIE) ?? (typeof header === 'string' ? header.trim() : undefined);
    if (!value) return undefined;
    const now = Date.now();
    let pin = this.#verified.get(value);
    if (!pin) {
      const check = verifyPin(value, this.#settings.secrets, now);
      if (!check.ok) {
        this.#metrics.pins.inc({ event: `rejected_${check.reason}` });
        return undefined;
      }
      pin = check.pin;
      if (this.#verified.size >= 10_000) this.#verified.clear();
      this.#verified.set(value, pin);
    } else if (pin.expires <= now) {
      this.#verified.delete(value);
      this.#metrics.pins.inc({ event: 'rejected_expired' });
      return undefined;
    }
    this.#honoured.inc();
    return pin;
  }

  /** The headers a request takes to its backend: the pin's fence, and with monotonic reads the ask to report where it read. */
  forwardHeaders(pin: Pin | undefined): Record<string, string> | undefined {
    if (this.#settings.consistency !== 'monotonic') return pin ? fenceHeader(pin) : undefined;
    return pin ? monotonicFenceHeader(pin) : MONOTONIC;
  }

  /**
   * The response hook of a request: after a successful write, a pin at the write's LSN (the backend's, else
   * the primary's now); with monotonic reads, after any answer (a failed write's too) that read further
   * than the pin, a pin there.
   */
  hook(previous: Pin | undefined, client: ClientInfo, safe: boolean): HeadHook | undefined {
    const monotonic = this.#settings.consistency === 'monotonic' && this.#settings.mode === 'lsn';
    if (safe && !monotonic) return undefined;
    return async (status, headers) => {
      const settings = this.#settings;
      const read = monotonic ? reportedPosition(headers, 'read') : undefined;
      let position: WalPosition | undefined;
      // A read's answer counts whatever its status: "not found" is a state too (a deletion must not come undone).
      if (safe || status < 200 || status >= 400) {
        // A timed pin sends every read to the primary anyway; an answer that read no further changes nothing.
        if (read === undefined || (previous !== undefined && previous.lsn === undefined)) return undefined;
        const floor = previous?.lsn === undefined ? undefined : { lsn: previous.lsn, timeline: previous.timeline };
        if (floor !== undefined && laterPosition(floor, read) === floor) return undefined;
        position = read;
      } else if (settings.mode === 'lsn') {
        position = reportedPosition(headers, 'write') ?? (await settings.currentPosition().catch(() => undefined));
        if (position !== undefined && read !== undefined) position = laterPosition(position, read);
        // Without any LSN the pin is timed: reads go to the primary until it expires.
        if (position !== undefined && previous?.lsn !== undefined)
          position = laterPosition(position, { lsn: previous.lsn, timeline: previous.timeline });
      }
      return this.#issue(previous, position, client);
    };
  }

  /** A new signed pin at `position` (timed without one), as cookie and header. */
  #issue(previous: Pin | undefined, position: WalPosition | undefined, client: ClientInfo): Record<string, string> {
    const settings = this.#settings;
    const value = signPin(
      { id: previous?.id ?? newPinId(), lsn: position?.lsn, timeline: position?.timeline, expires: Date.now() + settings.ttlMs },
      settings.secrets[0]!,
    );
    this.#metrics.pins.inc({ event: 'set' });
    const secure = client.proto === 'https' ? '; Secure' : '';
    return {
      'set-cookie': `${PIN_COOKIE}=${value}; Path=/; Max-Age=${Math.ceil(settings.ttlMs / 1000)}; HttpOnly; SameSite=Lax${secure}`,
      [PIN_HEADER]: value,
    };
  }
}

/**
 * What the backend reported: of its write, `X-Banyan-Write-LSN` (and `X-Banyan-Write-Timeline` if it sent
 * one); of its reads, `X-Banyan-Read-LSN` (and `X-Banyan-Read-Timeline`).
 */
function reportedPosition(headers: Record<string, string | string[] | undefined>, what: 'write' | 'read'): WalPosition | undefined {
  const lsnText = headers[`x-banyan-${what}-lsn`];
  const lsn = typeof lsnText === 'string' ? parseLsn(lsnText) : undefined;
  if (lsn === undefined) return undefined;
  const timelineText = headers[`x-banyan-${what}-timeline`];
  return { lsn, timeline: typeof timelineText === 'string' ? parseTimeline(timelineText) : undefined };
}

/** Asks the backend to report where it read (`X-Banyan-Read-LSN`), for monotonic reads. */
const MONOTONIC: Record<string, string> = { 'x-banyan-consistency': 'monotonic' };
const monotonicHeaders = new WeakMap<Pin, Record<string, string>>();

function monotonicFenceHeader(pin: Pin): Record<string, string> {
  let header = monotonicHeaders.get(pin);
  if (!header) monotonicHeaders.set(pin, (header = { ...fenceHeader(pin), ...MONOTONIC }));
  return header;
}

const fenceHeaders = new WeakMap<Pin, Record<string, string>>();

/** The `X-Banyan-Min-LSN` (and `X-Banyan-Min-Timeline`) headers for a pin, formatted once per pin. */
export function fenceHeader(pin: Pin): Record<string, string> {
  let header = fenceHeaders.get(pin);
  if (!header) {
    header = { 'x-banyan-min-lsn': pin.lsn === undefined ? 'primary' : formatLsn(pin.lsn) };
    if (pin.lsn !== undefined && pin.timeline !== undefined) header['x-banyan-min-timeline'] = String(pin.timeline);
    fenceHeaders.set(pin, header);
  }
  return header;
}

/** The response hook with the new session's cookie added (the pin's hook may set a cookie too). */
export function withSession(hook: HeadHook | undefined, cookie: string | undefined): HeadHook | undefined {
  if (!cookie) return hook;
  return async (status, headers) => {
    const extra = hook ? await hook(status, headers) : undefined;
    const pinCookie = extra?.['set-cookie'];
    return { ...extra, 'set-cookie': pinCookie ? [pinCookie, cookie].flat() : cookie };
  };
}
