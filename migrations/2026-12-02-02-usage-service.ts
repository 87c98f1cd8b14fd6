import { sql } from 'kysely';
import type { UntypedDb } from './untyped.js';

/**
 * The usage ledger counts per service too (the upstream that answered:
 * legacy, app, files, …), so a route split across new services shows which
 * one served it. Rows counted before this get the two-backend world's names:
 * `new` was the app.
 */
export async function up(db: UntypedDb): Promise<void> {
  await sql`ALTER TABLE usage_ledger ADD COLUMN service text`.execute(db);
  await sql`UPDATE usage_ledger SET service = CASE backend WHEN 'new' THEN 'app' ELSE backend END`.execute(db);
  await sql`ALTER TABLE usage_ledger ALTER COLUMN service SET NOT NULL`.execute(db);
  await sql`ALTER TABLE usage_ledger DROP CONSTRAINT usage_ledger_pk`.execute(db);
  await sql`ALTER TABLE usage_ledger ADD CONSTRAINT usage_ledger_pk PRIMARY KEY (bucket, route, feature, backend, status_class, service)`.execute(
    db,
  );
}

export async function down(db: UntypedDb): Promise<void> {
  // Rows that differ only by service become one row again.
  await sql`CREATE TEMP TABLE usage_ledger_merged AS
    SELECT bucket, route, feature, backend, status_class, sum(requests)::bigint AS requests, max(last_seen) AS last_seen
      FROM usage_ledger GROUP BY bucket, route, feature, backend, status_class`.execute(db);
  await sql`DELETE FROM usage_ledger`.execute(db);
  await sql`ALTER TABLE usage_ledger DROP CONSTRAINT usage_ledger_pk`.execute(db);
  await sql`ALTER TABLE usage_ledger DROP COLUMN service`.execute(db);
  await sql`ALTER TABLE usage_ledger ADD CONSTRAINT usage_ledger_pk PRIMARY KEY (bucket, route, feature, backend, status_class)`.execute(
    db,
  );
  await sql`INSERT INTO usage_ledger (bucket, route, feature, backend, status_class, requests, last_seen)
    SELECT bucket, route, feature, backend, status_class, requests, last_seen FROM usage_ledger_merged`.execute(db);
  await sql`DROP TABLE usage_ledger_merged`.execute(db);
}
