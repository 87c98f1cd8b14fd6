import { Kysely, PostgresDialect, sql } from 'kysely';
import { DbNodes } from './db-nodes.js';
import { CURRENT_POSITION_SQL, parseLsn, type WalPosition } from './lsn.js';
import { createPool } from './pg-pool.js';
import type { BanyanDatabase } from './schema.js';

export { isConnectionError } from './db-roles.js';

export { STATEMENT_TIMEOUT_MS } from './pg-pool.js';

/** The entries of a comma list of database URLs. */
export function splitUrls(list: string): string[] {
  return list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/**
 * A Kysely instance for one server, or, given a comma list of servers, for
 * whichever of them is the primary now (asked at first use, every
 * `roleCheckMs` and after a write fails as if it had moved). Every statement
 * is cancelled after `statementTimeoutMs` (default STATEMENT_TIMEOUT_MS); 0
 * lets it run, for migrations and batch commands an operator runs and watches. With `schema` (Banyan's
 * own, BANYAN_SCHEMA), unqualified table names resolve in that PostgreSQL schema alone.
 */
export function connect<DB = BanyanDatabase>(
  connectionString: string,
  options: { max?: number; name?: string; roleCheckMs?: number; statementTimeoutMs?: number; schema?: string | undefined } = {},
): Kysely<DB> {
  const urls = splitUrls(connectionString);
  if (urls.length > 1) {
    return new DbNodes<DB>({
      nodes: urls.map((url, i) => ({ name: `db-${i + 1}`, url })),
      poolSize: options.max,
      name: options.name,
      intervalMs: options.roleCheckMs,
      statementTimeoutMs: options.statementTimeoutMs,
      schema: options.schema,
    }).writer;
  }
  return new Kysely<DB>({ dialect: new PostgresDialect({ pool: createPool(connectionString, options) }) });
}

/** A URL with its password hidden (each entry of a comma list), for logs and error messages. */
export function redactUrl(connectionString: string): string {
  const urls = splitUrls(connectionString);
  if (urls.length > 1) return urls.map(redactUrl).join(',');
  try {
    const u = new URL(connectionString);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable URL)';
  }
}

/** The primary's current WAL position and timeline: a fence for whatever was just committed there. */
export async function currentPosition<DB>(db: Kysely<DB>): Promise<WalPosition> {
  const r = await sql.raw<{ lsn: string; timeline: number }>(CURRENT_POSITION_SQL).execute(db);
  return { lsn: parseLsn(r.rows[0]!.lsn)!, timeline: r.rows[0]!.timeline };
}
