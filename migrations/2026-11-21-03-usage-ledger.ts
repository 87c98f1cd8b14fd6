import { sql } from 'kysely';
import type { UntypedDb } from './untyped.js';

/**
 * The durable usage ledger: hourly request counts per route, legacy feature
 * and backend, with the top user agents. Flush ids make a retried flush
 * count once.
 */
export async function up(db: UntypedDb): Promise<void> {
  await db.schema
    .createTable('usage_ledger')
    .addColumn('bucket', 'timestamptz', (c) => c.notNull())
    .addColumn('route', 'text', (c) => c.notNull())
    .addColumn('feature', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('backend', 'text', (c) => c.notNull())
    .addColumn('requests', 'bigint', (c) => c.notNull().check(sql`requests >= 0`))
    .addColumn('last_seen', 'timestamptz', (c) => c.notNull())
    .addPrimaryKeyConstraint('usage_ledger_pk', ['bucket', 'route', 'feature', 'backend'])
    .execute();
  await db.schema.createIndex('usage_ledger_route_idx').on('usage_ledger').columns(['route', 'bucket']).execute();

  await db.schema
    .createTable('usage_user_agents')
    .addColumn('bucket', 'timestamptz', (c) => c.notNull())
    .addColumn('route', 'text', (c) => c.notNull())
    .addColumn('feature', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('user_agent', 'text', (c) => c.notNull())
    .addColumn('requests', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('usage_user_agents_pk', ['bucket', 'route', 'feature', 'user_agent'])
    .execute();

  await db.schema
    .createTable('usage_flushes')
    .addColumn('flush_id', 'text', (c) => c.primaryKey())
    .addColumn('instance', 'text', (c) => c.notNull())
    .addColumn('flushed_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
}

export async function down(db: UntypedDb): Promise<void> {
  await db.schema.dropTable('usage_flushes').execute();
  await db.schema.dropTable('usage_user_agents').execute();
  await db.schema.dropTable('usage_ledger').execute();
}
