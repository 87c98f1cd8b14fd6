import pg from 'pg';

// bigint columns (ids, sizes, serials) come back as strings: they can exceed 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => value);

/** A pg pool for one server, whose lost clients never take the process down. */
export function createPool(connectionString: string, options: { max?: number; name?: string } = {}): pg.Pool {
  const pool = new pg.Pool({
    connectionString,
    max: options.max ?? 10,
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
    application_name: options.name ?? 'banyan',
  });
  // A client that loses its server (idle in the pool, or checked out between two queries) must not take
  // the process down: the error reaches whoever queries next, and the pool replaces the client.
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  return pool;
}
