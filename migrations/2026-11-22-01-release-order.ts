import { sql, type Kysely } from 'kysely';
import { isPrerelease, parseVersion, sortKey } from '../lib/pep440.js';

/**
 * PEP 440 order in the database: `sort_key` sorts byte-wise (COLLATE "C") in
 * PEP 440 order, so the latest release and a page of releases come from an
 * index however many releases a project has.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('releases')
    .addColumn('sort_key', sql`text COLLATE "C"`, (c) => c.notNull().defaultTo(''))
    .addColumn('is_prerelease', 'boolean', (c) => c.notNull().defaultTo(false))
    .execute();
  const rows = await db.selectFrom('releases').select(['id', 'version']).execute() as { id: string; version: string }[];
  for (const row of rows) {
    const v = parseVersion(row.version);
    if (!v) continue;
    await db.updateTable('releases').set({ sort_key: sortKey(v), is_prerelease: isPrerelease(v) }).where('id', '=', row.id).execute();
  }
  await db.schema.createIndex('releases_project_order_idx').on('releases').columns(['project_id', 'sort_key desc']).execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('releases_project_order_idx').execute();
  await db.schema.alterTable('releases').dropColumn('sort_key').dropColumn('is_prerelease').execute();
}
