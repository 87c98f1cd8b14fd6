import { Kysely, PostgresDialect, type PostgresPool, type PostgresPoolClient } from 'kysely';
import pg from 'pg';
import { decideRoles, isConnectionError, ROLE_QUERY, suggestsNewPrimary, type NodeReading, type Roles } from './db-roles.js';
import { DEFAULTS } from './config.js';
import { parseLsn } from './lsn.js';
import { ANSWER_TIMEOUT_MS, answerTimed, createPool, POOL_SIZE } from './pg-pool.js';
import { queryObserver } from './query-telemetry.js';

/** One PostgreSQL server of the set, by the name logs, headers and metrics use. */
export interface DbNodeConfig {
  readonly name: string;
  readonly url: string;
}

/** A server with its pool, and what it last said of itself. */
export interface DbNode<DB = unknown> extends DbNodeConfig {
  readonly pool: pg.Pool;
  /** Queries on this server alone (a replica's reads). */
  readonly db: Kysely<DB>;
  reading: NodeReading;
  checkedAt: number;
  /** No longer discovered: it takes no new work, and its pool closes once what it was given has had time to finish. */
  removed: boolean;
}

export interface DbNodesOptions {
  readonly nodes: readonly DbNodeConfig[];
  readonly poolSize?: number | undefined;
  /** The PostgreSQL application name of every connection. */
  readonly name?: string | undefined;
  /** How often roles are asked again with no failure prompting it; 0: only at first use and after a failed write. */
  readonly intervalMs?: number | undefined;
  /**
   * Finds the servers again (re-resolving DNS names, say), every `discoverEveryMs` at a reading: new ones
   * join as soon as they answer (a standby once it reports a replay position), missing ones drain.
   */
  readonly discover?: (() => Promise<readonly DbNodeConfig[]>) | undefined;
  readonly discoverEveryMs?: number | undefined;
  /** How long a removed server's pool stays open for the reads already sent to it. */
  readonly drainMs?: number | undefined;
  /** How long a query waits for an answer before its server counts as unreachable (BANYAN_DB_ANSWER_TIMEOUT). */
  readonly answerTimeoutMs?: number | undefined;
  /** Every statement's timeout (default STATEMENT_TIMEOUT_MS); 0 lets statements run, and waits for their answers, as long as they take. */
  readonly statementTimeoutMs?: number | undefined;
  /** The PostgreSQL schema unqualified names resolve in (see createPool); unset: the server's default search path. */
  readonly schema?: string | undefined;
}

/** No server can take writes now: the primary is down, or not yet promoted. Reads as unreachable (503 upstream). */
export class NoPrimaryError extends Error {
  readonly code = '08001';
  constructor(nodes: readonly Pick<DbNode, 'name' | 'reading'>[]) {
    super(`no PostgreSQL server is the primary now (${nodes.map((n) => `${n.name}: ${describe(n.reading)}`).join('; ')})`);
    this.name = 'NoPrimaryError';
  }
}

/**
 * A set of PostgreSQL servers whose roles are asked, not configured: each is
 * asked `pg_is_in_recovery()` (and its WAL position and timeline) at first
 * use, on an interval, and at once when a write fails as if the primary had
 * moved. `writer` always goes to the primary of the last reading, so every
 * holder of it follows a failover with no restart.
 */
export class DbNodes<DB> {
  readonly #nodes: DbNode<DB>[];
  /** Queries on whichever server is the primary now; a transaction stays on the one it began on. */
  readonly writer: Kysely<DB>;
  /** How many times the primary changed (another server, or none). */
  primaryChanges = 0;
  #roles: Roles = { primary: undefined, replicas: [], fenced: [] };
  readonly #probes: (pg.Client | undefined)[];
  readonly #options: DbNodesOptions;
  #discoveredAt = 0;
  readonly #draining = new Map<DbNode<DB>, NodeJS.Timeout>();
  readonly #added: (() => void)[] = [];
  #reading: Promise<void> | undefined;
  #read = false;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  readonly #listeners: ((roles: Roles, previous: Roles) => void)[] = [];

  constructor(options: DbNodesOptions) {
    this.#options = options;
    this.#nodes = options.nodes.map((n) => this.#newNode(n));
    this.#probes = this.#nodes.map(() => undefined);
    this.writer = new Kysely<DB>({
      dialect: new PostgresDialect({ pool: this.#primaryPool() }),
      log: queryObserver({ name: 'primary', url: options.nodes[0]?.url ?? '', isReplica: () => false }),
    });
    if (options.intervalMs) {
      this.#timer = setInterval(() => {
        void this.read();
      }, options.intervalMs);
      this.#timer.unref();
    }
  }

  /** Every server found so far, in the order found (a removed one keeps its place, so roles' indexes stay valid). */
  get nodes(): readonly DbNode<DB>[] {
    return this.#nodes;
  }

  /** Calls `fn` whenever a server is added to `nodes`. */
  onAdded(fn: () => void): void {
    this.#added.push(fn);
  }

  #newNode(n: DbNodeConfig): DbNode<DB> {
    // Opening a connection is waiting for an answer too: a server behind a partition never completes it.
    const pool = createPool(n.url, {
      max: this.#options.poolSize ?? POOL_SIZE,
      name: this.#options.name ?? 'banyan',
      statementTimeoutMs: this.#options.statementTimeoutMs,
      schema: this.#options.schema,
      connectTimeoutMs: this.#answerTimeoutMs > 0 ? Math.min(5_000, this.#answerTimeoutMs) : undefined,
    });
    const timed: PostgresPool = {
      connect: async () => answerTimed(await pool.connect(), this.#answerTimeoutMs),
      end: () => pool.end(),
    };
    const node: DbNode<DB> = {
      ...n,
      pool,
      reading: { reachable: false, error: 'not checked yet' },
      checkedAt: 0,
      removed: false,
      // Its role by the last reading: a failover turns a replica's pool into the primary's.
      db: new Kysely<DB>({
        dialect: new PostgresDialect({ pool: timed }),
        log: queryObserver({ name: n.name, url: n.url, isReplica: () => node.reading.inRecovery === true }),
      }),
    };
    return node;
  }

  /** Adds the servers discovery found that are new (or back), and drains those it no longer finds. */
  async #rediscover(): Promise<void> {
    const { discover, discoverEveryMs } = this.#options;
    if (!discover || this.#closed || Date.now() - this.#discoveredAt < (discoverEveryMs ?? DEFAULTS.dbResolveMs)) return;
    this.#discoveredAt = Date.now();
    let found: readonly DbNodeConfig[];
    try {
      found = await discover();
    } catch {
      return;
    }
    if (found.length === 0 || this.#closed) return;
    const urls = new Set(found.map((n) => n.url));
    for (const node of this.#nodes) {
      if (node.removed || urls.has(node.url)) continue;
      node.removed = true;
      node.reading = { reachable: false, error: 'no longer discovered: draining' };
      const timer = setTimeout(() => {
        this.#draining.delete(node);
        void node.pool.end().catch(() => {});
      }, this.#options.drainMs ?? 10_000);
      timer.unref();
      this.#draining.set(node, timer);
    }
    let added = false;
    for (const config of found) {
      const at = this.#nodes.findIndex((n) => n.url === config.url);
      const current = at < 0 ? undefined : this.#nodes[at]!;
      if (current && !current.removed) continue;
      if (current) {
        const timer = this.#draining.get(current);
        if (timer) {
          // Back before its pool closed: it simply serves again.
          clearTimeout(timer);
          this.#draining.delete(current);
          current.removed = false;
          continue;
        }
        this.#nodes[at] = this.#newNode(config);
        this.#probes[at] = undefined;
      } else {
        this.#nodes.push(this.#newNode(config));
        this.#probes.push(undefined);
        added = true;
      }
    }
    if (added) for (const fn of this.#added) fn();
  }

  /** The roles of the last reading. */
  get roles(): Roles {
    return this.#roles;
  }

  /** The primary of the last reading, if any. */
  get primary(): DbNode<DB> | undefined {
    return this.#roles.primary === undefined ? undefined : this.#nodes[this.#roles.primary];
  }

  /** Calls `fn` after every reading that changed the primary, the replicas or the fenced servers. */
  onChange(fn: (roles: Roles, previous: Roles) => void): void {
    this.#listeners.push(fn);
  }

  /** Asks every server at once; concurrent callers share one reading. */
  read(): Promise<void> {
    this.#reading ??= this.#readAll().finally(() => {
      this.#reading = undefined;
    });
    return this.#reading;
  }

  /** A write failed as if the primary had moved: ask again now rather than at the next interval. */
  writeFailed(): void {
    if (!this.#closed) void this.read();
  }

  async #readAll(): Promise<void> {
    // In the background: a slow DNS answer must not hold up the readings that route every request.
    void this.#rediscover();
    await Promise.all(
      this.#nodes.map(async (node, i) => {
        if (node.removed) return;
        const reading = await this.#probe(i);
        // Removed while it was being asked: it keeps the reading that takes it out.
        if (node.removed) return;
        node.reading = reading;
        node.checkedAt = Date.now();
      }),
    );
    this.#read = true;
    const previous = this.#roles;
    const next = decideRoles(
      this.#nodes.map((n) => n.reading),
      previous.primary,
    );
    if (next.primary !== previous.primary) this.primaryChanges++;
    this.#roles = next;
    if (!sameRoles(previous, next)) for (const fn of this.#listeners) fn(next, previous);
  }

  async #probe(i: number): Promise<NodeReading> {
    let client = this.#probes[i];
    try {
      if (!client) {
        // query_timeout: a server behind a partition never answers, and one silent server must not hold up the reading of all.
        client = new pg.Client({
          connectionString: this.#nodes[i]!.url,
          connectionTimeoutMillis: 1_000,
          statement_timeout: 1_000,
          query_timeout: 1_500,
          application_name: 'banyan-monitor',
        });
        client.on('error', () => {});
        this.#probes[i] = client;
        await client.connect();
      }
      const row = (await client.query(ROLE_QUERY)).rows[0] as {
        standby: boolean;
        lsn: string | null;
        timeline: number | null;
        seconds: number;
      };
      return {
        reachable: true,
        inRecovery: row.standby,
        lsn: row.lsn === null ? undefined : parseLsn(row.lsn),
        timeline: row.timeline ?? undefined,
        replaySeconds: Number(row.seconds),
      };
    } catch (err) {
      // A broken connection is replaced at the next reading.
      this.#probes[i] = undefined;
      void client?.end().catch(() => {});
      return { reachable: false, error: (err as Error).message };
    }
  }

  /** The pool behind `writer`: each connection comes from the primary's own pool. */
  #primaryPool(): PostgresPool {
    return {
      connect: async () => {
        if (!this.#read) await this.read();
        const node = this.primary;
        if (!node) {
          this.writeFailed();
          throw new NoPrimaryError(this.#nodes);
        }
        let client: pg.PoolClient;
        try {
          client = await node.pool.connect();
        } catch (err) {
          if (isConnectionError(err)) this.writeFailed();
          throw err;
        }
        return this.#watched(client);
      },
      end: () => this.close(),
    };
  }

  get #answerTimeoutMs(): number {
    return this.#options.statementTimeoutMs === 0 ? 0 : (this.#options.answerTimeoutMs ?? ANSWER_TIMEOUT_MS);
  }

  /** A client whose failures that suggest a new primary start a reading. */
  #watched(pooled: pg.PoolClient): PostgresPoolClient {
    const client = answerTimed(pooled, this.#answerTimeoutMs);
    const query = (...args: unknown[]) => {
      const result = (client.query as (...a: unknown[]) => unknown)(...args);
      if (result instanceof Promise) {
        return result.catch((err: unknown) => {
          if (suggestsNewPrimary(err)) this.writeFailed();
          throw err;
        });
      }
      return result;
    };
    return { query: query as PostgresPoolClient['query'], release: () => client.release() };
  }

  /** Stops asking and closes every pool. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    await this.#reading?.catch(() => {});
    for (const timer of this.#draining.values()) clearTimeout(timer);
    await Promise.all(this.#probes.filter((c) => c !== undefined).map((c) => c.end().catch(() => {})));
    await Promise.all(this.#nodes.filter((n) => !n.removed || this.#draining.has(n)).map((n) => n.pool.end().catch(() => {})));
  }
}

function sameRoles(a: Roles, b: Roles): boolean {
  return a.primary === b.primary && a.replicas.join() === b.replicas.join() && a.fenced.join() === b.fenced.join();
}

function describe(r: NodeReading): string {
  if (!r.reachable) return `unreachable (${r.error ?? 'no answer'})`;
  return r.inRecovery ? 'a standby' : `writable on timeline ${r.timeline ?? '?'}`;
}
