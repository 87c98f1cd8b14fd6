import { sql, type Kysely } from 'kysely';
import { BanyanError } from '../lib/errors.js';
import type { Database } from '../lib/schema.js';
import { connect, redactUrl } from './database.js';

/** Where one request's reads go, and why. */
export interface RequestDb {
  /** Reads: one chosen server for the whole request, so a request never mixes replicas. */
  readonly reader: Kysely<Database>;
  /** Writes and transactions: always the primary. */
  readonly writer: Kysely<Database>;
  /** `primary` or `replica-N` (1-based), for headers, logs and metrics. */
  readonly readTarget: string;
}

export interface DbRouterOptions {
  readonly primaryUrl: string;
  readonly replicaUrls: readonly string[];
  readonly poolSize?: number;
  readonly name?: string;
}

interface Server {
  readonly name: string;
  readonly url: string;
  readonly db: Kysely<Database>;
}

/**
 * Sends reads to streaming replicas and writes to the primary. This first
 * version spreads reads over the replicas round robin; read-your-writes
 * fences and lag checks build on it.
 */
export class DbRouter {
  readonly primary: Server;
  readonly replicas: readonly Server[];
  #next = 0;

  constructor(options: DbRouterOptions) {
    const max = options.poolSize ?? 10;
    const app = options.name ?? 'banyan';
    this.primary = { name: 'primary', url: options.primaryUrl, db: connect(options.primaryUrl, { max, name: app }) };
    this.replicas = options.replicaUrls.map((url, i) => ({
      name: `replica-${i + 1}`, url, db: connect(url, { max, name: app }),
    }));
  }

  /** The handle one request uses for all its queries. */
  forRequest(): RequestDb {
    const replica = this.replicas.length > 0 ? this.replicas[this.#next++ % this.replicas.length] : undefined;
    const reader = replica ?? this.primary;
    return { reader: reader.db, writer: this.primary.db, readTarget: reader.name };
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

  /** Closes every pool. */
  async close(): Promise<void> {
    await Promise.all([this.primary, ...this.replicas].map((s) => s.db.destroy()));
  }
}
