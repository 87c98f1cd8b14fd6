import type { ColumnType, Generated } from 'kysely';
import type { CreatedAt, Timestamp } from '../lib/schema.js';

/**
 * The package index's tables, in the application's schema (normally `public`), as the migrations in
 * package-index/migrations/ leave them. Banyan's own are in lib/schema.ts.
 */
export interface IndexDatabase {
  users: UsersTable;
  api_tokens: ApiTokensTable;
  projects: ProjectsTable;
  project_roles: ProjectRolesTable;
  releases: ReleasesTable;
  files: FilesTable;
  journal: JournalTable;
  account_events: AccountEventsTable;
}

export interface UsersTable {
  id: Generated<string>;
  username: string;
  password_hash: string | null;
  email: string | null;
  is_active: Generated<boolean>;
  created_at: CreatedAt;
}

export interface ApiTokensTable {
  id: Generated<string>;
  user_id: string;
  description: string;
  token_hash: string;
  created_at: CreatedAt;
  last_used_at: Timestamp | null;
  /** The one project the token may upload to; null: every project its user may. */
  project_id: string | null;
}

export interface ProjectsTable {
  id: Generated<string>;
  name: string;
  normalized_name: string;
  last_serial: Generated<string>;
  created_at: CreatedAt;
}

export interface ProjectRolesTable {
  project_id: string;
  user_id: string;
  role: 'Owner' | 'Maintainer';
}

export interface ReleasesTable {
  id: Generated<string>;
  project_id: string;
  version: string;
  canonical_version: string;
  summary: string | null;
  requires_python: string | null;
  metadata: Generated<Record<string, unknown>>;
  yanked: Generated<boolean>;
  yanked_reason: string | null;
  /** PEP 440 order as a byte-wise sortable string (package-index/pep440.ts sortKey). */
  sort_key: string;
  is_prerelease: boolean;
  created_at: CreatedAt;
}

export interface FilesTable {
  id: Generated<string>;
  release_id: string;
  filename: string;
  packagetype: 'sdist' | 'bdist_wheel';
  python_version: string;
  requires_python: string | null;
  size: string;
  sha256_digest: string;
  path: string;
  upload_time: CreatedAt;
  /** SHA-256 of the wheel's METADATA, stored beside it as `<path>.metadata` (PEP 658); null when not extracted. */
  metadata_sha256: ColumnType<string | null, string | null | undefined, string | null>;
  md5_digest: ColumnType<string | null, string | null | undefined, string | null>;
  blake2_256_digest: ColumnType<string | null, string | null | undefined, string | null>;
}

export interface JournalTable {
  id: Generated<string>;
  project_name: string;
  version: string | null;
  action: string;
  submitted_by: string | null;
  submitted_at: CreatedAt;
}

export interface AccountEventsTable {
  id: Generated<string>;
  at: CreatedAt;
  /** Who made the change: a username, or `operator (<os user>)` for the command line. */
  actor: string;
  /** Whose role or token changed. */
  username: string;
  /** `add Maintainer`, `remove Owner`, `create token`, `revoke token`. */
  action: string;
  project_name: string | null;
  token_id: string | null;
}
