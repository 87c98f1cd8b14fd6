import { sql } from 'kysely';
import type { UntypedDb } from '../../migrations/untyped.js';

/**
 * PEP 658/714: each wheel's METADATA is stored beside it (`<file>.metadata`)
 * and its sha256 kept here, so the simple pages can advertise it and pip
 * reads a wheel's dependencies without downloading the wheel. Null: not
 * extracted (sdists, and files uploaded before, until `banyan backfill metadata`).
 */
export async function up(db: UntypedDb): Promise<void> {
  await db.schema
    .alterTable('files')
    .addColumn('metadata_sha256', 'text', (c) => c.check(sql`metadata_sha256 ~ '^[0-9a-f]{64}$'`))
    .execute();
}

export async function down(db: UntypedDb): Promise<void> {
  await db.schema.alterTable('files').dropColumn('metadata_sha256').execute();
}
