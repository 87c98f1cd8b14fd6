import { Migrator, NO_MIGRATIONS, sql, type Migration, type MigrationResultSet } from 'kysely';
import { BanyanError } from '../lib/errors.js';
import * as routeTable from './2026-11-21-02-route-table.js';
import * as usageLedger from './2026-11-21-03-usage-ledger.js';
import * as usageStatus from './2026-11-23-01-usage-status.js';
import * as autopilot from './2026-11-23-05-autopilot.js';
import * as routeUpstreams from './2026-12-02-01-route-upstreams.js';
import * as usageService from './2026-12-02-02-usage-service.js';
import * as planGates from './2026-12-02-03-plan-gates.js';
import type { UntypedDb } from './untyped.js';

/** One line of `banyan migrate status`. */
export interface MigrationStatus {
  readonly name: string;
  readonly executedAt: Date | null;
}

/** A list of migrations with a log of its own: Banyan's, or an application's (the demo package index has one). */
export interface MigrationSet {
  /** Applies every pending migration, or throws naming the one that failed. */
  up(db: UntypedDb): Promise<string[]>;
  /** Undoes the most recent migration (`all`: every one). */
  down(db: UntypedDb, all?: boolean): Promise<string[]>;
  /** Every known migration and when it ran (null: pending). */
  status(db: UntypedDb): Promise<MigrationStatus[]>;
}

export interface MigrationSetOptions {
  /**
   * Every migration, in order. Names are dated so they sort; each has an `up` and a `down`. Listed rather
   * than read from a folder, so a missing or misnamed file is a type error, not a silent skip.
   */
  readonly migrations: Record<string, Migration>;
  /** The table that logs which ran (and `<table>_lock`, Kysely's lock). */
  readonly table: string;
  /** Runs after every `up`, pending migrations or not (data derived by today's code, where missing). */
  readonly afterUp?: (db: UntypedDb) => Promise<void>;
}

export function migrationSet(options: MigrationSetOptions): MigrationSet {
  const migrator = (db: UntypedDb) =>
    new Migrator({
      db,
      provider: { getMigrations: async () => options.migrations },
      migrationTableName: options.table,
      migrationLockTableName: `${options.table}_lock`,
    });
  return {
    async up(db) {
      await splitSharedLog(db);
      const done = applied(await migrator(db).migrateToLatest(), 'up');
      await options.afterUp?.(db);
      return done;
    },
    async down(db, all = false) {
      await splitSharedLog(db);
      const m = migrator(db);
      return applied(await (all ? m.migrateTo(NO_MIGRATIONS) : m.migrateDown()), 'down');
    },
    async status(db) {
      await splitSharedLog(db);
      return (await migrator(db).getMigrations()).map((m) => ({ name: m.name, executedAt: m.executedAt ?? null }));
    },
  };
}

/** Banyan's own tables: the route table and its audit log, the usage ledger, the autopilot's plans and evidence. */
export const BANYAN_MIGRATIONS = migrationSet({
  table: 'banyan_migration',
  migrations: {
    '2026-11-21-02-route-table': routeTable,
    '2026-11-21-03-usage-ledger': usageLedger,
    '2026-11-23-01-usage-status': usageStatus,
    '2026-11-23-05-autopilot': autopilot,
    '2026-12-02-01-route-upstreams': routeUpstreams,
    '2026-12-02-02-usage-service': usageService,
    '2026-12-02-03-plan-gates': planGates,
  },
});

export const migrateUp = (db: UntypedDb) => BANYAN_MIGRATIONS.up(db);
export const migrateDown = (db: UntypedDb, all = false) => BANYAN_MIGRATIONS.down(db, all);
export const migrationStatus = (db: UntypedDb) => BANYAN_MIGRATIONS.status(db);

/**
 * Until 2026-12-03 Banyan's migrations and the demo package index's shared one log, `banyan_migration`.
 * Each set now has its own, and Kysely refuses a log that names a migration its list lacks, so a database
 * migrated before then has the index's rows moved to the index's log (`package_index_migration`) first,
 * in one transaction, whichever set runs first. The names are history, frozen here: later index
 * migrations never were in the shared log.
 */
const SHARED_LOG_INDEX_MIGRATIONS = [
  '2026-11-21-01-package-index',
  '2026-11-22-01-release-order',
  '2026-11-23-02-ownership',
  '2026-11-23-03-core-metadata',
  '2026-11-23-04-digests',
];
export const INDEX_MIGRATION_TABLE = 'package_index_migration';

async function splitSharedLog(db: UntypedDb): Promise<void> {
  const shared = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_tables
    WHERE schemaname = current_schema() AND tablename = 'banyan_migration'`.execute(db);
  if (!shared.rows[0]?.n) return;
  const names = sql.join(SHARED_LOG_INDEX_MIGRATIONS.map((n) => sql.lit(n)));
  const found = await sql<{ n: number }>`SELECT count(*)::int AS n FROM banyan_migration WHERE name IN (${names})`.execute(db);
  if (!found.rows[0]?.n) return;
  await db.transaction().execute(async (trx) => {
    await sql`LOCK TABLE banyan_migration IN EXCLUSIVE MODE`.execute(trx);
    await sql`CREATE TABLE IF NOT EXISTS ${sql.table(INDEX_MIGRATION_TABLE)} (LIKE banyan_migration INCLUDING ALL)`.execute(trx);
    await sql`INSERT INTO ${sql.table(INDEX_MIGRATION_TABLE)} SELECT * FROM banyan_migration WHERE name IN (${names})
      ON CONFLICT DO NOTHING`.execute(trx);
    await sql`DELETE FROM banyan_migration WHERE name IN (${names})`.execute(trx);
  });
}

function applied(result: MigrationResultSet, direction: 'up' | 'down'): string[] {
  const failed = result.results?.find((r) => r.status === 'Error');
  if (result.error || failed) {
    const cause = result.error instanceof Error ? result.error.message : String(result.error);
    throw new BanyanError(
      'migration-failed',
      `migration ${failed?.migrationName ?? '(unknown)'} failed going ${direction}: ${cause}`,
      'nothing after it ran; fix the cause and run the command again',
      { cause: result.error },
    );
  }
  return (result.results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
