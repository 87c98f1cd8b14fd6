/**
 * Which PostgreSQL server is the primary, decided from what each one says of
 * itself (`pg_is_in_recovery()`), never from the order of a configuration
 * list: after a failover the server once given as the primary may be dead,
 * or back as a stale primary of an older timeline. Pure functions, no I/O.
 */

import { REACHED_LSN_SQL, REACHED_TIMELINE_SQL } from './lsn.js';

/** What one server answered to the monitor's question (or that it did not). */
export interface NodeReading {
  readonly reachable: boolean;
  /** `pg_is_in_recovery()`: true for a standby. */
  readonly inRecovery?: boolean | undefined;
  /** A primary's `pg_current_wal_lsn()`, a standby's `pg_last_wal_replay_lsn()` (undefined until it replays). */
  readonly lsn?: bigint | undefined;
  /** A primary's timeline (a promotion starts a new, higher one). */
  readonly timeline?: number | undefined;
  /** A standby's age of the last replayed transaction, in seconds. */
  readonly replaySeconds?: number | undefined;
  readonly error?: string | undefined;
}

/** The roles the servers play now, by their place in the node list. */
export interface Roles {
  /** The one server writes go to; undefined while none can be trusted with them. */
  readonly primary: number | undefined;
  /** Standbys that report a replay position: the only servers reads may use besides the primary. */
  readonly replicas: readonly number[];
  /**
   * Servers that accept writes but are not the primary: an old primary back on an older timeline, or
   * two on the same timeline (split brain). Nothing is sent to them.
   */
  readonly fenced: readonly number[];
}

/**
 * The primary is the one writable server; with several, the one on the
 * highest timeline (the newest promotion). Two writable servers on the same
 * highest timeline cannot be told apart: the current primary keeps the role
 * if it is one of them, else there is no primary, and writes wait (503)
 * rather than risk going to the wrong one.
 */
export function decideRoles(readings: readonly NodeReading[], current: number | undefined): Roles {
  const writable = readings.flatMap((r, i) => (r.reachable && r.inRecovery === false ? [i] : []));
  const timeline = (i: number) => readings[i]!.timeline ?? 0;
  const newest = Math.max(...writable.map(timeline));
  const onNewest = writable.filter((i) => timeline(i) === newest);
  let primary: number | undefined;
  if (onNewest.length === 1) primary = onNewest[0];
  else if (current !== undefined && onNewest.includes(current)) primary = current;
  return {
    primary,
    replicas: readings.flatMap((r, i) => (r.reachable && r.inRecovery === true && r.lsn !== undefined ? [i] : [])),
    fenced: writable.filter((i) => i !== primary),
  };
}

const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  '57P01',
  '57P02',
  '57P03',
  '08000',
  '08003',
  '08006',
  '08001',
  '08004',
]);

/** Whether an error means the server could not be reached (rather than that the query was wrong). */
export function isConnectionError(err: unknown): boolean {
  const e = err as { code?: string; message?: string } | undefined;
  if (!e) return false;
  if (e.code && CONNECTION_CODES.has(e.code)) return true;
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|connect ECONNREFUSED/i.test(
    e.message ?? '',
  );
}

/**
 * Whether a failed write says the primary may have moved: it could not be
 * reached, or it refused the write as read-only (SQLSTATE 25006: a demoted
 * server, now a standby).
 */
export function suggestsNewPrimary(err: unknown): boolean {
  return isConnectionError(err) || (err as { code?: string } | undefined)?.code === '25006';
}

/**
 * The monitor's one question to every server, whatever its role: in recovery or not, its WAL position, its
 * timeline (a primary's: the first 8 hex digits of its current WAL file's name) and a standby's replay age.
 */
export const ROLE_QUERY = `SELECT pg_is_in_recovery() AS standby, ${REACHED_LSN_SQL} AS lsn, ${REACHED_TIMELINE_SQL} AS timeline,
  COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)::float8 AS seconds`;
