import { sql, type Kysely, type Transaction } from 'kysely';
import { BanyanError } from '../../lib/errors.js';
import type { BanyanDatabase } from '../../lib/schema.js';
import { describeChange, type Route } from './route-table.js';
import { validateTable } from './route-validation.js';
import { IMPLICIT_UPSTREAMS, type UpstreamSpec } from './upstreams.js';

/** One version of the table: its routes and the upstreams they send to (versioned, audited and rolled back together). */
export interface TableVersion {
  readonly version: number;
  readonly routes: Route[];
  /** Always explicit; versions stored before upstreams were named read as IMPLICIT_UPSTREAMS. */
  readonly upstreams: UpstreamSpec[];
  readonly actor: string;
  readonly reason: string;
  readonly createdAt: Date;
}

/** One row of the audit log: who changed what, when and why. */
export interface AuditEntry {
  readonly version: number;
  readonly action: string;
  readonly actor: string;
  readonly reason: string;
  readonly at: Date;
  /** One line per upstream and route added, changed or removed (describeChange). */
  readonly changes: string[];
}

/** A change to make: the whole new table, who makes it and why. */
export interface TableChange {
  /**
   * The new table: `{"upstreams": [...], "routes": [...]}`, or a bare list of routes, which keeps the
   * upstreams of the current version (IMPLICIT_UPSTREAMS when there is none).
   */
  readonly routes: unknown;
  readonly actor: string;
  readonly reason: string;
  /** Refuse the change if the table is no longer at this version (another operator got there first). */
  readonly expectedVersion?: number;
  readonly action?: string;
}

// Serializes writers across every process, so versions are gapless and each audit row's "before" is exact.
const LOCK_KEY = 0x62616e79; // "bany"

/** The latest version, or undefined when no table was ever stored. */
export async function latestTable(db: Kysely<BanyanDatabase>): Promise<TableVersion | undefined> {
  const row = await db.selectFrom('route_table_versions').selectAll().orderBy('version', 'desc').limit(1).executeTakeFirst();
  return row ? toVersion(row) : undefined;
}

/** The newest version number, cheaply (for polling); 0 when there is none. */
export async function latestVersionNumber(db: Kysely<BanyanDatabase>): Promise<number> {
  const row = await db
    .selectFrom('route_table_versions')
    .select((eb) => eb.fn.max('version').as('v'))
    .executeTakeFirst();
  return Number(row?.v ?? 0);
}

/** A given version, or a clear error naming the versions that exist. */
export async function tableAt(db: Kysely<BanyanDatabase>, version: number): Promise<TableVersion> {
  const row = await db.selectFrom('route_table_versions').selectAll().where('version', '=', version).executeTakeFirst();
  if (!row) {
    const latest = await latestVersionNumber(db);
    throw new BanyanError(
      'no-such-version',
      `route table version ${version} does not exist`,
      latest ? `versions run from 1 to ${latest}; see \`banyan routes history\`` : 'no table has been stored yet',
    );
  }
  return toVersion(row);
}

/**
 * Validates and stores a new version with its audit row, in one transaction.
 * A table that fails validation is rejected whole (BanyanError `invalid-table`
 * whose message lists every problem) and nothing is written.
 */
export async function saveTable(db: Kysely<BanyanDatabase>, change: TableChange): Promise<TableVersion> {
  return db.transaction().execute((trx) => saveTableIn(trx, change));
}

/**
 * {@link saveTable} inside a transaction the caller holds, so that another
 * write (an autopilot plan's step) commits with the table version or not at all.
 */
export async function saveTableIn(trx: Transaction<BanyanDatabase>, change: TableChange): Promise<TableVersion> {
  // Under the lock first: a bare list of routes is checked against the upstreams in effect, which must not change meanwhile.
  await sql`SELECT pg_advisory_xact_lock(${LOCK_KEY})`.execute(trx);
  const current = await latestTable(trx);
  const checked = validateTable(change.routes, { upstreams: current?.upstreams });
  if (!checked.ok) {
    throw new BanyanError(
      'invalid-table',
      `the route table was rejected:\n  ${checked.problems.join('\n  ')}`,
      'nothing was changed; fix these and try again',
    );
  }
  if (!change.reason.trim()) throw new BanyanError('reason-required', 'a change needs a reason, for the audit log', 'pass --reason "…"');
  const currentVersion = current?.version ?? 0;
  if (change.expectedVersion !== undefined && change.expectedVersion !== currentVersion) {
    throw new BanyanError(
      'version-conflict',
      `the table is at version ${currentVersion}, not ${change.expectedVersion}: someone else changed it`,
      'look at `banyan routes history`, then make your change again',
    );
  }
  const version = currentVersion + 1;
  const row = await trx
    .insertInto('route_table_versions')
    .values({
      version,
      routes: JSON.stringify(checked.routes),
      upstreams: JSON.stringify(checked.upstreams),
      actor: change.actor,
      reason: change.reason,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  await trx
    .insertInto('route_audit')
    .values({
      version,
      action: change.action ?? 'set',
      actor: change.actor,
      reason: change.reason,
      before: current ? JSON.stringify(current.routes) : null,
      after: JSON.stringify(checked.routes),
      before_upstreams: current ? JSON.stringify(current.upstreams) : null,
      after_upstreams: JSON.stringify(checked.upstreams),
    })
    .execute();
  return toVersion(row);
}

/**
 * Stores the given table (a routes file's: the object with upstreams, or a bare list of routes with
 * the implicit upstreams) as version 1 when the store is empty; else returns the latest.
 */
export async function seedTable(db: Kysely<BanyanDatabase>, table: unknown, actor: string): Promise<TableVersion> {
  const existing = await latestTable(db);
  if (existing) return existing;
  try {
    return await saveTable(db, { routes: table, actor, reason: 'initial table from the routes file', expectedVersion: 0, action: 'seed' });
  } catch (err) {
    // Another instance seeded it first.
    if (err instanceof BanyanError && err.code === 'version-conflict') return (await latestTable(db))!;
    throw err;
  }
}

/** Makes an earlier version current again, its upstreams with its routes, as a new version (history is never rewritten). */
export async function rollbackTable(db: Kysely<BanyanDatabase>, version: number, actor: string, reason: string): Promise<TableVersion> {
  const target = await tableAt(db, version);
  return saveTable(db, {
    routes: { upstreams: target.upstreams, routes: target.routes },
    actor,
    reason: reason || `rollback to version ${version}`,
    action: `rollback to ${version}`,
  });
}

/** The audit log, newest first. */
export async function auditLog(db: Kysely<BanyanDatabase>, limit = 50): Promise<AuditEntry[]> {
  const rows = await db.selectFrom('route_audit').selectAll().orderBy('id', 'desc').limit(limit).execute();
  return rows.map((r) => ({
    version: r.version,
    action: r.action,
    actor: r.actor,
    reason: r.reason,
    at: new Date(r.at as Date),
    // The first version adds its upstreams as it adds its routes; rows from before upstreams were named mean the implicit pair.
    changes: describeChange(
      (r.before as Route[] | null) ?? [],
      r.after as Route[],
      r.before === null ? [] : upstreamsOf(r.before_upstreams),
      upstreamsOf(r.after_upstreams),
    ),
  }));
}

function upstreamsOf(stored: unknown): UpstreamSpec[] {
  return Array.isArray(stored) ? (stored as UpstreamSpec[]) : [...IMPLICIT_UPSTREAMS];
}

function toVersion(row: {
  version: number;
  routes: unknown;
  upstreams: unknown;
  actor: string;
  reason: string;
  created_at: Date;
}): TableVersion {
  return {
    version: row.version,
    routes: row.routes as Route[],
    upstreams: upstreamsOf(row.upstreams),
    actor: row.actor,
    reason: row.reason,
    createdAt: new Date(row.created_at),
  };
}
