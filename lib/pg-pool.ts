import type { PostgresPoolClient } from 'kysely';
import pg from 'pg';

// bigint columns (ids, sizes, serials) come back as strings: they can exceed 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => value);

/**
 * How long one statement may run on a serving pool before PostgreSQL cancels it: a query a client can
 * make expensive (a search of many terms) then costs one connection for this long, not for ever.
 */
export const STATEMENT_TIMEOUT_MS = 15_000;

/** Connections a pool opens to one server at most, unless told otherwise. */
export const POOL_SIZE = 10;

/**
 * How long a query waits for its server's answer by default before the server is taken for unreachable:
 * past the statement timeout, PostgreSQL would have cancelled it and said so, so silence means the
 * packets are not getting through (a partition: nothing is refused, nothing ever fails on its own).
 */
export const ANSWER_TIMEOUT_MS = STATEMENT_TIMEOUT_MS + 1_000;

/** A query that got no answer in time: read as a connection failure (SQLSTATE 08006), so reads go elsewhere and roles are asked again. */
export class NoAnswerError extends Error {
  readonly code = '08006';
  constructor(ms: number) {
    super(`no answer from the database server within ${ms} ms (BANYAN_DB_ANSWER_TIMEOUT): unreachable`);
    this.name = 'NoAnswerError';
  }
}

/**
 * A checked-out client whose queries fail with NoAnswerError after `timeoutMs` without an answer; such a
 * client is then discarded (released with the error), never handed out again with a query still pending.
 * 0 waits as long as the server takes (statements without a timeout: migrations, batch commands).
 */
export function answerTimed(client: pg.PoolClient, timeoutMs: number): PostgresPoolClient {
  if (timeoutMs <= 0) return client as unknown as PostgresPoolClient;
  let silent: NoAnswerError | undefined;
  const query = async (...args: unknown[]) => {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject((silent = new NoAnswerError(timeoutMs))), timeoutMs);
    });
    try {
      return await Promise.race([(client.query as (...a: unknown[]) => Promise<unknown>)(...args), timedOut]);
    } finally {
      clearTimeout(timer);
    }
  };
  return { query: query as PostgresPoolClient['query'], release: () => client.release(silent) };
}

/**
 * A pg pool for one server, whose lost clients never take the process down. Every statement is
 * cancelled after `statementTimeoutMs` (default STATEMENT_TIMEOUT_MS); 0 lets it run. A connection
 * that takes longer than `connectTimeoutMs` (default 5 s) to open fails. With `schema`, unqualified
 * names resolve in that PostgreSQL schema alone (its `search_path`, set as the connection opens).
 */
export function createPool(
  connectionString: string,
  options: { max?: number; name?: string; statementTimeoutMs?: number; connectTimeoutMs?: number; schema?: string | undefined } = {},
): pg.Pool {
  const timeout = options.statementTimeoutMs ?? STATEMENT_TIMEOUT_MS;
  const pool = new pg.Pool({
    connectionString,
    max: options.max ?? POOL_SIZE,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
    idleTimeoutMillis: 30_000,
    application_name: options.name ?? 'banyan',
    ...(timeout > 0 ? { statement_timeout: timeout } : {}),
    ...(options.schema ? { options: `-c search_path=${checkSchemaName(options.schema)}` } : {}),
  });
  // A client that loses its server (idle in the pool, or checked out between two queries) must not take
  // the process down: the error reaches whoever queries next, and the pool replaces the client.
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  return pool;
}

/**
 * A PostgreSQL schema name Banyan accepts (BANYAN_SCHEMA): lower case letters, digits and `_`, not
 * starting with a digit or `pg_`, at most 63 bytes, so it needs no quoting anywhere it is used.
 */
export function checkSchemaName(name: string): string {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name) || name.startsWith('pg_')) {
    throw new Error(
      `"${name}" is not a schema name Banyan uses: lower case letters, digits and _, at most 63, not starting with a digit or pg_`,
    );
  }
  return name;
}
