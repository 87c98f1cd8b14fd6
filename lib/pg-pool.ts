import pg from 'pg';

// bigint columns (ids, sizes, serials) come back as strings: they can exceed 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => value);

/**
 * How long one statement may run on a serving pool before PostgreSQL cancels it: a query a client can
 * make expensive (a search of many terms) then costs one connection for this long, not for ever.
 */
export const STATEMENT_TIMEOUT_MS = 15_000;

/**
 * A pg pool for one server, whose lost clients never take the process down. Every statement is
 * cancelled after `statementTimeoutMs` (default STATEMENT_TIMEOUT_MS); 0 lets it run.
 */
export function createPool(connectionString: string, options: { max?: number; name?: string; statementTimeoutMs?: number } = {}): pg.Pool {
  const timeout = options.statementTimeoutMs ?? STATEMENT_TIMEOUT_MS;
  const pool = new pg.Pool({
    connectionString,
    max: options.max ?? 10,
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
    application_name: options.name ?? 'banyan',
    ...(timeout > 0 ? { statement_timeout: timeout } : {}),
  });
  // A client that loses its server (idle in the pool, or checked out between two queries) must not take
  // the process down: the error reaches whoever queries next, and the pool replaces the client.
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  return pool;
}
