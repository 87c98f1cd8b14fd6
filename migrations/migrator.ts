import { Migrator, NO_MIGRATIONS, type Migration, type MigrationProvider, type MigrationResultSet } from 'kysely';
import { BanyanError } from '../lib/errors.js';
import { fillDerivedData } from './derived-data.js';
import * as packageIndex from './2026-11-21-01-package-index.js';
import * as routeTable from './2026-11-21-02-route-table.js';
import * as usageLedger from './2026-11-21-03-usage-ledger.js';
import * as releaseOrder from './2026-11-22-01-release-order.js';
import * as usageStatus from './2026-11-23-01-usage-status.js';
import * as ownership from './2026-11-23-02-ownership.js';
import * as coreMetadata from './2026-11-23-03-core-metadata.js';
import * as digests from './2026-11-23-04-digests.js';
import * as autopilot from './2026-11-23-05-autopilot.js';
import * as routeUpstreams from './2026-12-02-01-route-upstreams.js';
import * as usageService from './2026-12-02-02-usage-service.js';
import * as planGates from './2026-12-02-03-plan-gates.js';
import type { UntypedDb } from './untyped.js';

/**
 * Every migration, in order. Names are dated so they sort; each file has an
 * `up` and a `down`. Listed here rather than read from the folder so a
 * missing or misnamed file is a type error, not a silent skip.
 */
const MIGRATIONS: Record<string, Migration> = {
  '2026-11-21-01-package-index': packageIndex,
  '2026-11-21-02-route-table': routeTable,
  '2026-11-21-03-usage-ledger': usageLedger,
  '2026-11-22-01-release-order': releaseOrder,
  '2026-11-23-01-usage-status': usageStatus,
  '2026-11-23-02-ownership': ownership,
  '2026-11-23-03-core-metadata': coreMetadata,
  '2026-11-23-04-digests': digests,
  '2026-11-23-05-autopilot': autopilot,
  '2026-12-02-01-route-upstreams': routeUpstreams,
  '2026-12-02-02-usage-service': usageService,
  '2026-12-02-03-plan-gates': planGates,
};

const provider: MigrationProvider = { getMigrations: async () => MIGRATIONS };

/** One line of `banyan migrate status`. */
export interface MigrationStatus {
  readonly name: string;
  readonly executedAt: Date | null;
}

/** A Kysely Migrator over our migrations; run it on the primary only. */
export function migrator(db: UntypedDb): Migrator {
  return new Migrator({ db, provider, migrationTableName: 'banyan_migration', migrationLockTableName: 'banyan_migration_lock' });
}

/** Applies every pending migration, or throws naming the one that failed; then fills derived data where missing. */
export async function migrateUp(db: UntypedDb): Promise<string[]> {
  const done = applied(await migrator(db).migrateToLatest(), 'up');
  await fillDerivedData(db);
  return done;
}

/** Undoes the most recent migration (`all`: every one). */
export async function migrateDown(db: UntypedDb, all = false): Promise<string[]> {
  const m = migrator(db);
  if (!all) return applied(await m.migrateDown(), 'down');
  return applied(await m.migrateTo(NO_MIGRATIONS), 'down');
}

/** Every known migration and when it ran (null: pending). */
export async function migrationStatus(db: UntypedDb): Promise<MigrationStatus[]> {
  const list = await migrator(db).getMigrations();
  return list.map((m) => ({ name: m.name, executedAt: m.executedAt ?? null }));
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
