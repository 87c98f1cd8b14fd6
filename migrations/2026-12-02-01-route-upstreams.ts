import type { UntypedDb } from './untyped.js';

/**
 * Named upstreams, versioned with the routes: each table version keeps the
 * upstreams it sends to, and each audit row the upstreams before and after.
 * Null in rows written before this migration: those versions mean the
 * implicit pair (legacy from LEGACY_URL, app from APP_URL).
 */
export async function up(db: UntypedDb): Promise<void> {
  await db.schema.alterTable('route_table_versions').addColumn('upstreams', 'jsonb').execute();
  await db.schema.alterTable('route_audit').addColumn('before_upstreams', 'jsonb').addColumn('after_upstreams', 'jsonb').execute();
}

export async function down(db: UntypedDb): Promise<void> {
  await db.schema.alterTable('route_audit').dropColumn('before_upstreams').dropColumn('after_upstreams').execute();
  await db.schema.alterTable('route_table_versions').dropColumn('upstreams').execute();
}
