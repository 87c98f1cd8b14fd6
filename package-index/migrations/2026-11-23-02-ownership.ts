import { sql } from 'kysely';
import type { UntypedDb } from '../../migrations/untyped.js';

/**
 * Ownership as Warehouse has it: API tokens can be scoped to one project,
 * and every change of a role or a token is recorded in `account_events`
 * (who did it, to whom, on which project), next to the release journal.
 */
export async function up(db: UntypedDb): Promise<void> {
  await db.schema
    .alterTable('api_tokens')
    .addColumn('project_id', 'bigint', (c) => c.references('projects.id').onDelete('cascade'))
    .execute();
  await db.schema
    .createTable('account_events')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('actor', 'text', (c) => c.notNull())
    .addColumn('username', 'text', (c) => c.notNull())
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('project_name', 'text')
    .addColumn('token_id', 'bigint')
    .execute();
  await db.schema.createIndex('account_events_username_idx').on('account_events').columns(['username', 'at']).execute();
  // Project creation is rate-limited per account, counted from the journal's "create" rows.
  await db.schema
    .createIndex('journal_creates_idx')
    .on('journal')
    .columns(['submitted_by', 'submitted_at'])
    .where(sql.ref('action'), '=', 'create')
    .execute();
}

export async function down(db: UntypedDb): Promise<void> {
  await db.schema.dropIndex('journal_creates_idx').execute();
  await db.schema.dropTable('account_events').execute();
  await db.schema.alterTable('api_tokens').dropColumn('project_id').execute();
}
