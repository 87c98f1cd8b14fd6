import { sql } from 'kysely';
import type { UntypedDb } from './untyped.js';

/**
 * Plans that wait for a person and plans that only watch: the step a plan
 * waits to be approved into, who approved which step, and the rollbacks a
 * dry-run budget would have made.
 */
export async function up(db: UntypedDb): Promise<void> {
  await sql`ALTER TABLE cutover_plans ADD COLUMN awaiting integer`.execute(db);
  await sql`ALTER TABLE cutover_plans ADD COLUMN approvals jsonb NOT NULL DEFAULT '[]'`.execute(db);
  await sql`ALTER TABLE cutover_plans ADD COLUMN watched jsonb NOT NULL DEFAULT '[]'`.execute(db);
}

export async function down(db: UntypedDb): Promise<void> {
  await sql`ALTER TABLE cutover_plans DROP COLUMN watched`.execute(db);
  await sql`ALTER TABLE cutover_plans DROP COLUMN approvals`.execute(db);
  await sql`ALTER TABLE cutover_plans DROP COLUMN awaiting`.execute(db);
}
