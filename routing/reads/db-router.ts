import { sql, type Kysely } from 'kysely';
import { BanyanError } from '../../lib/errors.js';
import { Breaker, BreakerOpenError } from '../../lib/breaker.js';
import { currentPosition, isConnectionError, redactUrl, splitUrls } from '../../lib/database.js';
import { expandNodes, resolveHost } from '../../lib/db-discovery.js';
import { DbNodes, type DbNodeConfig } from '../../lib/db-nodes.js';
import { formatLsn, parseLsn, parseTimeline, REACHED_POSITION_SQL, type WalPosition } from '../../lib/lsn.js';
import { noteReadChoice, retryingRead } from '../../lib/request-scope.js';
import {
  chooseReader,
  usableReplicas,
  type ChoiceInput,
  type ChoicePolicy,
  type ReadReason,
  type ReplicaReading,
} from './replica-choice.js';
import { fenceOnTimeline, parseTimelineHistory, type TimelineSwitch } from './timelines.js';
import { DEFAULTS } from '../../lib/config.js';

export type { ReadReason } from './replica-choice.js';

/** What a request must see: everything up to `minLsn` (written on `timeline`, when known), or (a timed pin) the primary. */
export interface ReadFence {
  readonly minLsn?: bigint | undefined;
  readonly timeline?: number | undefined;
  readonly primary?: boolean | undefined;
}

/**
 * Called after each read of a request with the position of the server that answered it, asked once the read
 * has finished: the read saw nothing past it. Monotonic reads raise the session's floor to it.
 */
export type ReadObserver = (position: WalPosition) => void;

/** Where one request's reads go, and why. */
export interface RequestDb<DB = unknown> {
  /** Reads: one chosen server for the whole request, so a request never mixes replicas. */
  readonly reader: Kysely<DB>;
  /** Writes and transactions: always the primary. */
  readonly writer: Kysely<DB>;
  /** `primary` or `replica-N` (1-based), for headers, logs and metrics. */
  readonly readTarget: string;
  readonly reason: ReadReason;
  /**
   * Runs reads on `reader`; if that replica cannot be reached, marks it down
   * and runs them again on the primary, so the user sees no error.
   */
  read<T>(fn: (db: Kysely<DB>) => Promise<T>): Promise<T>;
}

export interface DbRouterOptions {
  /**
   * DATABASE_URL: the primary, or a comma list of every server whatever its role. Roles are asked
   * (`pg_is_in_recovery()`), never taken from the list, so writes follow a promotion with no restart.
   */
  readonly primaryUrl: string;
  /** DATABASE_REPLICA_URLS: more servers (named `replica-N`), asked like the others. */
  readonly replicaUrls?: readonly string[] | undefined;
  readonly poolSize?: number;
  readonly name?: string;
  /** How often the monitor reads each server's role and WAL position (never per request). */
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
  /**
   * How often host names in the URLs are resolved again (0: never): a name with several addresses is a
   * server per address, so replicas behind a DNS name come and go with it.
   */
  readonly resolveEveryMs?: number | undefined;
  /** Finds the servers instead of resolving the URLs' names (a service registry, or a test). */
  readonly discover?: (() => Promise<readonly DbNodeConfig[]>) | undefined;
  /** How long a server no longer found keeps its pool open for the reads already sent to it. */
  readonly drainMs?: number | undefined;
  /**
   * How long a query waits for its server's answer before the server counts as unreachable (a read then
   * goes to another server; a write fails as with the primary down). Default: the statement timeout + 1 s.
   */
  readonly answerTimeoutMs?: number | undefined;
}

/** What the monitor last saw of one server as a replica. */
export interface ReplicaState {
  readonly name: string;
  healthy: boolean;
  replayLsn: bigint | undefined;
  lagBytes: number;
  lagSeconds: number;
  checkedAt: number;
  error: string | undefined;
}

interface Server<DB> {
  readonly name: string;
  readonly url: string;
  readonly db: Kysely<DB>;
}

/** The servers a router is given, named: DATABASE_URL's entries `db-N`, DATABASE_REPLICA_URLS' `replica-N`. */
export function routerNodes(primaryUrl: string, replicaUrls: readonly string[] = []): DbNodeConfig[] {
  return [
    ...splitUrls(primaryUrl).map((url, i) => ({ name: `db-${i + 1}`, url })),
    ...replicaUrls.map((url, i) => ({ name: `replica-${i + 1}`, url })),
  ];
}

/**
 * Sends reads to streaming replicas and writes to the primary, without ever
 * showing a request older data than its fence. A background monitor asks
 * every server its role and WAL position each interval (one query per
 * server, whatever the traffic); choosing a replica for a request is then a
 * comparison of numbers, with no I/O. Roles come from the servers, so a
 * promoted replica takes the writes and a demoted or unreachable server
 * stops serving reads, with no restart.
 */
export class DbRouter<DB = unknown> {
  /** Every server, whatever its role now. */
  readonly nodes: DbNodes<DB>;
  primaryLsn: bigint | undefined;
  /** The primary's timeline by the last reading. */
  primaryTimeline: number | undefined;
  /** Each timeline's history as read from its primary (undefined: not readable there). */
  readonly #histories = new Map<number, { switches: readonly TimelineSwitch[] | undefined; at: number }>();
  readonly #lost = new Set<string>();
  readonly #options: DbRouterOptions;
  readonly #states: ReplicaState[];
  #timer: NodeJS.Timeout | undefined;
  #ticking = false;
  #next = 0;
  readonly #policy: ChoicePolicy;
  #primaryReads = 0;
  readonly #inFlight: number[];
  #waiters: (() => void)[] = [];
  readonly #breakers: Breaker[];

  constructor(options: DbRouterOptions) {
    this.#options = options;
    this.#policy = {
      maxLagBytes: options.maxLagBytes ?? DEFAULTS.maxReplicaLagBytes,
      maxLagSeconds: options.maxLagSeconds ?? DEFAULTS.maxReplicaLagMs / 1000,
      staleReadLimitSeconds: options.staleReadLimitSeconds ?? 300,
      spread: options.choice ?? 'round-robin',
    };
    const configured = routerNodes(options.primaryUrl, options.replicaUrls);
    const resolveEveryMs = options.resolveEveryMs ?? DEFAULTS.dbResolveMs;
    const discover = options.discover ?? (resolveEveryMs > 0 ? () => expandNodes(configured, resolveHost) : undefined);
    this.nodes = new DbNodes<DB>({
      nodes: configured,
      poolSize: options.poolSize,
      name: options.name,
      discover,
      discoverEveryMs: options.discover ? options.resolveEveryMs : resolveEveryMs,
      drainMs: options.drainMs,
      answerTimeoutMs: options.answerTimeoutMs,
    });
    this.#breakers = [];
    this.#inFlight = [];
    this.#states = [];
    this.#track();
    this.nodes.onAdded(() => this.#track());
  }

  /** Per-server bookkeeping for servers discovery added. */
  #track(): void {
    for (let i = this.#states.length; i < this.nodes.nodes.length; i++) {
      // One breaker per server: repeated connection failures take a replica out of rotation at once.
      this.#breakers.push(
        new Breaker({ errorThresholdPercentage: 50, volumeThreshold: 3, resetTimeoutMs: 2_000, rollingWindowMs: 10_000 }),
      );
      this.#inFlight.push(0);
      this.#states.push({
        name: this.nodes.nodes[i]!.name,
        healthy: false,
        replayLsn: undefined,
        lagBytes: 0,
        lagSeconds: 0,
        checkedAt: 0,
        error: 'not checked yet',
      });
    }
  }

  /** Writes (and reads that must see everything): whichever server is the primary now. */
  get primary(): Server<DB> {
    return { name: 'primary', url: this.nodes.primary?.url ?? '', db: this.nodes.writer };
  }

  /** The servers that are streaming replicas by the last reading. */
  get replicas(): readonly Server<DB>[] {
    return this.nodes.roles.replicas.map((i) => this.nodes.nodes[i]!);
  }

  /** What the monitor last saw of each replica (in the order of `replicas`). */
  get states(): readonly ReplicaState[] {
    return this.nodes.roles.replicas.map((i) => this.#states[i]!);
  }

  /** Verifies the servers, takes a first reading, and starts the monitor. */
  async start(): Promise<void> {
    await this.verify();
    await this.tick();
    this.#timer = setInterval(() => {
      void this.tick();
    }, this.#options.monitorIntervalMs ?? DEFAULTS.replicaPollMs);
    this.#timer.unref();
  }

  /**
   * The handle one request uses for all its queries. Reads go to a healthy
   * replica within the lag limits that has replayed the fence, else (after an
   * optional bounded wait) to the primary.
   */
  async forRequest(fence: ReadFence = {}, observe?: ReadObserver): Promise<RequestDb<DB>> {
    const writer = this.nodes.writer;
    const pick = (reason: ReadReason, index: number | 'primary'): RequestDb<DB> => {
      // A replica marked down after it was chosen (by this request's earlier read, or another's) gets none
      // of the request's later reads: each would wait out the answer timeout before going to the primary.
      const run = <T>(fn: (db: Kysely<DB>) => Promise<T>) =>
        index === 'primary' || !this.#states[index]!.healthy ? this.#readOnPrimary(fn, fence.minLsn) : this.#readOnReplica(index, fn);
      const read = observe ? <T>(fn: (db: Kysely<DB>) => Promise<T>) => this.#observed(run, fn, observe) : run;
      const chosen: RequestDb<DB> =
        index === 'primary'
          ? { reader: writer, writer, readTarget: 'primary', reason, read }
          : { reader: this.nodes.nodes[index]!.db, writer, readTarget: this.nodes.nodes[index]!.name, reason, read };
      // For the request's spans and query log lines (a no-op unless they are on).
      noteReadChoice(chosen.readTarget, reason);
      return chosen;
    };
    let fenceOnOldTimeline = false;
    if (!fence.primary && fence.minLsn !== undefined && fence.timeline !== undefined) {
      const verdict = fenceOnTimeline(
        { minLsn: fence.minLsn, timeline: fence.timeline },
        this.primaryTimeline,
        this.primaryTimeline === undefined ? undefined : this.#histories.get(this.primaryTimeline)?.switches,
      );
      if (verdict.kind === 'primary') {
        if (verdict.lost) this.#countLost(fence.minLsn, fence.timeline);
        fenceOnOldTimeline = true;
      }
    }
    const wait = this.#options.fenceWaitMs ?? DEFAULTS.fenceWaitMs;
    const choose = (phase: ChoiceInput['phase']) => {
      const choice = chooseReader(
        {
          serverCount: this.nodes.nodes.length,
          replicas: this.#readings(),
          fence,
          fenceOnOldTimeline,
          primaryBusy: this.#primaryReads >= (this.#options.maxPrimaryReads ?? Infinity),
          turn: this.#next,
          phase,
          mayWait: wait > 0,
        },
        this.#policy,
      );
      if (choice.kind === 'read' && choice.tookTurn) this.#next++;
      return choice;
    };
    let choice = choose('first');
    if (choice.kind === 'wait') {
      const deadline = Date.now() + wait;
      while (choice.kind === 'wait' && Date.now() < deadline) {
        await this.#nextReading(deadline - Date.now());
        choice = choose('waiting');
      }
      if (choice.kind === 'wait') choice = choose('last');
    }
    // `last` never waits.
    if (choice.kind === 'wait') throw new Error('replica choice asked to wait after the wait');
    return pick(choice.reason, choice.target);
  }

  /**
   * Reads on the primary. When it cannot be reached and the read has a fence, a replica that has replayed
   * the fence by now (asked now, not from the monitor's last reading, which may predate the primary's
   * death) answers instead: it holds the user's write, so the answer is as correct as the primary's.
   */
  async #readOnPrimary<T>(fn: (db: Kysely<DB>) => Promise<T>, minLsn?: bigint): Promise<T> {
    this.#primaryReads++;
    try {
      return await fn(this.nodes.writer);
    } catch (err) {
      if (minLsn === undefined || !isConnectionError(err)) throw err;
      const rescuer = await this.#replicaAtLeast(minLsn);
      if (rescuer === undefined) throw err;
      this.primaryDownRescues++;
      return await retryingRead('primary_down_retry', () => this.#readOnReplica(rescuer, fn));
    } finally {
      this.#primaryReads--;
    }
  }

  /**
   * Runs a read and tells `observe` how far the server that answered it (a retry may have moved it) had got
   * once it finished. If that server cannot say, the primary's position now bounds it (no replica is past
   * the primary); if neither can, nothing is reported.
   */
  async #observed<T>(
    run: (fn: (db: Kysely<DB>) => Promise<T>) => Promise<T>,
    fn: (db: Kysely<DB>) => Promise<T>,
    observe: ReadObserver,
  ): Promise<T> {
    let answered: Kysely<DB> | undefined;
    const result = await run(async (db) => {
      const value = await fn(db);
      answered = db;
      return value;
    });
    const position = await reachedPosition(answered!)
      .catch(() => this.currentPosition())
      .catch(() => undefined);
    if (position) observe(position);
    return result;
  }

  /** A replica whose replay position, asked now, has reached `lsn`. */
  async #replicaAtLeast(lsn: bigint): Promise<number | undefined> {
    for (const i of this.nodes.roles.replicas) {
      if (this.#breakers[i]!.state === 'open') continue;
      try {
        const r = await sql<{ lsn: string | null }>`SELECT pg_last_wal_replay_lsn()::text AS lsn`.execute(this.nodes.nodes[i]!.db);
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

  /**
   * Writes acknowledged on an old primary past the point where its timeline ended: a standby never received
   * them, so the promoted server does not have them. Counted once per fence seen (pin or resource fence).
   */
  lostWrites = 0;

  #countLost(lsn: bigint, timeline: number): void {
    const key = `${timeline}/${formatLsn(lsn)}`;
    if (this.#lost.has(key)) return;
    if (this.#lost.size >= 10_000) this.#lost.clear();
    this.#lost.add(key);
    this.lostWrites++;
  }

  async #readOnReplica<T>(index: number, fn: (db: Kysely<DB>) => Promise<T>, retryConflict = true): Promise<T> {
    this.#inFlight[index]!++;
    try {
      const breaker = this.#breakers[index]!;
      if (!breaker.admit()) throw new BreakerOpenError();
      try {
        const result = await fn(this.nodes.nodes[index]!.db);
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
        return retryingRead('recovery_conflict_retry', () =>
          other === undefined ? this.#readOnPrimary(fn) : this.#readOnReplica(other, fn, false),
        );
      }
      const open = err instanceof BreakerOpenError;
      if (!open && !isConnectionError(err)) throw err;
      // Out until the monitor sees it answer again.
      const state = this.#states[index]!;
      state.healthy = false;
      state.error = open ? 'circuit breaker open' : (err as Error).message;
      this.readRetries++;
      return retryingRead('replica_failed_retry', () => this.#readOnPrimary(fn));
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
    const floor = this.#states[index]!.replayLsn;
    let best: number | undefined;
    for (const { index: i } of usableReplicas(this.#readings(), this.#policy)) {
      if (i === index || floor === undefined || this.#states[i]!.replayLsn! < floor) continue;
      if (best === undefined || this.#inFlight[i]! < this.#inFlight[best]!) best = i;
    }
    return best;
  }

  /** The primary's current WAL position: a fence for whatever was just committed. */
  async currentLsn(): Promise<bigint> {
    return (await this.currentPosition()).lsn;
  }

  /** The primary's current WAL position and timeline, for a fence that a failover cannot mistake. */
  async currentPosition(): Promise<WalPosition> {
    return currentPosition(this.nodes.writer);
  }

  /** Reads the primary's timeline history once per timeline (tried again after a minute if it could not be read). */
  async #readHistory(timeline: number): Promise<void> {
    const known = this.#histories.get(timeline);
    if (timeline <= 1 || (known && (known.switches !== undefined || Date.now() - known.at < 60_000))) return;
    // Until it is read, fences of older timelines go to the primary; one reading at a time.
    this.#histories.set(timeline, { switches: undefined, at: Date.now() });
    let switches: TimelineSwitch[] | undefined;
    try {
      const file = `pg_wal/${timeline.toString(16).toUpperCase().padStart(8, '0')}.history`;
      const r = await sql<{ text: string }>`SELECT pg_read_file(${file}) AS text`.execute(this.nodes.writer);
      switches = parseTimelineHistory(r.rows[0]!.text, parseLsn);
    } catch {
      // Not permitted (pg_read_server_files) or gone: fences of older timelines are read from the primary.
    }
    this.#histories.set(timeline, { switches, at: Date.now() });
  }

  #nextReading(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, Math.max(1, timeoutMs));
      this.#waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** The replicas as the monitor last read them, for `chooseReader`. */
  #readings(): ReplicaReading[] {
    return this.nodes.roles.replicas.map((i) => {
      const s = this.#states[i]!;
      return {
        index: i,
        healthy: s.healthy,
        breakerOpen: this.#breakers[i]!.state === 'open',
        replayLsn: s.replayLsn,
        lagBytes: s.lagBytes,
        lagSeconds: s.lagSeconds,
        inFlight: this.#inFlight[i]!,
      };
    });
  }

  /** One monitor reading of every server (exposed so tests need not wait for the interval). */
  async tick(): Promise<void> {
    if (this.#ticking) return;
    this.#ticking = true;
    try {
      await this.nodes.read();
      const roles = this.nodes.roles;
      const primaryLsn = this.nodes.primary?.reading.lsn;
      if (primaryLsn !== undefined) this.primaryLsn = primaryLsn;
      const timeline = this.nodes.primary?.reading.timeline;
      if (timeline !== undefined) {
        this.primaryTimeline = timeline;
        void this.#readHistory(timeline);
      }
      this.nodes.nodes.forEach((node, i) => {
        const state = this.#states[i]!;
        const r = node.reading;
        state.checkedAt = node.checkedAt;
        state.replayLsn = r.inRecovery ? r.lsn : undefined;
        if (!roles.replicas.includes(i)) {
          state.healthy = false;
          state.lagBytes = 0;
          state.lagSeconds = 0;
          state.error = !r.reachable
            ? r.error
            : i === roles.primary
              ? 'the primary'
              : r.inRecovery
                ? 'not a streaming replica (no replay position)'
                : 'writable, but not the primary: serves nothing';
          return;
        }
        state.healthy = true;
        state.error = undefined;
        const lsn = r.lsn!;
        const behind = this.primaryLsn !== undefined && this.primaryLsn > lsn ? Number(this.primaryLsn - lsn) : 0;
        state.lagBytes = behind;
        // The last replayed transaction's age is lag only while WAL is waiting: an idle, caught-up replica is not behind.
        state.lagSeconds = behind > 0 ? (r.replaySeconds ?? 0) : 0;
      });
    } finally {
      this.#ticking = false;
      const waiters = this.#waiters;
      this.#waiters = [];
      for (const wake of waiters) wake();
    }
  }

  /**
   * Asks every server its role before the first request: each must answer, and
   * exactly one must be the primary. Which one it is comes from the servers,
   * not from which setting named them, so a list in any order works.
   */
  async verify(): Promise<void> {
    await this.nodes.read();
    for (const node of this.nodes.nodes) {
      if (node.reading.reachable || node.removed) continue;
      throw new BanyanError(
        'database-unreachable',
        `cannot reach ${node.name} at ${redactUrl(node.url)}: ${node.reading.error ?? 'no answer'}`,
        node.name.startsWith('replica-') ? 'check DATABASE_REPLICA_URLS' : 'check DATABASE_URL',
      );
    }
    const { primary, fenced } = this.nodes.roles;
    if (primary !== undefined) return;
    if (fenced.length > 1) {
      throw new BanyanError(
        'two-primaries',
        `${fenced.map((i) => this.nodes.nodes[i]!.name).join(' and ')} both accept writes on the same timeline`,
        'demote or stop one of them: writes cannot be sent to either without risking a split brain',
      );
    }
    throw new BanyanError(
      'no-primary',
      `every server in DATABASE_URL and DATABASE_REPLICA_URLS is a standby in recovery: none can take writes`,
      'promote one (pg_ctl promote), or add the primary to DATABASE_URL',
    );
  }

  /** Stops the monitor and closes every pool. */
  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    for (const breaker of this.#breakers) breaker.shutdown();
    await this.nodes.close();
  }
}

/** How far a server has got now: a standby's replay position, a primary's current one with its timeline. */
async function reachedPosition<DB>(db: Kysely<DB>): Promise<WalPosition> {
  const r = await sql.raw<{ lsn: string | null; timeline: number | null }>(REACHED_POSITION_SQL).execute(db);
  const lsn = parseLsn(r.rows[0]?.lsn ?? '');
  if (lsn === undefined) throw new Error('the server reports no WAL position');
  return { lsn, timeline: r.rows[0]!.timeline ?? undefined };
}

/**
 * Whether a standby cancelled a query to replay conflicting WAL: "canceling statement due to conflict with
 * recovery" is SQLSTATE 40001 (40P01 for a buffer-pin deadlock). A read-only standby raises no other 40001.
 */
export function isRecoveryConflict(err: unknown): boolean {
  const code = (err as { code?: string } | undefined)?.code;
  return code === '40001' || code === '40P01';
}

/**
 * Reads `X-Banyan-Min-LSN`: an LSN, or `primary` for a timed pin (anything else is no fence), and
 * `X-Banyan-Min-Timeline`, the timeline that LSN was written on, when the proxy knows it.
 */
export function fenceFromHeader(value: string | string[] | undefined, timeline?: string | string[]): ReadFence {
  if (typeof value !== 'string') return {};
  if (value === 'primary') return { primary: true };
  const lsn = parseLsn(value);
  if (lsn === undefined) return {};
  const tli = typeof timeline === 'string' ? parseTimeline(timeline) : undefined;
  return tli === undefined ? { minLsn: lsn } : { minLsn: lsn, timeline: tli };
}
