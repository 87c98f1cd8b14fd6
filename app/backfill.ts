import { createHash } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { FileStore } from '../lib/file-store.js';
import type { Database } from '../lib/schema.js';
import { projectCacheKey, type GenerationBumper } from '../lib/write-announcer.js';
import { ArchiveError, DEFAULT_ARCHIVE_LIMITS, readWheel } from './archive.js';
import { normalizeName } from '../lib/names.js';
import { parseFilename } from './platform.js';

export interface BackfillResult {
  readonly extracted: number;
  /** Wheels whose METADATA could not be read (missing file, broken archive), with why. */
  readonly skipped: { readonly filename: string; readonly why: string }[];
}

/**
 * Extracts the METADATA of wheels uploaded before PEP 658 support (their
 * `metadata_sha256` is null), writes `<file>.metadata` beside each, records
 * its hash, and refreshes the cached simple pages of the projects touched.
 * Safe to run again: it only looks at wheels still without metadata.
 */
export async function backfillMetadata(db: Kysely<Database>, store: FileStore, cache: GenerationBumper | undefined,
  options: { project?: string | undefined; progress?: (done: number, total: number) => void } = {}): Promise<BackfillResult> {
  const progress = options.progress ?? (() => {});
  const rows = await db.selectFrom('files').innerJoin('releases', 'releases.id', 'files.release_id').innerJoin('projects', 'projects.id', 'releases.project_id')
    .select(['files.id', 'files.filename', 'files.path', 'projects.normalized_name']).where('files.packagetype', '=', 'bdist_wheel')
    .where('files.metadata_sha256', 'is', null)
    .$if(options.project !== undefined, (q) => q.where('projects.normalized_name', '=', normalizeName(options.project!)))
    .orderBy('files.id').execute();
  const skipped: { filename: string; why: string }[] = [];
  const touched = new Set<string>();
  let extracted = 0;
  for (const [i, row] of rows.entries()) {
    const dist = parseFilename(row.filename);
    const absolute = store.resolve(row.path);
    try {
      if (!dist || !absolute) throw new ArchiveError('not a wheel file name or a stored path', 'bad-archive');
      const { metadata } = await readWheel(absolute, `${dist.name}-${dist.version}.dist-info`, DEFAULT_ARCHIVE_LIMITS);
      await store.writeBeside(row.path, '.metadata', metadata);
      await db.updateTable('files').set({ metadata_sha256: createHash('sha256').update(metadata).digest('hex') }).where('id', '=', row.id).execute();
      touched.add(row.normalized_name);
      extracted++;
    } catch (err) {
      skipped.push({ filename: row.filename, why: (err as Error).message });
    }
    progress(i + 1, rows.length);
  }
  if (cache && touched.size) await cache.invalidate(...[...touched].map(projectCacheKey));
  return { extracted, skipped };
}
