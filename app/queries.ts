import type { Kysely } from 'kysely';
import type { IndexDatabase } from '../package-index/schema.js';

export interface ProjectRow {
  id: string;
  name: string;
  normalized_name: string;
  last_serial: string;
}

export interface FileRow {
  filename: string;
  path: string;
  packagetype: 'sdist' | 'bdist_wheel';
  python_version: string;
  requires_python: string | null;
  size: string;
  sha256_digest: string;
  upload_time: Date;
  /** SHA-256 of `<url>.metadata` (PEP 658), when the file has one. */
  metadata_sha256: string | null;
  md5_digest: string | null;
  blake2_256_digest: string | null;
  version: string;
  yanked: boolean;
  yanked_reason: string | null;
}

export function findProject(db: Kysely<IndexDatabase>, normalized: string): Promise<ProjectRow | undefined> {
  return db
    .selectFrom('projects')
    .select(['id', 'name', 'normalized_name', 'last_serial'])
    .where('normalized_name', '=', normalized)
    .executeTakeFirst();
}

function fileQuery(db: Kysely<IndexDatabase>) {
  return db
    .selectFrom('files')
    .innerJoin('releases', 'releases.id', 'files.release_id')
    .select([
      'files.filename',
      'files.path',
      'files.packagetype',
      'files.python_version',
      'files.requires_python',
      'files.size',
      'files.sha256_digest',
      'files.upload_time',
      'files.metadata_sha256',
      'files.md5_digest',
      'files.blake2_256_digest',
      'releases.version',
      'releases.yanked',
      'releases.yanked_reason',
    ]);
}

/** Runs reads on the request's server (RequestDb.read: on the primary instead if that server is gone). */
export type Reads = <T>(fn: (db: Kysely<IndexDatabase>) => Promise<T>) => Promise<T>;

/** The versions that have files, in PEP 440 order (PEP 700's `versions`, as the simple page lists them). */
export async function versionsWithFiles(db: Kysely<IndexDatabase>, projectId: string): Promise<string[]> {
  const rows = await db
    .selectFrom('releases')
    .select('version')
    .where('project_id', '=', projectId)
    .where((eb) => eb.exists(eb.selectFrom('files').select('files.id').whereRef('files.release_id', '=', 'releases.id')))
    .orderBy('sort_key')
    .orderBy('id')
    .execute();
  return rows.map((r) => r.version);
}

export function releaseFiles(db: Kysely<IndexDatabase>, releaseId: string): Promise<FileRow[]> {
  return fileQuery(db).where('files.release_id', '=', releaseId).orderBy('files.filename').execute();
}

export interface ReleaseRow {
  id: string;
  version: string;
  summary: string | null;
  requires_python: string | null;
  metadata: Record<string, unknown>;
  yanked: boolean;
  yanked_reason: string | null;
  is_prerelease: boolean;
  created_at: Date;
}

const RELEASE_COLUMNS = [
  'id',
  'version',
  'summary',
  'requires_python',
  'metadata',
  'yanked',
  'yanked_reason',
  'is_prerelease',
  'created_at',
] as const;

/**
 * The release pip would call latest: the highest PEP 440 version that is not
 * yanked and not a pre-release, else the highest pre-release. Two index lookups at most.
 */
export async function latestRelease(db: Kysely<IndexDatabase>, projectId: string): Promise<ReleaseRow | undefined> {
  const base = () =>
    db.selectFrom('releases').select(RELEASE_COLUMNS).where('project_id', '=', projectId).orderBy('sort_key', 'desc').limit(1);
  // As Warehouse: the newest final release, else the newest pre-release, and only when every release is yanked the newest yanked one.
  return (
    (await base().where('yanked', '=', false).where('is_prerelease', '=', false).executeTakeFirst()) ??
    (await base().where('yanked', '=', false).executeTakeFirst()) ??
    (await base().executeTakeFirst())
  );
}

export function findRelease(db: Kysely<IndexDatabase>, projectId: string, canonical: string): Promise<ReleaseRow | undefined> {
  return db
    .selectFrom('releases')
    .select(RELEASE_COLUMNS)
    .where('project_id', '=', projectId)
    .where('canonical_version', '=', canonical)
    .executeTakeFirst();
}

/** One page of releases, newest (PEP 440) first; asks for one more to know whether a next page exists. */
export function releasePage(db: Kysely<IndexDatabase>, projectId: string, offset: number, size: number) {
  return db
    .selectFrom('releases')
    .select(['version', 'created_at', 'yanked', 'is_prerelease'])
    .where('project_id', '=', projectId)
    .orderBy('sort_key', 'desc')
    .offset(offset)
    .limit(size + 1)
    .execute();
}
