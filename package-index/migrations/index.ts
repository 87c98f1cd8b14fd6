import { INDEX_MIGRATION_TABLE, migrationSet, splitSharedLog } from '../../migrations/migrator.js';
import * as packageIndex from './2026-11-21-01-package-index.js';
import * as releaseOrder from './2026-11-22-01-release-order.js';
import * as ownership from './2026-11-23-02-ownership.js';
import * as coreMetadata from './2026-11-23-03-core-metadata.js';
import * as digests from './2026-11-23-04-digests.js';
import { fillDerivedData } from './derived-data.js';

/**
 * The package index's tables (users, API tokens, projects, roles, releases, files, the journal), with a
 * log of their own: `banyan migrate up` does not create them; `npm start` and `banyan index-migrate up`
 * do, where the index runs, in the application's schema, `public`.
 */
export const INDEX_MIGRATIONS = migrationSet({
  table: INDEX_MIGRATION_TABLE,
  // Named, not left to the search path: its default ("$user", public) would put the tables in a schema
  // named after the database user, Banyan's own when that user is called banyan.
  schema: 'public',
  before: (db) => splitSharedLog(db, 'public'),
  migrations: {
    '2026-11-21-01-package-index': packageIndex,
    '2026-11-22-01-release-order': releaseOrder,
    '2026-11-23-02-ownership': ownership,
    '2026-11-23-03-core-metadata': coreMetadata,
    '2026-11-23-04-digests': digests,
  },
  afterUp: fillDerivedData,
});
