import { createHash, randomBytes } from 'node:crypto';
import { Pool } from 'undici';
import { buildWheel } from './wheel.js';

/** One read the load sent: when, on which route, and what came back. */
export interface ReadEvent {
  readonly at: number;
  /** How long the answer took (or the failure, to come). */
  readonly ms: number;
  readonly route: string;
  /** HTTP status, or 0 for a connection error or timeout. */
  readonly status: number;
  /** The answer came from legacy (it says so in `X-Legacy-Read-From`). */
  readonly fromLegacy: boolean;
  /** The database server the new app read from (`X-Banyan-Read-From`), when it says. */
  readonly readFrom?: string | undefined;
  /** For a failure: the error's code, or the first words of a 5xx answer. */
  readonly detail?: string;
}

export interface ReadTarget {
  readonly route: string;
  readonly path: string;
}

/** `concurrency` loops, each running `once` again as soon as it returns, until stopped. */
abstract class Loops {
  #running = false;
  #loops: Promise<void>[] = [];

  constructor(private readonly concurrency: number) {}

  start(): void {
    this.#running = true;
    this.#loops = Array.from({ length: this.concurrency }, async () => {
      while (this.#running) await this.once();
    });
  }

  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#loops);
  }

  protected abstract once(): Promise<void>;
}

/**
 * Keep-alive readers against the proxy, as browsers and pip would send
 * them: `concurrency` loops, each sending the next target as soon as the
 * last answer is read. A failure is a connection error, a timeout or a 5xx.
 */
export class ReadLoad extends Loops {
  readonly events: ReadEvent[] = [];
  readonly #pool: Pool;
  readonly #targets: readonly ReadTarget[];
  #next = 0;

  constructor(proxyUrl: string, targets: readonly ReadTarget[], concurrency = 6) {
    super(concurrency);
    this.#pool = new Pool(proxyUrl, { connections: concurrency, headersTimeout: 15_000, bodyTimeout: 15_000 });
    this.#targets = targets;
  }

  override async stop(): Promise<void> {
    await super.stop();
    await this.#pool.close();
  }

  protected async once(): Promise<void> {
    const target = this.#targets[this.#next++ % this.#targets.length]!;
    const at = Date.now();
    try {
      const res = await this.#pool.request({ path: target.path, method: 'GET' });
      const detail = res.statusCode >= 500 ? (await res.body.text()).slice(0, 80).trim() : undefined;
      if (detail === undefined) await res.body.dump();
      const readFrom = res.headers['x-banyan-read-from'];
      this.events.push({
        at,
        ms: Date.now() - at,
        route: target.route,
        status: res.statusCode,
        fromLegacy: res.headers['x-legacy-read-from'] !== undefined,
        readFrom: typeof readFrom === 'string' ? readFrom : undefined,
        ...(detail === undefined ? {} : { detail }),
      });
    } catch (err) {
      const detail = (err as { code?: string }).code ?? (err as Error).message;
      this.events.push({ at, ms: Date.now() - at, route: target.route, status: 0, fromLegacy: false, detail });
      // A refused connection fails at once: do not spin.
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

/** What happened to each upload the writer sent. */
export interface WriteLog {
  /** Files the index answered 200 "stored" (or "already uploaded") for: these must be there. */
  readonly acknowledged: Set<string>;
  /** Files refused with an answer (503 while the app or primary was down): the client knows to retry. */
  readonly refused: Map<string, number>;
  /** Files whose answer never came (connection cut): they may or may not be stored, but at most once. */
  readonly unknown: Set<string>;
  /** When each acknowledged file was sent and its answer came, and the pin the proxy set with it (its LSN and timeline). */
  readonly acks: Map<string, { readonly sentAt: number; readonly at: number; readonly pin: string | undefined }>;
  readonly sent: number;
  /** The longest any upload waited for its answer (or its failure), in ms. */
  readonly longestMs: number;
}

/**
 * Uploads through the proxy, one after another in `concurrency` loops, each
 * a new version of `project` with its own file, as twine sends them. Never
 * retried: a retry would hide what the proxy did with the first attempt.
 */
export class UploadLoad extends Loops {
  readonly log: WriteLog = { acknowledged: new Set(), refused: new Map(), unknown: new Set(), acks: new Map(), sent: 0, longestMs: 0 };
  readonly #url: string;
  readonly #auth: string;
  readonly #project: string;
  #serial = 0;
  readonly #run = randomBytes(3).toString('hex');

  constructor(proxyUrl: string, project: string, token: string, concurrency = 2) {
    super(concurrency);
    this.#url = `${proxyUrl}/legacy/`;
    this.#auth = `Basic ${Buffer.from(`__token__:${token}`).toString('base64')}`;
    this.#project = project;
  }

  protected async once(): Promise<void> {
    const version = `1.${parseInt(this.#run, 16)}.${++this.#serial}`;
    const { form, filename } = uploadForm(this.#project, version);
    (this.log as { sent: number }).sent++;
    const sentAt = Date.now();
    const log = this.log as { longestMs: number };
    try {
      const res = await fetch(this.#url, {
        method: 'POST',
        body: form,
        headers: { authorization: this.#auth },
        signal: AbortSignal.timeout(30_000),
      });
      const text = await res.text();
      log.longestMs = Math.max(log.longestMs, Date.now() - sentAt);
      if (res.status === 200 && text.startsWith('OK')) {
        this.log.acknowledged.add(filename);
        this.log.acks.set(filename, { sentAt, at: Date.now(), pin: /banyan_pin=([^;]+)/.exec(res.headers.get('set-cookie') ?? '')?.[1] });
        return;
      }
      this.log.refused.set(filename, res.status);
    } catch {
      log.longestMs = Math.max(log.longestMs, Date.now() - sentAt);
      this.log.unknown.add(filename);
    }
    // Refused or cut (503 while a backend is down): back off briefly, as a client told Retry-After would.
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The form twine sends for a wheel: a real, small one (the index opens it and reads its METADATA). */
export function uploadForm(project: string, version: string): { form: FormData; filename: string } {
  const wheel = buildWheel(project, version, randomBytes(512));
  const form = new FormData();
  const fields: Record<string, string> = {
    ':action': 'file_upload',
    protocol_version: '1',
    name: project,
    version,
    filetype: 'bdist_wheel',
    pyversion: 'py3',
    metadata_version: '2.1',
    summary: 'written by the chaos suite',
    sha256_digest: createHash('sha256').update(wheel.bytes).digest('hex'),
  };
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  form.append('content', new Blob([wheel.bytes]), wheel.filename);
  return { form, filename: wheel.filename };
}
