import { randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { sql, type Kysely } from 'kysely';
import type { BanyanDatabase } from '../lib/schema.js';
import { DEFAULTS } from '../lib/config.js';
import { CLIENT_CLOSED } from '../lib/http-status.js';

/** Distinct user agents kept per route and feature per hour; the rest count as `other`. */
const MAX_AGENTS = 20;
/** Distinct (hour, route, feature, backend, status class) rows kept between flushes; beyond this, features fold into `other`. */
const MAX_ROWS = 5_000;

/** What the client got, as the ledger keeps it: 4xx is not use (a scanner's 404 is no reason to keep a route). */
export type StatusClass = '1xx' | '2xx' | '3xx' | '4xx' | '5xx' | 'aborted' | 'unknown';

const CLASSES: readonly StatusClass[] = ['1xx', '2xx', '3xx', '4xx', '5xx'];

/** The class of a status; `CLIENT_CLOSED` (499), recorded for a client that left before the answer, is `aborted`. */
export function classOf(status: number): StatusClass {
  if (status === CLIENT_CLOSED) return 'aborted';
  if (status >= 100 && status < 600) return CLASSES[Math.floor(status / 100) - 1]!;
  return 'unknown';
}

/** Classes that are not evidence of use: the client asked for something that is not there, or was refused. */
export const NOT_USE: readonly StatusClass[] = ['4xx'];

interface Count {
  requests: number;
  lastSeen: number;
}

/** A batch's keys for one hour, route and feature: its user agents' key, and each backend and status class's row key. */
class BatchKeys {
  readonly agents: string;
  readonly #rows = new Map<string, Map<StatusClass, string>>();

  constructor(bucket: number, route: string, feature: string) {
    this.agents = `${bucket}\u0000${route}\u0000${feature}`;
  }

  row(backend: string, service: string, statusClass: StatusClass): string {
    const side = `${backend}\u0000${service}`;
    let byClass = this.#rows.get(side);
    if (!byClass) this.#rows.set(side, (byClass = new Map()));
    let key = byClass.get(statusClass);
    if (!key) byClass.set(statusClass, (key = `${this.agents}\u0000${backend}\u0000${statusClass}\u0000${service}`));
    return key;
  }
}

interface Batch {
  readonly id: string;
  readonly counts: Map<string, Count>;
  readonly agents: Map<string, Map<string, number>>;
}

export interface UsageLedgerOptions {
  readonly db: Kysely<BanyanDatabase>;
  /** How often counts go to PostgreSQL (BANYAN_USAGE_FLUSH). */
  readonly flushMs?: number;
  readonly instance?: string;
  readonly onFlush?: (result: 'ok' | 'duplicate' | 'failed', error?: Error) => void;
  /**
   * A folder for counts that could not reach PostgreSQL when the proxy
   * stopped; the next start (of any proxy using the folder) adds them.
   */
  readonly spoolDir?: string | undefined;
  /** Told what happened to spooled counts (written, replayed, or kept for later). */
  readonly log?: ((line: string) => void) | undefined;
}

/** One answered request, as the usage ledger counts it. */
export interface UsageEvent {
  readonly route: string;
  /** The side that answered: legacy, new, or proxy. */
  readonly backend: string;
  /** The upstream that answered (legacy, app, files, …), or proxy. */
  readonly service: string;
  /** The status the client got (`CLIENT_CLOSED`, 499, when it left first). */
  readonly status: number;
  readonly features: readonly string[];
  readonly userAgent: string | undefined;
  /** When it was answered, in epoch milliseconds; default now. */
  readonly at?: number;
}

/**
 * The durable usage ledger. Each proxy counts requests per hour, route,
 * feature and backend (and the user agents per route and feature) in memory
 * and adds them to PostgreSQL every minute. A flush is one transaction keyed
 * by a flush id: when it fails, the same batch (same id) is tried again on
 * the next flush, and if the earlier attempt had in fact committed, the id is
 * already there and nothing is added twice. Counts are additive upserts, so
 * any number of proxies and restarts add up.
 */
export class UsageLedger {
  readonly #db: Kysely<BanyanDatabase>;
  readonly #flushMs: number;
  readonly #instance: string;
  readonly #onFlush: UsageLedgerOptions['onFlush'];
  #current: Batch = newBatch();
  #pending: Batch | undefined;
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> | undefined;
  readonly #spoolDir: string | undefined;
  readonly #log: (line: string) => void;

  constructor(options: UsageLedgerOptions) {
    this.#db = options.db;
    this.#flushMs = options.flushMs ?? DEFAULTS.usageFlushMs;
    this.#instance = options.instance ?? `${hostname()}:${process.pid}`;
    this.#onFlush = options.onFlush;
    this.#spoolDir = options.spoolDir;
    this.#log = options.log ?? (() => {});
  }

  /** Starts flushing every interval; counts a stopped proxy spooled are added first, and retried with every flush until they land. */
  async start(): Promise<void> {
    await this.replaySpool();
    this.#timer = setInterval(() => void this.flush().then(() => this.replaySpool()), this.#flushMs);
    this.#timer.unref();
  }

  /**
   * Adds spooled batches to PostgreSQL. Each keeps its flush id, so a batch
   * that landed before (or that another proxy replayed) adds nothing twice.
   */
  async replaySpool(): Promise<void> {
    if (!this.#spoolDir) return;
    const files = await readdir(this.#spoolDir).catch(() => [] as string[]);
    for (const file of files.filter((f) => f.endsWith('.json'))) {
      const path = join(this.#spoolDir, file);
      try {
        const batch = fromJson(await readFile(path, 'utf8'));
        const result = await writeBatch(this.#db, batch, this.#instance);
        await rm(path, { force: true });
        this.#log(`usage: added the counts spooled in ${path} (${result === 'ok' ? 'new' : 'already there'})`);
      } catch (err) {
        this.#log(`usage: spooled counts in ${path} not added yet, kept: ${(err as Error).message}`);
      }
    }
  }

  /**
   * Counts one request: the route row (feature '') and one row per feature, under the class of the status
   * the client got (`CLIENT_CLOSED`, 499, for a client that left first).
   */
  record({ route, backend, service, status, features, userAgent, at = Date.now() }: UsageEvent): void {
    const bucket = at - (at % 3_600_000);
    const agent = (userAgent ?? '').slice(0, 160) || '(none)';
    const statusClass = classOf(status);
    this.#count(bucket, route, '', backend, service, statusClass, agent, at);
    for (const feature of features) this.#count(bucket, route, feature, backend, service, statusClass, agent, at);
  }

  #count(
    bucket: number,
    route: string,
    feature: string,
    backend: string,
    service: string,
    statusClass: StatusClass,
    agent: string,
    at: number,
  ): void {
    const batch = this.#current;
    let keys = this.#keysOf(bucket, route, feature);
    let key = keys.row(backend, service, statusClass);
    let count = batch.counts.get(key);
    if (!count && batch.counts.size >= MAX_ROWS && feature !== '') {
      keys = this.#keysOf(bucket, route, 'other');
      key = keys.row(backend, service, statusClass);
      count = batch.counts.get(key);
    }
    if (!count) batch.counts.set(key, (count = { requests: 0, lastSeen: at }));
    count.requests++;
    if (at > count.lastSeen) count.lastSeen = at;
    let agents = batch.agents.get(keys.agents);
    if (!agents) batch.agents.set(keys.agents, (agents = new Map()));
    const name = agents.has(agent) || agents.size < MAX_AGENTS ? agent : 'other';
    agents.set(name, (agents.get(name) ?? 0) + 1);
  }

  // The batch keys of each hour, route and feature, built once rather than as strings on every request.
  #keys: { bucket: number; byRoute: Map<string, Map<string, BatchKeys>> } = { bucket: -1, byRoute: new Map() };

  #keysOf(bucket: number, route: string, feature: string): BatchKeys {
    if (this.#keys.bucket !== bucket) this.#keys = { bucket, byRoute: new Map() };
    let byFeature = this.#keys.byRoute.get(route);
    if (!byFeature) this.#keys.byRoute.set(route, (byFeature = new Map()));
    let keys = byFeature.get(feature);
    if (!keys) byFeature.set(feature, (keys = new BatchKeys(bucket, route, feature)));
    return keys;
  }

  /** Writes what has been counted; a failed batch is kept and retried first next time. Never throws. */
  flush(): Promise<void> {
    this.#flushing ??= this.#flush().finally(() => {
      this.#flushing = undefined;
    });
    return this.#flushing;
  }

  async #flush(): Promise<void> {
    if (!this.#pending) {
      if (this.#current.counts.size === 0) return;
      this.#pending = this.#current;
      this.#current = newBatch();
    }
    const batch = this.#pending;
    try {
      const result = await writeBatch(this.#db, batch, this.#instance);
      this.#pending = undefined;
      this.#onFlush?.(result);
    } catch (err) {
      this.#onFlush?.('failed', err as Error);
    }
  }

  /**
   * Stops the timer and flushes what is left (a proxy's drain calls this).
   * When PostgreSQL cannot take them, the counts go to the spool folder, so
   * the last minute of evidence is never lost.
   */
  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    await this.flush();
    // A batch taken before a failed flush may still be pending, with newer counts behind it.
    if (this.#pending || this.#current.counts.size > 0) await this.flush();
    const left = [this.#pending, this.#current].filter((b): b is Batch => b !== undefined && b.counts.size > 0);
    if (left.length === 0) return;
    if (!this.#spoolDir) {
      this.#log(`usage: ${left.length} batch(es) of counts could not be written and are lost (no spool folder)`);
      return;
    }
    await mkdir(this.#spoolDir, { recursive: true });
    for (const batch of left) {
      const path = join(this.#spoolDir, `${batch.id}.json`);
      await writeFile(`${path}.tmp`, toJson(batch), { mode: 0o600 });
      await rename(`${path}.tmp`, path);
      this.#log(`usage: PostgreSQL could not take the last counts; spooled them to ${path} for the next start`);
    }
    this.#pending = undefined;
    this.#current = newBatch();
  }

  /** Requests counted and not yet in PostgreSQL, per route and backend, in hours starting at or after `fromBucket` (ms). */
  unflushedByRoute(fromBucket: number): Map<string, { backends: Record<string, number>; lastSeen: number }> {
    const out = new Map<string, { backends: Record<string, number>; lastSeen: number }>();
    for (const batch of [this.#pending, this.#current]) {
      for (const [key, count] of batch?.counts ?? []) {
        const [bucket, route, feature, backend] = key.split('\u0000') as [string, string, string, string];
        if (feature !== '' || Number(bucket) < fromBucket) continue;
        const entry = out.get(route) ?? { backends: {}, lastSeen: 0 };
        entry.backends[backend] = (entry.backends[backend] ?? 0) + count.requests;
        entry.lastSeen = Math.max(entry.lastSeen, count.lastSeen);
        out.set(route, entry);
      }
    }
    return out;
  }
}

function toJson(batch: Batch): string {
  return JSON.stringify({ id: batch.id, counts: [...batch.counts], agents: [...batch.agents].map(([k, m]) => [k, [...m]]) });
}

function fromJson(text: string): Batch {
  const raw = JSON.parse(text) as { id: string; counts: [string, Count][]; agents: [string, [string, number][]][] };
  if (typeof raw.id !== 'string' || !Array.isArray(raw.counts) || !Array.isArray(raw.agents)) throw new Error('not a spooled usage batch');
  return { id: raw.id, counts: new Map(raw.counts), agents: new Map(raw.agents.map(([k, m]) => [k, new Map(m)])) };
}

function newBatch(): Batch {
  return { id: randomUUID(), counts: new Map(), agents: new Map() };
}

/** The service of counts kept before services were: the two-backend world's names. */
function serviceOfBackend(backend: string): string {
  return backend === 'new' ? 'app' : backend;
}

/** One flush, one transaction: the flush id first, so a batch that already landed adds nothing. */
async function writeBatch(db: Kysely<BanyanDatabase>, batch: Batch, instance: string): Promise<'ok' | 'duplicate'> {
  return db.transaction().execute(async (trx) => {
    const claimed = await trx
      .insertInto('usage_flushes')
      .values({ flush_id: batch.id, instance })
      .onConflict((oc) => oc.column('flush_id').doNothing())
      .returning('flush_id')
      .executeTakeFirst();
    if (!claimed) return 'duplicate';
    const rows = [...batch.counts].map(([key, c]) => {
      // Batches spooled before status classes were kept have four parts, before services five.
      const [bucket, route, feature, backend, statusClass = 'unknown', service = serviceOfBackend(backend)] = key.split('\u0000') as [
        string,
        string,
        string,
        string,
        string?,
        string?,
      ];
      return {
        bucket: new Date(Number(bucket)),
        route,
        feature,
        backend,
        service,
        status_class: statusClass,
        requests: String(c.requests),
        last_seen: new Date(c.lastSeen),
      };
    });
    for (let i = 0; i < rows.length; i += 1000) {
      await trx
        .insertInto('usage_ledger')
        .values(rows.slice(i, i + 1000))
        .onConflict((oc) =>
          oc.columns(['bucket', 'route', 'feature', 'backend', 'status_class', 'service']).doUpdateSet({
            requests: sql`usage_ledger.requests + excluded.requests`,
            last_seen: sql`greatest(usage_ledger.last_seen, excluded.last_seen)`,
          }),
        )
        .execute();
    }
    const agents = [...batch.agents].flatMap(([key, map]) => {
      const [bucket, route, feature] = key.split('\u0000') as [string, string, string];
      return [...map].map(([userAgent, n]) => ({
        bucket: new Date(Number(bucket)),
        route,
        feature,
        user_agent: userAgent,
        requests: String(n),
      }));
    });
    for (let i = 0; i < agents.length; i += 1000) {
      await trx
        .insertInto('usage_user_agents')
        .values(agents.slice(i, i + 1000))
        .onConflict((oc) =>
          oc.columns(['bucket', 'route', 'feature', 'user_agent']).doUpdateSet({
            requests: sql`usage_user_agents.requests + excluded.requests`,
          }),
        )
        .execute();
    }
    return 'ok';
  });
}
