import { sql } from 'kysely';
import type { UntypedDb } from './untyped.js';

/**
 * The usage ledger counts per status class too, so a route that only answers
 * 404s (scanners, stale links) is not mistaken for one in use. Rows counted
 * before this have `unknown`.
 */
export async function up(db: UntypedDb): Promise<void> {
  await sql`ALTER TABLE usage_ledger ADD COLUMN status_class text NOT NULL DEFAULT 'unknown'`.execute(db);
  await sql`ALTER TABLE usage_ledger DROP CONSTRAINT usage_ledger_pk`.execute(db);
  await sql`ALTER TABLE usage_ledger ADD CONSTRAINT usage_ledger_pk PRIMARY KEY (bucket, route, feature, backend, status_class)`.execute(
    db,
  );
  await sql`ALTER TABLE usage_ledger ADD CONSTRAINT usage_ledger_status_class_check
    CHECK (status_class IN ('1xx', '2xx', '3xx', '4xx', '5xx', 'aborted', 'unknown'))`.execute(db);
}

export async function down(db: UntypedDb): Promise<void> {
  // Rows that differ only by status class become one row again.
  await sql`CREATE TEMP TABLE usage_ledger_merged AS
    SELECT bucket, route, feature, backend, sum(requests)::bigint AS requests, max(last_seen) AS last_seen
      FROM usage_ledger GROUP BY bucket, route, feature, backend`.execute(db);
  await sql`DELETE FROM usage_ledger`.execute(db);
  await sql`ALTER TABLE usage_ledger DROP CONSTRAINT usage_ledger_status_class_check`.execute(db);
  await sql`ALTER TABLE usage_ledger DROP CONSTRAINT usage_ledger_pk`.execute(db);
  await sql`ALTER TABLE usage_ledger DROP COLUMN status_class`.execute(db);
  await sql`ALTER TABLE usage_ledger ADD CONSTRAINT usage_ledger_pk PRIMARY KEY (bucket, route, feature, backend)`.execute(db);
  await sql`INSERT INTO usage_ledger (bucket, route, feature, backend, requests, last_seen)
    SELECT bucket, route, feature, backend, requests, last_seen FROM usage_ledger_merged`.execute(db);
  await sql`DROP TABLE usage_ledger_merged`.execute(db);
}
