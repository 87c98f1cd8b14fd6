import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { Database } from './schema.js';

// bigint columns (ids, sizes, serials) come back as strings: they can exceed 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => value);

/**
 * How long one statement may run on a serving pool before PostgreSQL cancels it: a query a client can
 * make expensive (a search of many terms) then costs one connection for this long, not for ever.
 */
export const STATEMENT_TIMEOUT_MS = 15_000;

/**
 * A Kysely instance over a pg pool for one server. Every statement is cancelled after
 * `statementTimeoutMs` (default STATEMENT_TIMEOUT_MS); 0 lets it run, for migrations and batch
 * commands an operator runs and watches.
 */
export function connect(connectionString: string, options: { max?: number; name?: string; statementTimeoutMs?: number } = {}): Kysely<Database> {
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

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', '57P01', '57P02', '57P03', '08000', '08003', '08006', '08001', '08004']);

/** Whether an error means the server could not be reached (rather than that the query was wrong). */
export function isConnectionError(err: unknown): boolean {
  const e = err as { code?: string; message?: string } | undefined;
  if (!e) return false;
  if (e.code && CONNECTION_CODES.has(e.code)) return true;
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|connect ECONNREFUSED/i
    .test(e.message ?? '');
}
