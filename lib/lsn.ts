/**
 * PostgreSQL WAL positions ("16/B374D848": two hex numbers, high and low 32
 * bits) as bigints, so they can be compared and subtracted.
 */
export function parseLsn(text: string): bigint | undefined {
  const match = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text.trim());
  if (!match) return undefined;
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

/** The text form PostgreSQL uses (`pg_lsn`). */
export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/**
 * A WAL position with the timeline it was taken on, when known. A promotion
 * starts a new timeline whose LSNs continue from the switch point, so an
 * LSN alone cannot say whether a write of the old primary survived.
 */
export interface WalPosition {
  readonly lsn: bigint;
  readonly timeline?: number | undefined;
}

/** The later of two positions: a newer timeline wins, then the higher LSN (a position without a timeline compares by LSN). */
export function laterPosition(a: WalPosition, b: WalPosition): WalPosition {
  if (a.timeline !== undefined && b.timeline !== undefined && a.timeline !== b.timeline) return a.timeline > b.timeline ? a : b;
  return b.lsn > a.lsn ? b : a;
}

/** A timeline as PostgreSQL writes it in WAL file names, or undefined for anything but a positive whole number. */
export function parseTimeline(text: string | undefined): number | undefined {
  if (text === undefined || !/^[1-9]\d{0,9}$/.test(text.trim())) return undefined;
  const n = Number(text.trim());
  return n <= 0xffffffff ? n : undefined;
}

/** A primary's timeline, in SQL: the first 8 hex digits of its current WAL file's name. */
const PRIMARY_TIMELINE = `('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int`;

/** The position a server has reached, in SQL, whatever its role: a standby's replay LSN, a primary's current LSN. */
export const REACHED_LSN_SQL = `(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text`;

/** A server's timeline, in SQL: a primary's; NULL on a standby, where it is not readable. */
export const REACHED_TIMELINE_SQL = `CASE WHEN pg_is_in_recovery() THEN NULL ELSE ${PRIMARY_TIMELINE} END`;

/** SQL for the primary's current position and timeline. */
export const CURRENT_POSITION_SQL = `SELECT pg_current_wal_lsn()::text AS lsn, ${PRIMARY_TIMELINE} AS timeline`;

/** The headers a backend answers a committed write with: `X-Banyan-Write-LSN`, and `X-Banyan-Write-Timeline` when known. */
export function writeHeaders(position: WalPosition): Record<string, string> {
  return positionHeaders('Write', position);
}

/**
 * SQL for the position a server has reached, whatever its role: a standby's replay LSN (its timeline is not
 * readable there), a primary's current LSN and timeline. Asked after a read, it bounds what the read saw.
 */
export const REACHED_POSITION_SQL = `SELECT ${REACHED_LSN_SQL} AS lsn, ${REACHED_TIMELINE_SQL} AS timeline`;

/** The headers a backend answers a read with when the proxy asks (monotonic reads): `X-Banyan-Read-LSN`, and `X-Banyan-Read-Timeline` when known. */
export function readHeaders(position: WalPosition): Record<string, string> {
  return positionHeaders('Read', position);
}

function positionHeaders(kind: 'Write' | 'Read', position: WalPosition): Record<string, string> {
  const headers: Record<string, string> = { [`X-Banyan-${kind}-LSN`]: formatLsn(position.lsn) };
  if (position.timeline !== undefined) headers[`X-Banyan-${kind}-Timeline`] = String(position.timeline);
  return headers;
}
