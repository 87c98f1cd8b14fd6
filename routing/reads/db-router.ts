import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import { BanyanError } from '../../lib/errors.js';
import type { Database } from '../../lib/schema.js';
import { Breaker, BreakerOpenError } from '../../lib/breaker.js';
import { connect, isConnectionError, redactUrl } from '../../lib/database.js';
import { parseLsn } from '../../lib/lsn.js';

/** Why a request's reads went where they went (a metric label). */
export type ReadReason = 'no_fence' | 'fence_met' | 'fence_wait' | 'pinned' | 'lagging' | 'replica_down' | 'no_replica' | 'primary_busy';

/** What a request must see: everything up to `minLsn`, or (a timed pin) the primary. */
export interface ReadFence {
  readonly minLsn?: bigint | undefined;
  readonly primary?: boolean | undefined;
}

/** Where one request's reads go, and why. */
export interface RequestDb {
  /** Reads: one chosen server for the whole request, so a request never mixes replicas. */
  readonly reader: Kysely<Database>;
  /** Writes and transactions: always the primary. */
  readonly writer: Kysely<Database>;
  /** `primary` or `replica-N` (1-based), for headers, logs and metrics. */
  readonly readTarget: string;
  readonly reason: ReadReason;
  /**
   * Runs reads on `reader`; if that replica cannot be reached, marks it down
   * and runs them again on the primary, so the user sees no error.
   */
  read<T>(fn: (db: Kysely<Database>) => Promise<T>): Promise<T>;
}

export interface DbRouterOptions {
  readonly primaryUrl: string;
  readonly replicaUrls: readonly string[];
  readonly poolSize?: number;
  readonly name?: string;
  /** How often the monitor reads each server's WAL position (never per request). */
  readonly monitorIntervalMs?: number;
  /** A replica further behind than this (bytes or seconds) serves no reads. */
  readonly maxLagBytes?: number;
  readonly maxLagSeconds?: number;
  /** How long a fenced read may wait for a replica to catch up before going to the primary. */
  readonly fenceWaitMs?: number;
  /**
   * With every replica out of the normal limits, unpinned reads go to the
   * primary; beyond this many at once they use the least-lagged reachable
   * replica instead, if it is within `staleReadLimitSeconds`, so an outage
   * does not pile every read onto the writer.
   */
  readonly maxPrimaryReads?: number | undefined;
  readonly staleReadLimitSeconds?: number;
  /** Among replicas that qualify: take turns, or the one with the fewest reads running. */
  readonly choice?: 'round-robin' | 'least-in-flight';
}

/** What the monitor last saw of one replica. */
export interface ReplicaState {
  readonly name: string;
  healthy: boolean;
  replayLsn: bigint | undefined;
  lagBytes: number;
  lagSeconds: number;
  checkedAt: number;
  error: string | undefined;
}

interface Server {
  readonly name: string;
  readonly url: string;
  readonly db: Kysely<Database>;
}

/**
 * Sends reads to streaming replicas and writes to the primary, without ever
 * showing a request older data than its fence. A background monitor reads
 * each replica's replay position every interval (one query per server,
 * whatever the traffic); choosing a replica for a request is then a
 * comparison of numbers, with no I/O.
 */
export class DbRouter {
  readonly primary: Server;
  readonly replicas: readonly Server[];
  readonly states: readonly ReplicaState[];
  primaryLsn: bigint | undefined;
  readonly #options: DbRouterOptions;
  readonly #probes: pg.Client[] = [];
  #timer: NodeJS.Timeout | undefined;
  #ticking = false;
  #next = 0;
  #primaryReads = 0;
  readonly #inFlight: number[];
  #waiters: (() => void)[] = [];
  readonly #breakers: Breaker[];

  constructor(options: DbRouterOptions) {
    this.#options = options;
    const max = options.poolSize ?? 10;
    const app = options.name ?? 'banyan';
    this.primary = { name: 'primary', url: options.primaryUrl, db: connect(options.primaryUrl, { max, name: app }) };
    this.replicas = options.replicaUrls.map((url, i) => ({ name: `replica-${i + 1}`, url, db: connect(url, { max, name: app }) }));
    // One breaker per replica: repeated connection failures take it out of rotation at once.
    this.#breakers = this.replicas.map(() => new Breaker({ errorThresholdPercentage: 50, volumeThreshold: 3, resetTimeoutMs: 2_000, rollingWindowMs: 10_000 }));
    this.#inFlight = this.replicas.map(() => 0);
    this.states = this.replicas.map((r) => ({
      name: r.name, healthy: false, replayLsn: undefined, lagBytes: 0, lagSeconds: 0, checkedAt: 0, error: 'not checked yet',
    }));
  }

  /** Verifies the URLs, takes a first reading, and starts the monitor. */
  async start(): Promise<void> {
    await this.verify();
    await this.tick();
    this.#timer = setInterval(() => { void this.tick(); }, this.#options.monitorIntervalMs ?? 100);
    this.#timer.unref();
  }

  /**
   * The handle one request uses for all its queries. Reads go to a healthy
   * replica within the lag limits that has replayed the fence, else (after an
   * optional bounded wait) to the primary.
   */
  async forRequest(fence: ReadFence = {}): Promise<RequestDb> {
    const pick = (reason: ReadReason, server: Server): RequestDb => {
      const index = this.replicas.indexOf(server);
      return {
        reader: server.db, writer: this.primary.db, readTarget: server.name, reason,
        read: index < 0 ? (fn) => this.#readOnPrimary(fn, fence.minLsn) : (fn) => this.#readOnReplica(index, fn),
      };
    };
    if (this.replicas.length === 0) return pick('no_replica', this.primary);
    if (fence.primary) return pick('pinned', this.primary);
    const usable = this.#usable();
    if (usable.length === 0) {
      const overflow = fence.minLsn === undefined && this.#primaryReads >= (this.#options.maxPrimaryReads ?? Infinity) ? this.#leastLagged() : undefined;
      if (overflow) return pick('primary_busy', overflow);
      return pick(this.states.some((s) => s.healthy) ? 'lagging' : 'replica_down', this.primary);
    }
    if (fence.minLsn === undefined) return pick('no_fence', this.#roundRobin(usable));
    const caughtUp = usable.filter((i) => this.states[i]!.replayLsn! >= fence.minLsn!);
    if (caughtUp.length) return pick('fence_met', this.#roundRobin(caughtUp));
    const wait = this.#options.fenceWaitMs ?? 0;
    if (wait > 0) {
      const deadline = Date.now() + wait;
      while (Date.now() < deadline) {
        await this.#nextReading(deadline - Date.now());
        const ready = this.#usable().filter((i) => this.states[i]!.replayLsn! >= fence.minLsn!);
        if (ready.length) return pick('fence_wait', this.#roundRobin(ready));
      }
    }
    return pick('pinned', this.primary);
  }

  /**
   * Reads on the primary. When it cannot be reached and the read has a fence, a replica that has replayed
   * the fence by now (asked now, not from the monitor's last reading, which may predate the primary's
   * death) answers instead: it holds the user's write, so the answer is as correct as the primary's.
   */
  async #readOnPrimary<T>(fn: (db: Kysely<Database>) => Promise<T>, minLsn?: bigint): Promise<T> {
    this.#primaryReads++;
    try {
      return await fn(this.primary.db);
    } catch (err) {
      if (minLsn === undefined || !isConnectionError(err)) throw err;
      const rescuer = await this.#replicaAtLeast(minLsn);
      if (rescuer === undefined) throw err;
      this.primaryDownRescues++;
      return await this.#readOnReplica(rescuer, fn);
    } finally {
      this.#primaryReads--;
    }
  }

  /** A replica whose replay position, asked now, has reached `lsn`. */
  async #replicaAtLeast(lsn: bigint): Promise<number | undefined> {
    for (const [i, replica] of this.replicas.entries()) {
      if (this.#breakers[i]!.state === 'open') continue;
      try {
        const r = await sql<{ lsn: string | null }>`SELECT pg_last_wal_replay_lsn()::text AS lsn`.execute(replica.db);
        const replayed = parseLsn(r.rows[0]?.lsn ?? '');
        if (replayed !== undefined && replayed >= lsn) return i;
      } catch {
        // This one is unreachable too.
      }
    }
    return undefined;
  }

  /** Fenced reads the primary could not serve that a replica which had replayed the fence answered. */
  primaryDownRescues = 0;

  /** The reachable replica furthest along, if within the staleness limit (for overflow reads). */
  #leastLagged(): Server | undefined {
    const limit = this.#options.staleReadLimitSeconds ?? 300;
    let best: number | undefined;
    this.states.forEach((s, i) => {
      if (!s.healthy || this.#breakers[i]!.state === 'open' || s.replayLsn === undefined || s.lagSeconds > limit) return;
      if (best === undefined || s.replayLsn > this.states[best]!.replayLsn!) best = i;
    });
    return best === undefined ? undefined : this.replicas[best];
  }

  async #readOnReplica<T>(index: number, fn: (db: Kysely<Database>) => Promise<T>, retryConflict = true): Promise<T> {
    this.#inFlight[index]!++;
    try {
      const breaker = this.#breakers[index]!;
      if (!breaker.admit()) throw new BreakerOpenError();
      try {
        const result = await fn(this.replicas[index]!.db);
        breaker.succeeded();
        return result;
      } catch (err) {
        // Only a failure to reach the replica counts against it; a query's own error says nothing of its health.
        if (isConnectionError(err)) breaker.failed();
        else breaker.succeeded();
        throw err;
      }
    } catch (err) {
      if (retryConflict && isRecoveryConflict(err)) {
        // The standby cancelled the query to replay WAL that conflicted with it (a lock, a vacuum): the
        // replica is fine and the read is safe to run again, on a server at least as far along.
        this.recoveryConflictRetries++;
        const other = this.#atLeastAsFresh(index);
        return other === undefined ? this.#readOnPrimary(fn) : this.#readOnReplica(other, fn, false);
      }
      const open = err instanceof BreakerOpenError;
      if (!open && !isConnectionError(err)) throw err;
      // Out until the monitor sees it answer again.
      const state = this.states[index]!;
      state.healthy = false;
      state.error = open ? 'circuit breaker open' : (err as Error).message;
      this.readRetries++;
      return this.#readOnPrimary(fn);
    } finally {
      this.#inFlight[index]!--;
    }
  }

  /** Reads that a replica failed and the primary answered instead. */
  readRetries = 0;
  /** Reads a standby cancelled for a recovery conflict and another server answered. */
  recoveryConflictRetries = 0;

  /**
   * Another usable replica that has replayed at least as much as replica `index` had (so it meets any fence
   * that one met), preferring the fewest reads running; undefined sends the read to the primary.
   */
  #atLeastAsFresh(index: number): number | undefined {
    const floor = this.states[index]!.replayLsn;
    let best: number | undefined;
    for (const i of this.#usable()) {
      if (i === index || floor === undefined || this.states[i]!.replayLsn! < floor) continue;
      if (best === undefined || this.#inFlight[i]! < this.#inFlight[best]!) best = i;
    }
    return best;
  }

  /** The primary's current WAL position: a fence for whatever was just committed. */
  async currentLsn(): Promise<bigint> {
    const r = await sql<{ lsn: string }>`SELECT pg_current_wal_lsn()::text AS lsn`.execute(this.primary.db);
    return parseLsn(r.rows[0]!.lsn)!;
  }

  #usable(): number[] {
    const maxBytes = this.#options.maxLagBytes ?? 64 * 1024 * 1024;
    const maxSeconds = this.#options.maxLagSeconds ?? 30;
    const out: number[] = [];
    this.states.forEach((s, i) => {
      if (s.healthy && this.#breakers[i]!.state !== 'open' && s.replayLsn !== undefined && s.lagBytes <= maxBytes && s.lagSeconds <= maxSeconds) out.push(i);
    });
    return out;
  }

  #roundRobin(indexes: number[]): Server {
    if (this.#options.choice === 'least-in-flight' && indexes.length > 1) {
      let best = indexes[0]!;
      for (const i of indexes) if (this.#inFlight[i]! < this.#inFlight[best]!) best = i;
      return this.replicas[best]!;
    }
    return this.replicas[indexes[this.#next++ % indexes.length]!]!;
  }

  #nextReading(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, Math.max(1, timeoutMs));
      this.#waiters.push(() => { clearTimeout(timer); resolve(); });
    });
  }

  /** One monitor reading of every server (exposed so tests need not wait for the interval). */
  async tick(): Promise<void> {
    if (this.#ticking) return;
    this.#ticking = true;
    try {
      const primary = await this.#probe(0, this.primary.url, 'SELECT pg_current_wal_lsn()::text AS lsn');
      if (primary.ok) this.primaryLsn = parseLsn(primary.row['lsn'] as string);
      await Promise.all(this.replicas.map(async (replica, i) => {
        const state = this.states[i]!;
        const r = await this.#probe(i + 1, replica.url, `SELECT pg_last_wal_replay_lsn()::text AS lsn,
          COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)::float8 AS seconds`);
        state.checkedAt = Date.now();
        if (!r.ok) {
          state.healthy = false;
          state.error = r.error;
          return;
        }
        const lsn = parseLsn(String(r.row['lsn']));
        state.healthy = lsn !== undefined;
        state.error = lsn === undefined ? 'not a streaming replica (no replay position)' : undefined;
        state.replayLsn = lsn;
        const behind = lsn !== undefined && this.primaryLsn !== undefined && this.primaryLsn > lsn ? Number(this.primaryLsn - lsn) : 0;
        state.lagBytes = behind;
        // The last replayed transaction's age is lag only while WAL is waiting: an idle, caught-up replica is not behind.
        state.lagSeconds = behind > 0 ? Number(r.row['seconds']) : 0;
      }));
    } finally {
      this.#ticking = false;
      const waiters = this.#waiters;
      this.#waiters = [];
      for (const wake of waiters) wake();
    }
  }

  async #probe(slot: number, url: string, text: string): Promise<{ ok: true; row: Record<string, unknown> } | { ok: false; error: string }> {
    let client = this.#probes[slot];
    try {
      if (!client) {
        client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1_000, statement_timeout: 1_000, application_name: 'banyan-monitor' });
        client.on('error', () => {});
        this.#probes[slot] = client;
        await client.connect();
      }
      const r = await client.query(text);
      return { ok: true, row: r.rows[0] as Record<string, unknown> };
    } catch (err) {
      // A broken connection is replaced at the next reading.
      delete this.#probes[slot];
      void client?.end().catch(() => {});
      return { ok: false, error: (err as Error).message };
    }
  }

  /**
   * Checks that each URL points where it claims: the primary accepts writes
   * and every replica is a standby in recovery. A swapped pair of URLs would
   * otherwise send writes to a read-only server, or "replica" reads to the primary.
   */
  async verify(): Promise<void> {
    const inRecovery = async (server: Server): Promise<boolean> => {
      try {
        const r = await sql<{ standby: boolean }>`SELECT pg_is_in_recovery() AS standby`.execute(server.db);
        return r.rows[0]?.standby === true;
      } catch (err) {
        throw new BanyanError('database-unreachable',
          `cannot reach the ${server.name} at ${redactUrl(server.url)}: ${(err as Error).message}`,
          server.name === 'primary' ? 'check DATABASE_URL' : 'check DATABASE_REPLICA_URLS', { cause: err });
      }
    };
    if (await inRecovery(this.primary)) {
      throw new BanyanError('primary-is-standby', `DATABASE_URL (${redactUrl(this.primary.url)}) is a standby in recovery, not the primary`,
        'point DATABASE_URL at the primary');
    }
    for (const replica of this.replicas) {
      if (!(await inRecovery(replica))) {
        throw new BanyanError('replica-not-standby', `${replica.name} (${redactUrl(replica.url)}) is not a standby: it is not in recovery`,
          'list only streaming replicas in DATABASE_REPLICA_URLS');
      }
    }
  }

  /** Stops the monitor and closes every pool. */
  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    for (const breaker of this.#breakers) breaker.shutdown();
    await Promise.all(this.#probes.map((c) => c?.end().catch(() => {})));
    await Promise.all([this.primary, ...this.replicas].map((s) => s.db.destroy()));
  }
}

/**
 * Whether a standby cancelled a query to replay conflicting WAL: "canceling statement due to conflict with
 * recovery" is SQLSTATE 40001 (40P01 for a buffer-pin deadlock). A read-only standby raises no other 40001.
 */
export function isRecoveryConflict(err: unknown): boolean {
  const code = (err as { code?: string } | undefined)?.code;
  return code === '40001' || code === '40P01';
}

/** Reads `X-Banyan-Min-LSN`: an LSN, or `primary` for a timed pin. Anything else is no fence. */
export function fenceFromHeader(value: string | string[] | undefined): ReadFence {
  if (typeof value !== 'string') return {};
  if (value === 'primary') return { primary: true };
  const lsn = parseLsn(value);
  return lsn === undefined ? {} : { minLsn: lsn };
}

