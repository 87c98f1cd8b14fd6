import type { IndexDatabase } from '../package-index/schema.js';
import { backfillDigests, backfillMetadata } from '../app/backfill.js';
import { loadSettings, required } from '../lib/config.js';
import { FileStore } from '../lib/file-store.js';
import { CacheGenerations } from '../package-index/write-announcer.js';
import { connect } from '../lib/database.js';
import type { Args } from './command.js';
import { progress } from './output.js';

/**
 * `banyan backfill metadata [--project NAME] [--json]`: extracts the METADATA of wheels
 * uploaded before PEP 658 support and serves it beside them. Reads
 * BANYAN_STORAGE (the file store), DATABASE_URL, and REDIS_URL (to refresh
 * cached simple pages).
 */
export async function backfill(args: Args): Promise<void> {
  const what = args.words[0] as 'metadata' | 'digests';
  const settings = loadSettings();
  const db = connect<IndexDatabase>(required(settings.databaseUrl, 'DATABASE_URL', 'to find the wheels'), {
    max: 2,
    name: 'banyan-backfill',
    statementTimeoutMs: 0,
  });
  const store = new FileStore(settings.storageDir);
  const cache = new CacheGenerations(settings.redisUrl);
  try {
    let shown = 0;
    const project = args.flags.get('project');
    const result = await (what === 'metadata' ? backfillMetadata : backfillDigests)(db, store, cache, {
      project: typeof project === 'string' ? project : undefined,
      progress: (done, total) => {
        if (!args.flags.has('json') && (done === total || Date.now() - shown > 1_000)) {
          shown = Date.now();
          progress(`${done} of ${total} ${what === 'metadata' ? 'wheels' : 'files'}`);
        }
      },
    });
    if (args.flags.has('json')) {
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      return;
    }
    process.stdout.write(
      what === 'metadata'
        ? `Extracted METADATA from ${result.extracted} wheel${result.extracted === 1 ? '' : 's'}; pip now reads them without downloading.\n`
        : `Computed MD5 and BLAKE2b-256 digests of ${result.extracted} file${result.extracted === 1 ? '' : 's'}.\n`,
    );
    for (const s of result.skipped) process.stdout.write(`  skipped ${s.filename}: ${s.why}\n`);
    if (result.skipped.length) process.exitCode = 1;
  } finally {
    cache.close();
    await db.destroy();
  }
}
