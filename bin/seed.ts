import type { IndexDatabase } from '../package-index/schema.js';
import { seedIndex } from '../app/seed.js';
import { loadSettings, required } from '../lib/config.js';
import { BanyanError } from '../lib/errors.js';
import { connect } from '../lib/database.js';
import type { Args } from './command.js';
import { progress } from './output.js';

/** `banyan seed [--projects N] [--giants N] [--seed N] [--prefix P] [--json]`: a representative data set, by bulk inserts. */
export async function seed(args: Args): Promise<void> {
  const whole = (flag: string, fallback: number, max: number) => {
    const raw = args.flags.get(flag);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 0 || n > max)
      throw new BanyanError(
        'bad-arguments',
        `--${flag} must be a whole number from 0 to ${max.toLocaleString('en-US')}, not "${String(raw)}"`,
        'see banyan seed --help',
      );
    return n;
  };
  const options = {
    projects: whole('projects', 2_000, 1_000_000),
    giants: whole('giants', 2, 100),
    giantReleases: whole('giant-releases', 10_000, 100_000),
    seed: whole('seed', 1, 2 ** 31),
    prefix: String(args.flags.get('prefix') ?? 'seed'),
  };
  if (!/^[a-z0-9]+$/.test(options.prefix))
    throw new BanyanError(
      'bad-arguments',
      `--prefix must be lowercase letters and digits, not "${options.prefix}"`,
      'see banyan seed --help',
    );
  const db = connect<IndexDatabase>(required(loadSettings().databaseUrl, 'DATABASE_URL', 'to fill the index'), {
    max: 2,
    name: 'banyan-seed',
    statementTimeoutMs: 0,
  });
  const json = args.flags.has('json');
  let shown = 0;
  try {
    if (!json)
      progress(
        `seeding ${options.projects.toLocaleString('en-US')} projects and ${options.giants} giant${options.giants === 1 ? '' : 's'} of ${options.giantReleases.toLocaleString('en-US')} releases (seed ${options.seed})`,
      );
    const summary = await seedIndex(db, {
      ...options,
      onProgress: (done, total) => {
        if (json || (done < total && Date.now() - shown < 1_000)) return;
        shown = Date.now();
        progress(`${done.toLocaleString('en-US')} of ${total.toLocaleString('en-US')} releases (${Math.floor((done / total) * 100)} %)`);
      },
    });
    if (json) {
      process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
      return;
    }
    const n = (v: number) => v.toLocaleString('en-US');
    process.stdout.write(
      `Seeded ${n(summary.projects)} projects, ${n(summary.releases)} releases (${n(summary.yanked)} yanked) and ${n(summary.files)} files in ${summary.seconds.toFixed(1)} s.\n` +
        `Giants: ${summary.giants.join(', ') || 'none'}; the largest of the rest: ${summary.largestOrdinary.name} (${n(summary.largestOrdinary.releases)} releases).\n` +
        'Files are rows only (no bytes are stored): pages and APIs are real, downloads answer 404.\n',
    );
  } finally {
    await db.destroy();
  }
}
