import { loadSettings, required, type Settings } from '../lib/config.js';
import { banyanMigrations, type MigrationSet } from '../migrations/migrator.js';
import { INDEX_MIGRATIONS } from '../package-index/migrations/index.js';
import { connect } from '../lib/database.js';
import type { Args } from './command.js';
import { printTable } from './output.js';

/** `banyan migrate up|down|status`: Banyan's own tables, in its schema (BANYAN_SCHEMA), on the primary only. */
export const migrate = (args: Args) => run((settings) => banyanMigrations(settings.schema), args);

/** `banyan index-migrate up|down|status`: the demo package index's tables. */
export const indexMigrate = (args: Args) => run(() => INDEX_MIGRATIONS, args);

async function run(chosen: (settings: Settings) => MigrationSet, args: Args): Promise<void> {
  const action = args.words[0] as 'up' | 'down' | 'status';
  const settings = loadSettings();
  const set = chosen(settings);
  const url = required(settings.databaseUrl, 'DATABASE_URL', 'to reach the primary');
  const db = connect(url, { max: 1, name: 'banyan-migrate', statementTimeoutMs: 0, schema: set.schema });
  const json = args.flags.has('json');
  try {
    if (action === 'status') {
      const list = await set.status(db);
      if (json) {
        process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
        return;
      }
      printTable(
        ['migration', 'applied'],
        list.map((m) => [m.name, m.executedAt ? m.executedAt.toISOString() : 'pending']),
      );
      return;
    }
    const names = action === 'up' ? await set.up(db) : await set.down(db, args.flags.has('all'));
    if (json) process.stdout.write(`${JSON.stringify({ [action === 'up' ? 'applied' : 'reverted']: names })}\n`);
    else if (names.length === 0)
      process.stdout.write(action === 'up' ? 'Nothing to do: the schema is up to date.\n' : 'Nothing to revert.\n');
    else for (const name of names) process.stdout.write(`${action === 'up' ? 'applied ' : 'reverted'}  ${name}\n`);
  } finally {
    await db.destroy();
  }
}
