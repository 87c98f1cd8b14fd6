import { sql } from 'kysely';
import type { UntypedDb } from './untyped.js';

/** The versioned route table and its audit log (who changed what, when and why). */
export async function up(db: UntypedDb): Promise<void> {
  await db.schema
    .createTable('route_table_versions')
    .addColumn('version', 'integer', (c) => c.primaryKey().check(sql`version > 0`))
    .addColumn('routes', 'jsonb', (c) => c.notNull())
    .addColumn('actor', 'text', (c) => c.notNull())
    .addColumn('reason', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();

  await db.schema
    .createTable('route_audit')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('version', 'integer', (c) => c.notNull().references('route_table_versions.version'))
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('actor', 'text', (c) => c.notNull())
    .addColumn('reason', 'text', (c) => c.notNull())
    .addColumn('before', 'jsonb')
    .addColumn('after', 'jsonb', (c) => c.notNull())
    .addColumn('at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex('route_audit_at_idx').on('route_audit').column('at').execute();
}

export async function down(db: UntypedDb): Promise<void> {
  await db.schema.dropTable('route_audit').execute();
  await db.schema.dropTable('route_table_versions').execute();
}
