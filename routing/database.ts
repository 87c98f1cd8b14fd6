import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { Database } from '../lib/schema.js';

// bigint columns (ids, sizes, serials) come back as strings: they can exceed 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => value);

/** A Kysely instance over a pg pool for one server. */
export function connect(connectionString: string, options: { max?: number; name?: string } = {}): Kysely<Database> {
  const pool = new pg.Pool({
    connectionString,
    max: options.max ?? 10,
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
    application_name: options.name ?? 'banyan',
  });
  // An idle client that loses its server must not take the process down; the next query reports it.
  pool.on('error', () => {});
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}

/** A URL with its password hidden, for logs and error messages. */
export function redactUrl(connectionString: string): string {
  try {
    const u = new URL(connectionString);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable URL)';
  }
}
