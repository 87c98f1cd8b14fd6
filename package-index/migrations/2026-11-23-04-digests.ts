import { sql } from 'kysely';
import type { UntypedDb } from '../../migrations/untyped.js';

/**
 * The MD5 and BLAKE2b-256 digests Warehouse's JSON API gives beside SHA-256,
 * computed at upload. Null for files stored before (`banyan backfill digests`).
 */
export async function up(db: UntypedDb): Promise<void> {
  await db.schema
    .alterTable('files')
    .addColumn('md5_digest', 'text', (c) => c.check(sql`md5_digest ~ '^[0-9a-f]{32}$'`))
    .addColumn('blake2_256_digest', 'text', (c) => c.check(sql`blake2_256_digest ~ '^[0-9a-f]{64}$'`))
    .execute();
}

export async function down(db: UntypedDb): Promise<void> {
  await db.schema.alterTable('files').dropColumn('md5_digest').dropColumn('blake2_256_digest').execute();
}
