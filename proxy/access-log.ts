import pino, { type Logger } from 'pino';

/** One answered (or abandoned) request, as the access log records it. */
export interface AccessEntry {
  readonly reqId: string;
  readonly method: string;
  readonly url: string;
  readonly route: string;
  readonly mode: string;
  /** `legacy`, `new`, or `proxy` for answers the proxy gave itself (retired, refused). */
  readonly backend: string;
  /** The upstream that answered (`legacy`, `app`, `files`, …), or `proxy`. */
  readonly service: string;
  /** The endpoint the request went to last, when one was chosen. */
  readonly endpoint?: string | undefined;
  /** 499 when the client left before the answer. */
  readonly status: number;
  readonly ms: number;
  /** Bytes written to the client's connection for this answer, headers included. */
  readonly bytes: number;
  /** Why a fallback happened (`refused`, `timeout`, `breaker_open`…), when one did. */
  readonly fallback?: string | undefined;
}

export type AccessLogFormat = 'off' | 'json' | 'pretty';

/**
 * The proxy's access log (BANYAN_LOG): `json` is one pino line per request,
 * for log pipelines; `pretty` one short line for a terminal; `off` nothing.
 * Written asynchronously (pino's sonic-boom), so a slow stdout does not hold
 * requests back.
 */
export function accessLog(
  format: AccessLogFormat,
  destination: NodeJS.WritableStream = process.stdout,
): ((entry: AccessEntry) => void) | undefined {
  if (format === 'off') return undefined;
  if (format === 'pretty') {
    return (e) => {
      destination.write(
        `${new Date().toISOString().slice(11, 23)} ${e.method} ${e.url} ${e.status} ${e.service}${e.endpoint ? ` ${e.endpoint}` : ''} (${e.route}, ${e.mode}) ` +
          `${e.ms.toFixed(1)} ms ${e.bytes} B${e.fallback ? ` fallback: ${e.fallback}` : ''} ${e.reqId}\n`,
      );
    };
  }
  const logger: Logger = pino(
    { base: undefined, messageKey: 'msg', timestamp: pino.stdTimeFunctions.isoTime },
    destination === process.stdout ? pino.destination({ fd: 1, sync: false }) : destination,
  );
  return (e) => logger.info(e, 'request');
}
