import { Migrator, NO_MIGRATIONS, sql, type Migration, type MigrationResultSet } from 'kysely';
import { DEFAULTS } from '../lib/config.js';
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
  /**
   * The PostgreSQL schema its tables and log live in; the connection given to each call must resolve
   * names there alone (`connect(url, { schema })`). Undefined: the connection's default (the app's).
   */
  readonly schema: string | undefined;
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
  /** See MigrationSet.schema. */
  readonly schema?: string | undefined;
  /** Runs before every call: brings a database laid out by an earlier version to today's layout. */
  readonly before?: (db: UntypedDb) => Promise<void>;
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
      ...(options.schema ? { migrationTableSchema: options.schema } : {}),
    });
  const prepare = async (db: UntypedDb) => {
    if (options.schema) await checkSearchPath(db, options.schema);
    await options.before?.(db);
  };
  return {
    schema: options.schema,
    async up(db) {
      await prepare(db);
      const done = applied(await migrator(db).migrateToLatest(), 'up');
      await options.afterUp?.(db);
      return done;
    },
    async down(db, all = false) {
      await prepare(db);
      const m = migrator(db);
      return applied(await (all ? m.migrateTo(NO_MIGRATIONS) : m.migrateDown()), 'down');
    },
    async status(db) {
      await prepare(db);
      return (await migrator(db).getMigrations()).map((m) => ({ name: m.name, executedAt: m.executedAt ?? null }));
    },
  };
}

/**
 * Banyan's own tables: the route table and its audit log, the usage ledger, the autopilot's plans and
 * evidence. A migration that adds one adds it here too, or a database of the earlier layout would keep it
 * behind (test/migrations.test.ts checks the list against what the migrations create).
 */
export const BANYAN_TABLES = [
  'route_table_versions',
  'route_audit',
  'usage_ledger',
  'usage_user_agents',
  'usage_flushes',
  'cutover_plans',
  'autopilot_lease',
  'cutover_samples',
];
const BANYAN_LOG = 'banyan_migration';

/** Banyan's migrations, with their tables and log in `schema` (BANYAN_SCHEMA), apart from the application's. */
export function banyanMigrations(schema: string = DEFAULTS.schema): MigrationSet {
  return migrationSet({
    table: BANYAN_LOG,
    schema,
    before: (db) => adoptEarlierLayout(db, schema),
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
}

/** A connection that would create Banyan's tables among the application's is refused before anything runs. */
async function checkSearchPath(db: UntypedDb, schema: string): Promise<void> {
  const r = await sql<{ path: string }>`SELECT current_setting('search_path') AS path`.execute(db);
  const path = r.rows[0]?.path ?? '';
  if (path.replace(/"/g, '') !== schema) {
    throw new BanyanError(
      'migration-failed',
      `these migrations belong in the schema "${schema}", but the connection resolves names in "${path}"`,
      `connect with connect(url, { schema: '${schema}' })`,
    );
  }
}

/**
 * Until 2026-12-04 Banyan's tables and its log lived in the application's schema (normally `public`).
 * They move, with their rows, indexes and sequences, into Banyan's own schema in one transaction, the
 * first time any of Banyan's migration commands runs; a database that never had them is left alone.
 * Proxies of the earlier version then fail to read the route table (each keeps serving the one it has,
 * and holds its usage counts) until they are replaced. Otherwise nothing is written here: Kysely creates
 * the schema, with the log, when the first migration runs.
 */
async function adoptEarlierLayout(db: UntypedDb, schema: string): Promise<void> {
  const logs = await schemasHolding(db, BANYAN_LOG);
  if (logs.includes(schema) || logs.length === 0) return;
  if (logs.length > 1) {
    throw new BanyanError(
      'migration-failed',
      `Banyan's migration log (${BANYAN_LOG}) is in several schemas (${logs.join(', ')}), none of them "${schema}"`,
      'set BANYAN_SCHEMA to the one Banyan uses',
    );
  }
  const from = logs[0]!;
  await splitSharedLog(db, from);
  await sql`CREATE SCHEMA IF NOT EXISTS ${sql.id(schema)}`.execute(db);
  await db.transaction().execute(async (trx) => {
    await sql`LOCK TABLE ${sql.id(from, BANYAN_LOG)} IN ACCESS EXCLUSIVE MODE`.execute(trx);
    for (const table of [...BANYAN_TABLES, BANYAN_LOG, `${BANYAN_LOG}_lock`]) {
      if ((await schemasHolding(trx, table)).includes(from)) {
        await sql`ALTER TABLE ${sql.id(from, table)} SET SCHEMA ${sql.id(schema)}`.execute(trx);
      }
    }
  });
}

async function schemasHolding(db: UntypedDb, table: string): Promise<string[]> {
  const r = await sql<{ schemaname: string }>`SELECT schemaname FROM pg_tables WHERE tablename = ${table} ORDER BY 1`.execute(db);
  return r.rows.map((row) => row.schemaname);
}

/**
 * Until 2026-12-03 Banyan's migrations and the demo package index's shared one log, `banyan_migration`.
 * Each set now has its own, and Kysely refuses a log that names a migration its list lacks, so a database
 * migrated before then has the index's rows moved to the index's log (`package_index_migration`, beside
 * the shared log, where the index's tables are) first, in one transaction, whichever set runs first.
 * The names are history, frozen here: later index migrations never were in the shared log.
 */
const SHARED_LOG_INDEX_MIGRATIONS = [
  '2026-11-21-01-package-index',
  '2026-11-22-01-release-order',
  '2026-11-23-02-ownership',
  '2026-11-23-03-core-metadata',
  '2026-11-23-04-digests',
];
export const INDEX_MIGRATION_TABLE = 'package_index_migration';

/** The shared log in `schema`, if there is one, gives up the index's rows. */
export async function splitSharedLog(db: UntypedDb, schema: string): Promise<void> {
  if (!(await schemasHolding(db, BANYAN_LOG)).includes(schema)) return;
  const shared = sql.id(schema, BANYAN_LOG);
  const indexLog = sql.id(schema, INDEX_MIGRATION_TABLE);
  const names = sql.join(SHARED_LOG_INDEX_MIGRATIONS.map((n) => sql.lit(n)));
  const found = await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${shared} WHERE name IN (${names})`.execute(db);
  if (!found.rows[0]?.n) return;
  await db.transaction().execute(async (trx) => {
    await sql`LOCK TABLE ${shared} IN EXCLUSIVE MODE`.execute(trx);
    await sql`CREATE TABLE IF NOT EXISTS ${indexLog} (LIKE ${shared} INCLUDING ALL)`.execute(trx);
    await sql`INSERT INTO ${indexLog} SELECT * FROM ${shared} WHERE name IN (${names}) ON CONFLICT DO NOTHING`.execute(trx);
    await sql`DELETE FROM ${shared} WHERE name IN (${names})`.execute(trx);
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
