/**
 * A request body is admitted before any upstream connection is taken, as
 * nginx does: a small one is read whole into memory, a larger one streams
 * only once its first `bufferBytes` have arrived. Either way it must keep
 * coming, Apache mod_reqtimeout's way: never idle for `idleTimeoutMs`, and,
 * after that head start, at `minBytesPerSecond` on average. A client that
 * trickles its body holds a socket of the proxy's, never a backend's.
 */

import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';

/** How request bodies are admitted (BANYAN_BODY_BUFFER, BANYAN_BODY_TIMEOUT, BANYAN_BODY_MIN_RATE). */
export interface BodySettings {
  /** Bodies up to this size are read whole before an upstream is chosen; larger ones stream after this much. */
  readonly bufferBytes: number;
  /** The longest a body may go without a byte, and the head start before the minimum rate counts. */
  readonly idleTimeoutMs: number;
  /** After the head start, the average rate a body must keep. */
  readonly minBytesPerSecond: number;
}

export const DEFAULT_BODY: BodySettings = Object.freeze({ bufferBytes: 64 * 1024, idleTimeoutMs: 10_000, minBytesPerSecond: 1024 });

/** A body that arrived too slowly: the client's fault, answered 408. */
export class SlowBodyError extends Error {
  constructor(readonly why: string) {
    super(why);
  }
}

/** The body to forward: a Buffer when it came whole, a stream when it is larger; or why it cannot be. */
export type Admitted = { readonly body: Buffer | Readable } | { readonly refused: SlowBodyError } | { readonly gone: true };

/** Watches one body's pace: a timer a second, not one per chunk. */
class Pace {
  readonly #started = Date.now();
  #last = this.#started;
  #bytes = 0;
  readonly #timer: NodeJS.Timeout;

  constructor(
    readonly settings: BodySettings,
    onSlow: (err: SlowBodyError) => void,
  ) {
    this.#timer = setInterval(
      () => {
        const why = this.#problem(Date.now());
        if (why) {
          this.stop();
          onSlow(new SlowBodyError(why));
        }
      },
      Math.min(1_000, settings.idleTimeoutMs),
    );
    this.#timer.unref();
  }

  got(bytes: number): void {
    this.#bytes += bytes;
    this.#last = Date.now();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  #problem(now: number): string | undefined {
    const { idleTimeoutMs, minBytesPerSecond } = this.settings;
    if (now - this.#last >= idleTimeoutMs) return `no byte of the request body for ${idleTimeoutMs / 1000} s`;
    const counted = (now - this.#started - idleTimeoutMs) / 1000;
    if (counted > 0 && this.#bytes < counted * minBytesPerSecond)
      return `the request body is arriving slower than ${minBytesPerSecond} bytes/s`;
    return undefined;
  }
}

/**
 * Reads `source` (the request, or a replay of what was peeked at) as the
 * settings allow. Resolves with the whole body as a Buffer when it ends
 * within `bufferBytes`, else with a stream that gives what was read and then
 * the rest, still paced (a stall then errors the stream with SlowBodyError);
 * with `refused` when the first part came too slowly, `gone` when the client
 * went away.
 */
export function admitBody(req: IncomingMessage, source: Readable, settings: BodySettings): Promise<Admitted> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (admitted: Admitted) => {
      if (settled) return;
      settled = true;
      source.off('data', onData);
      source.off('end', onEnd);
      source.off('error', onGone);
      req.off('close', onClose);
      resolve(admitted);
    };
    let streaming: Readable | undefined;
    // A stall while streaming errors the stream the backend reads, not the request: the client still gets its 408.
    const pace = new Pace(settings, (err) => {
      if (!settled) settle({ refused: err });
      else streaming?.destroy(err);
    });
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      pace.got(chunk.length);
      if (size < settings.bufferBytes) return;
      source.pause();
      streaming = Readable.from(rest(source, chunks, pace), { objectMode: false });
      settle({ body: streaming });
    };
    const onEnd = () => {
      pace.stop();
      settle({ body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size) });
    };
    const onGone = () => {
      pace.stop();
      settle({ gone: true });
    };
    const onClose = () => {
      if (!req.complete) onGone();
    };
    source.on('data', onData);
    source.once('end', onEnd);
    source.once('error', onGone);
    req.once('close', onClose);
  });
}

/** What was read, then the rest of `source`, paced. */
async function* rest(source: Readable, read: Buffer[], pace: Pace): AsyncGenerator<Buffer> {
  try {
    yield* read;
    read.length = 0;
    for await (const chunk of source) {
      pace.got((chunk as Buffer).length);
      yield chunk as Buffer;
    }
  } finally {
    pace.stop();
  }
}
