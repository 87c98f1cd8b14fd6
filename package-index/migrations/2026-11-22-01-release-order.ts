import { sql } from 'kysely';
import type { UntypedDb } from '../../migrations/untyped.js';

/**
 * PEP 440 order in the database: `sort_key` sorts byte-wise (COLLATE "C") in
 * PEP 440 order, so the latest release and a page of releases come from an
 * index however many releases a project has. Frozen, like every migration:
 * the keys of releases that existed before it are filled by the migrator's
 * derived-data step (`derived-data.ts`), with the rules the running code uses.
 */
export async function up(db: UntypedDb): Promise<void> {
  await db.schema
    .alterTable('releases')
    .addColumn('sort_key', sql`text COLLATE "C"`, (c) => c.notNull().defaultTo(''))
    .addColumn('is_prerelease', 'boolean', (c) => c.notNull().defaultTo(false))
    .execute();
  await db.schema.createIndex('releases_project_order_idx').on('releases').columns(['project_id', 'sort_key desc']).execute();
}

export async function down(db: UntypedDb): Promise<void> {
  await db.schema.dropIndex('releases_project_order_idx').execute();
  await db.schema.alterTable('releases').dropColumn('sort_key').dropColumn('is_prerelease').execute();
}
