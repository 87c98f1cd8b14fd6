import type { IndexDatabase } from '../package-index/schema.js';
import { loadSettings, operatorName, required } from '../lib/config.js';
import { FileStore } from '../lib/file-store.js';
import { changeRelease, type ReleaseAction } from '../package-index/releases.js';
import { CacheGenerations, WriteAnnouncer } from '../package-index/write-announcer.js';
import { connect, currentPosition } from '../lib/database.js';
import { FenceStore } from '../routing/reads/index.js';
import type { Args } from './command.js';

/**
 * `banyan releases yank|unyank|delete PROJECT VERSION`: as an owner would in
 * Warehouse. pip skips a yanked release unless it is pinned (`==`); a deleted
 * one is gone with its files. Every page shows the change at once: the write
 * raises the project's fence and bumps its cached pages (REDIS_URL).
 */
export async function releases(args: Args): Promise<void> {
  const [action, project, version] = args.words as [ReleaseAction, string, string];
  const settings = loadSettings();
  const db = connect<IndexDatabase>(required(settings.databaseUrl, 'DATABASE_URL', 'to change the release'), {
    max: 2,
    name: 'banyan-releases',
  });
  const fences = new FenceStore({ redisUrl: settings.redisUrl });
  const cache = new CacheGenerations(settings.redisUrl);
  try {
    const reason = args.flags.get('reason');
    const change = await changeRelease(db, action, project, version, {
      reason: typeof reason === 'string' ? reason : undefined,
      actor: operatorName(),
    });
    await new WriteAnnouncer({ currentPosition: () => currentPosition(db) }, fences, cache).announce([change.project], action === 'delete');
    const store = new FileStore(settings.storageDir);
    for (const path of change.removedPaths) await store.remove(path);
    if (args.flags.has('json')) {
      process.stdout.write(
        `${JSON.stringify({ action, project: change.project, version: change.version, filesRemoved: change.removedPaths.length })}\n`,
      );
      return;
    }
    const done =
      action === 'yank'
        ? 'yanked: pip skips it unless pinned with =='
        : action === 'unyank'
          ? 'un-yanked'
          : `deleted with its ${change.removedPaths.length} file(s)`;
    process.stdout.write(`${change.project} ${change.version} ${done}.\n`);
  } finally {
    fences.close();
    cache.close();
    await db.destroy();
  }
}
