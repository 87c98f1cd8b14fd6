import { createHash } from 'node:crypto';
import type { Kysely } from 'kysely';
import { digestsOf, type FileStore } from '../lib/file-store.js';
import { normalizeName } from '../package-index/names.js';
import type { IndexDatabase } from '../package-index/schema.js';
import { projectCacheKey, type GenerationBumper } from '../package-index/write-announcer.js';
import { ArchiveError, DEFAULT_ARCHIVE_LIMITS, readWheel } from './upload/index.js';
import { parseFilename } from './platform.js';

export interface BackfillResult {
  readonly extracted: number;
  /** Files that could not be read (missing from the store, broken archive), with why. */
  readonly skipped: { readonly filename: string; readonly why: string }[];
}

export interface BackfillOptions {
  /** Only this project's files. */
  readonly project?: string | undefined;
  readonly progress?: (done: number, total: number) => void;
}

interface FileRow {
  readonly id: string;
  readonly filename: string;
  readonly path: string;
  readonly normalized_name: string;
}

/**
 * Extracts the METADATA of wheels uploaded before PEP 658 support (their
 * `metadata_sha256` is null), writes `<file>.metadata` beside each and
 * records its hash. Safe to run again: it only looks at wheels still without.
 */
export function backfillMetadata(
  db: Kysely<IndexDatabase>,
  store: FileStore,
  cache: GenerationBumper | undefined,
  options: BackfillOptions = {},
): Promise<BackfillResult> {
  return eachFile(db, cache, options, 'metadata_sha256', async (row) => {
    const dist = parseFilename(row.filename);
    const absolute = store.resolve(row.path);
    if (!dist || dist.kind !== 'wheel' || !absolute) throw new ArchiveError('not a wheel file name or a stored path', 'bad-archive');
    const { metadata } = await readWheel(absolute, `${dist.name}-${dist.version}.dist-info`, DEFAULT_ARCHIVE_LIMITS);
    await store.writeBeside(row.path, '.metadata', metadata);
    await db
      .updateTable('files')
      .set({ metadata_sha256: createHash('sha256').update(metadata).digest('hex') })
      .where('id', '=', row.id)
      .execute();
  });
}

/** Computes the MD5 and BLAKE2b-256 digests of files stored before they were kept at upload. */
export function backfillDigests(
  db: Kysely<IndexDatabase>,
  store: FileStore,
  cache: GenerationBumper | undefined,
  options: BackfillOptions = {},
): Promise<BackfillResult> {
  return eachFile(db, cache, options, 'md5_digest', async (row) => {
    const absolute = store.resolve(row.path);
    if (!absolute) throw new Error('not a stored path');
    const d = await digestsOf(absolute);
    await db.updateTable('files').set({ md5_digest: d.md5, blake2_256_digest: d.blake2b256 }).where('id', '=', row.id).execute();
  });
}

/** Runs `work` on every file whose `missing` column is null, counting and explaining failures, then refreshes the projects' cached pages. */
async function eachFile(
  db: Kysely<IndexDatabase>,
  cache: GenerationBumper | undefined,
  options: BackfillOptions,
  missing: 'metadata_sha256' | 'md5_digest',
  work: (row: FileRow) => Promise<void>,
): Promise<BackfillResult> {
  const rows = await db
    .selectFrom('files')
    .innerJoin('releases', 'releases.id', 'files.release_id')
    .innerJoin('projects', 'projects.id', 'releases.project_id')
    .select(['files.id', 'files.filename', 'files.path', 'projects.normalized_name'])
    .where(`files.${missing}`, 'is', null)
    .$if(missing === 'metadata_sha256', (q) => q.where('files.packagetype', '=', 'bdist_wheel'))
    .$if(options.project !== undefined, (q) => q.where('projects.normalized_name', '=', normalizeName(options.project!)))
    .orderBy('files.id')
    .execute();
  const skipped: { filename: string; why: string }[] = [];
  const touched = new Set<string>();
  let extracted = 0;
  for (const [i, row] of rows.entries()) {
    try {
      await work(row);
      touched.add(row.normalized_name);
      extracted++;
    } catch (err) {
      skipped.push({ filename: row.filename, why: (err as Error).message });
    }
    options.progress?.(i + 1, rows.length);
  }
  if (cache && touched.size) await cache.invalidate(...[...touched].map(projectCacheKey));
  return { extracted, skipped };
}
