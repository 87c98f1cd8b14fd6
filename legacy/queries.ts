import type { IndexDatabase } from '../package-index/schema.js';
import { sql } from 'kysely';
import type { RequestDb } from '../routing/reads/index.js';

/** A project as the old pages show it. */
export interface LegacyProject {
  readonly id: string;
  readonly name: string;
  readonly normalized_name: string;
  readonly last_serial: string;
}

/** A file with its release, in upload order: the old index listed files as they came. */
export interface LegacyFile {
  readonly filename: string;
  readonly path: string;
  readonly packagetype: string;
  readonly python_version: string;
  readonly requires_python: string | null;
  readonly size: string;
  readonly sha256_digest: string;
  readonly upload_time: Date;
  readonly version: string;
}

/** A release with its metadata. */
export interface LegacyRelease {
  readonly id: string;
  readonly version: string;
  readonly summary: string | null;
  readonly requires_python: string | null;
  readonly metadata: Record<string, unknown>;
  readonly yanked: boolean;
  readonly created_at: Date;
}

export async function findProject(db: RequestDb<IndexDatabase>, normalized: string): Promise<LegacyProject | undefined> {
  const { rows } = await db.read((r) =>
    sql<LegacyProject>`
    SELECT id, name, normalized_name, last_serial FROM projects WHERE normalized_name = ${normalized}`.execute(r),
  );
  return rows[0];
}

/** The project's files (of one release when `version` is given), oldest first. */
export async function projectFiles(db: RequestDb<IndexDatabase>, projectId: string, version?: string): Promise<LegacyFile[]> {
  const { rows } = await db.read((r) =>
    sql<LegacyFile>`
    SELECT f.filename, f.path, f.packagetype, f.python_version, f.requires_python, f.size, f.sha256_digest, f.upload_time, r.version
      FROM files f JOIN releases r ON r.id = f.release_id
     WHERE r.project_id = ${projectId} ${version === undefined ? sql`` : sql`AND r.canonical_version = ${version}`}
     ORDER BY f.upload_time, f.id`.execute(r),
  );
  return rows;
}

/** Releases, newest version first (PEP 440 order: the `sort_key` contract), at most `limit`. */
export async function projectReleases(db: RequestDb<IndexDatabase>, projectId: string, limit: number): Promise<LegacyRelease[]> {
  const { rows } = await db.read((r) =>
    sql<LegacyRelease>`
    SELECT id, version, summary, requires_python, metadata, yanked, created_at FROM releases
     WHERE project_id = ${projectId} ORDER BY sort_key DESC LIMIT ${limit}`.execute(r),
  );
  return rows;
}

export async function findRelease(db: RequestDb<IndexDatabase>, projectId: string, canonical: string): Promise<LegacyRelease | undefined> {
  const { rows } = await db.read((r) =>
    sql<LegacyRelease>`
    SELECT id, version, summary, requires_python, metadata, yanked, created_at FROM releases
     WHERE project_id = ${projectId} AND canonical_version = ${canonical}`.execute(r),
  );
  return rows[0];
}
