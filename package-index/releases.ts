import type { Kysely } from 'kysely';
import { BanyanError } from '../lib/errors.js';
import { normalizeName } from './names.js';
import { canonicalVersion, parseVersion } from './pep440.js';
import type { IndexDatabase } from './schema.js';
import { journal, lockProject } from './write-announcer.js';

export type ReleaseAction = 'yank' | 'unyank' | 'delete';

export interface ReleaseChange {
  readonly project: string;
  readonly version: string;
  /** For delete: the stored paths of the release's files, to remove once the transaction committed. */
  readonly removedPaths: readonly string[];
}

/**
 * Yanks, un-yanks or deletes a release, in one transaction under the
 * project's lock, journalled as Warehouse does (`yank release`, `unyank
 * release`, `remove release`). The caller then announces the write (fence
 * and cache generations), so every page shows it at once. `allowed` checks
 * who asks (the HTTP API: an owner; the command line: the operator).
 */
export async function changeRelease(
  db: Kysely<IndexDatabase>,
  action: ReleaseAction,
  projectName: string,
  versionText: string,
  options: { reason?: string | undefined; actor: string; allowed?: (trx: Kysely<IndexDatabase>, projectId: string) => Promise<void> },
): Promise<ReleaseChange> {
  const version = parseVersion(versionText);
  if (!version) throw new BanyanError('bad-arguments', `"${versionText}" is not a PEP 440 version`);
  const reason = (options.reason ?? '').trim();
  if (reason.length > 500) throw new BanyanError('bad-arguments', 'the reason is over 500 characters');
  const normalized = normalizeName(projectName);
  return db.transaction().execute(async (trx) => {
    await lockProject(trx, normalized);
    const project = await trx.selectFrom('projects').select(['id', 'name']).where('normalized_name', '=', normalized).executeTakeFirst();
    if (!project) throw new BanyanError('not-found', `there is no project named "${projectName}"`);
    await options.allowed?.(trx, project.id);
    const release = await trx
      .selectFrom('releases')
      .select(['id', 'version', 'yanked'])
      .where('project_id', '=', project.id)
      .where('canonical_version', '=', canonicalVersion(version))
      .executeTakeFirst();
    if (!release) throw new BanyanError('not-found', `${project.name} has no release ${versionText}`);
    if (action === 'delete') {
      const files = await trx.deleteFrom('files').where('release_id', '=', release.id).returning('path').execute();
      await trx.deleteFrom('releases').where('id', '=', release.id).execute();
      await journal(trx, project.id, normalized, release.version, 'remove release', options.actor);
      return { project: normalized, version: release.version, removedPaths: files.map((f) => f.path) };
    }
    const yank = action === 'yank';
    if (release.yanked === yank) {
      throw new BanyanError('unchanged', `${project.name} ${release.version} is ${yank ? 'already' : 'not'} yanked`);
    }
    await trx
      .updateTable('releases')
      .set({ yanked: yank, yanked_reason: yank ? reason || null : null })
      .where('id', '=', release.id)
      .execute();
    await journal(trx, project.id, normalized, release.version, yank ? 'yank release' : 'unyank release', options.actor);
    return { project: normalized, version: release.version, removedPaths: [] };
  });
}
