import { isPrerelease, parseVersion, sortKey } from '../pep440.js';
import type { UntypedDb } from '../../migrations/untyped.js';

/**
 * Columns the index derives from a row with the running code's rules, filled
 * where missing after every `migrate up`. Dated migrations stay frozen (schema
 * and SQL only): a later change to these rules cannot change what an old
 * migration did, and derived values always come from the code that reads them.
 */
export async function fillDerivedData(db: UntypedDb): Promise<void> {
  await fillReleaseOrder(db);
}

/** PEP 440 sort keys of releases stored before `2026-11-22-01-release-order` (theirs is ''). */
async function fillReleaseOrder(db: UntypedDb): Promise<void> {
  const rows = (await db.selectFrom('releases').select(['id', 'version']).where('sort_key', '=', '').execute()) as {
    id: string;
    version: string;
  }[];
  for (const row of rows) {
    const v = parseVersion(row.version);
    if (!v) continue;
    await db
      .updateTable('releases')
      .set({ sort_key: sortKey(v), is_prerelease: isPrerelease(v) })
      .where('id', '=', row.id)
      .execute();
  }
}
