/** A checked upload stored: its project, release and file rows with the journal, and the file moved into place, in one transaction. */

import type { LoginThrottle } from '../../lib/login-throttle.js';
import { createHash } from 'node:crypto';
import type { Kysely } from 'kysely';
import { journal, lockProject } from '../../package-index/write-announcer.js';
import type { IndexDatabase } from '../../package-index/schema.js';
import type { Account } from '../../package-index/accounts.js';
import { createProject, uploadRefusal } from '../../package-index/ownership.js';
import type { ArchiveLimits } from './archive.js';
import { storagePath, type FileStore } from '../../lib/file-store.js';
import { UploadError } from './upload-errors.js';
import type { CheckedUpload } from './upload-validation.js';

export interface UploadContext {
  readonly writer: Kysely<IndexDatabase>;
  readonly store: FileStore;
  readonly maxUploadBytes: number;
  /** New projects one account may create in an hour (BANYAN_PROJECTS_PER_HOUR). */
  readonly projectsPerHour: number;
  /** What an archive may unpack to (zip bombs); DEFAULT_ARCHIVE_LIMITS when absent. */
  readonly archiveLimits?: ArchiveLimits | undefined;
  /** Password logins' throttle; absent: not throttled. */
  readonly logins?: LoginThrottle | undefined;
}

export interface UploadResult {
  /** `stored`: a new file; `exists`: the identical file was already there (nothing changed). */
  readonly outcome: 'stored' | 'exists';
  readonly project: string;
  readonly projectCreated: boolean;
  readonly filename: string;
  readonly account: Account;
}

export async function store(ctx: UploadContext, account: Account, u: CheckedUpload): Promise<UploadResult> {
  const path = storagePath(u.content.sha256, u.content.filename);
  let placed = false;
  try {
    return await ctx.writer.transaction().execute(async (trx) => {
      // One upload per project at a time: the checks below and the inserts see one consistent state.
      await lockProject(trx, u.normalized);
      let project = await trx.selectFrom('projects').select(['id', 'name']).where('normalized_name', '=', u.normalized).executeTakeFirst();
      const refusal = await uploadRefusal(trx, account, project, ctx.projectsPerHour);
      if (refusal) throw new UploadError(refusal.status, refusal.message, refusal.reason);
      let projectCreated = false;
      if (!project) {
        const created = (await createProject(trx, account, u.name))!;
        project = { id: created.id, name: u.name };
        projectCreated = true;
      }
      const existing = await trx
        .selectFrom('files')
        .innerJoin('releases', 'releases.id', 'files.release_id')
        .select(['files.sha256_digest', 'releases.project_id'])
        .where('files.filename', '=', u.content.filename)
        .executeTakeFirst();
      if (existing) {
        if (existing.sha256_digest === u.content.sha256 && existing.project_id === project.id) {
          return { outcome: 'exists' as const, project: u.normalized, projectCreated, filename: u.content.filename, account };
        }
        throw new UploadError(
          400,
          `File already exists ('${u.content.filename}', with sha256 hash ${existing.sha256_digest}). Use a new version number; a file name can never be reused.`,
          'file-exists',
        );
      }
      let release = await trx
        .selectFrom('releases')
        .select('id')
        .where('project_id', '=', project.id)
        .where('canonical_version', '=', u.canonical)
        .executeTakeFirst();
      if (release && u.filetype === 'sdist') {
        const sdist = await trx
          .selectFrom('files')
          .select('filename')
          .where('release_id', '=', release.id)
          .where('packagetype', '=', 'sdist')
          .executeTakeFirst();
        if (sdist)
          throw new UploadError(400, `Only one sdist may be uploaded per release: ${sdist.filename} is already there.`, 'second-sdist');
      }
      if (!release) {
        release = await trx
          .insertInto('releases')
          .values({
            project_id: project.id,
            version: u.version,
            canonical_version: u.canonical,
            sort_key: u.sortKey,
            is_prerelease: u.prerelease,
            summary: (u.metadata['summary'] as string | undefined) ?? null,
            requires_python: u.requiresPython,
            metadata: JSON.stringify(u.metadata) as never,
          })
          .returning('id')
          .executeTakeFirstOrThrow();
        await journal(trx, project.id, u.normalized, u.version, 'new release', account.username);
      }
      // A wheel's METADATA is served beside it (PEP 658), so pip need not download the wheel to resolve.
      const coreMetadata = u.filetype === 'bdist_wheel' ? u.coreMetadata : undefined;
      await trx
        .insertInto('files')
        .values({
          release_id: release.id,
          filename: u.content.filename,
          packagetype: u.filetype,
          python_version: u.pyversion,
          requires_python: u.requiresPython,
          size: String(u.content.size),
          sha256_digest: u.content.sha256,
          path,
          metadata_sha256: coreMetadata ? createHash('sha256').update(coreMetadata).digest('hex') : null,
          md5_digest: u.content.md5,
          blake2_256_digest: u.content.blake2b256,
        })
        .execute();
      await journal(trx, project.id, u.normalized, u.version, `add ${u.pyversion} file ${u.content.filename}`, account.username);
      await ctx.store.commit(u.content, path);
      placed = true;
      if (coreMetadata) await ctx.store.writeBeside(path, '.metadata', coreMetadata);
      return { outcome: 'stored' as const, project: u.normalized, projectCreated, filename: u.content.filename, account };
    });
  } catch (err) {
    // The rename happened but the commit did not: take the file back out.
    if (placed) await ctx.store.remove(path);
    throw err;
  } finally {
    if (!placed) await ctx.store.discard(u.content);
  }
}
