/**
 * A representative data set for the index (`banyan seed`): many projects
 * whose release counts follow a long tail (Zipf), a few giants with 10,000
 * releases and 50,000 files, realistic names (mixed case, dots, underscores)
 * and PEP 440 versions (pre-releases among them), yanked releases, and files
 * of every type. It is repeatable from its random seed and fast: rows go in
 * by bulk inserts, not uploads. Files are rows only (no bytes are stored), so
 * pages and APIs are real while downloads answer 404.
 */

import { createHash } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { BanyanError } from '../lib/errors.js';
import { normalizeName } from '../package-index/names.js';
import { canonicalVersion, isPrerelease, parseVersion, sortKey } from '../package-index/pep440.js';
import type { IndexDatabase } from '../package-index/schema.js';
import { seededRandom } from '../lib/random.js';

export interface SeedOptions {
  /** Projects with a long-tailed number of releases (the giants come on top). */
  readonly projects: number;
  /** Projects with `giantReleases` releases of 5 files each. */
  readonly giants: number;
  readonly giantReleases?: number;
  /** The random seed: the same seed gives the same data set. */
  readonly seed: number;
  /** Prefix of every project name, so a data set can be told apart (and removed) later. */
  readonly prefix?: string;
  readonly onProgress?: (done: number, total: number) => void;
}

export interface SeedSummary {
  readonly projects: number;
  readonly releases: number;
  readonly files: number;
  readonly yanked: number;
  readonly giants: readonly string[];
  readonly largestOrdinary: { readonly name: string; readonly releases: number };
  readonly seconds: number;
}

const WORDS = [
  'django',
  'flask',
  'requests',
  'data',
  'async',
  'json',
  'yaml',
  'cloud',
  'aws',
  'azure',
  'test',
  'lint',
  'http',
  'sql',
  'graph',
  'ml',
  'torch',
  'numpy',
  'pandas',
  'log',
  'auth',
  'cli',
  'web',
  'api',
  'db',
  'cache',
  'queue',
  'image',
  'text',
  'geo',
  'crypto',
  'time',
  'mail',
];
const SUFFIXES = ['utils', 'tools', 'client', 'core', 'plugin', 'extras', 'helpers', 'lite', 'kit', 'sdk', 'py', 'ng', 'compat', 'server'];
const WHEEL_TAGS = [
  'py3-none-any',
  'cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64',
  'cp312-cp312-win_amd64',
  'cp312-cp312-macosx_11_0_arm64',
  'cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64',
  'cp311-cp311-musllinux_1_2_x86_64',
];
const DAY = 86_400_000;

interface PlannedProject {
  name: string;
  releases: number;
  filesEach: () => number;
}

/** Fills the index with a representative data set. Refuses when projects with the same prefix exist. */
export async function seedIndex(db: Kysely<IndexDatabase>, options: SeedOptions): Promise<SeedSummary> {
  const started = Date.now();
  const rand = seededRandom(options.seed);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rand() * list.length)]!;
  const prefix = options.prefix ?? 'seed';
  const existing = await db
    .selectFrom('projects')
    .select('normalized_name')
    .where('normalized_name', 'like', `${normalizeName(prefix)}-%`)
    .orderBy('normalized_name')
    .limit(1)
    .executeTakeFirst();
  if (existing) {
    throw new BanyanError(
      'already-seeded',
      `projects named ${prefix}-… already exist (${existing.normalized_name})`,
      'seed into a fresh stack, or choose another --prefix',
    );
  }
  const giantReleases = options.giantReleases ?? 10_000;
  const planned: PlannedProject[] = [];
  const taken = new Set<string>();
  const nameOf = (i: number) => {
    const styles = [
      () => `${pick(WORDS)}-${pick(SUFFIXES)}`,
      () => `${pick(WORDS)}_${pick(WORDS)}`,
      () => `${capitalize(pick(WORDS))}${capitalize(pick(SUFFIXES))}`,
      () => `${pick(WORDS)}.${pick(SUFFIXES)}`,
      () => `py${pick(WORDS)}`,
    ];
    let name = `${prefix}-${pick(styles)()}`;
    if (taken.has(normalizeName(name))) name = `${name}${i}`;
    taken.add(normalizeName(name));
    return name;
  };
  for (let g = 0; g < options.giants; g++) planned.push({ name: nameOf(g), releases: giantReleases, filesEach: () => 5 });
  for (let i = 0; i < options.projects; i++) {
    // Zipf over the rank: a few projects with hundreds of releases, most with a handful.
    const releases = Math.max(1, Math.round((400 / (i + 1) ** 0.9) * (0.5 + rand())));
    planned.push({ name: nameOf(options.giants + i), releases, filesEach: () => 1 + Math.floor(rand() * rand() * 6) });
  }
  const total = planned.reduce((n, p) => n + p.releases, 0);
  let done = 0;
  let files = 0;
  let yanked = 0;
  const now = Date.now();
  for (const p of planned) {
    const normalized = normalizeName(p.name);
    const project = await db
      .insertInto('projects')
      .values({ name: p.name, normalized_name: normalized, last_serial: String(p.releases) })
      .returning('id')
      .executeTakeFirstOrThrow();
    const dist = normalized.replace(/-/g, '_');
    const versions = versionsOf(p.releases, rand);
    const firstDay = now - ((p.releases + 30) * DAY) / 4;
    for (let start = 0; start < versions.length; start += 1000) {
      const chunk = versions.slice(start, start + 1000);
      const rows = await db
        .insertInto('releases')
        .values(
          chunk.map((v, i) => {
            const parsed = parseVersion(v)!;
            const isYanked = rand() < 0.02;
            if (isYanked) yanked++;
            return {
              project_id: project.id,
              version: v,
              canonical_version: canonicalVersion(parsed),
              sort_key: sortKey(parsed),
              is_prerelease: isPrerelease(parsed),
              summary: `${p.name}: ${pick(WORDS)} ${pick(SUFFIXES)} for Python`,
              requires_python: pick(['>=3.8', '>=3.9', '>=3.10', null]),
              yanked: isYanked,
              yanked_reason: isYanked ? 'broken build' : null,
              created_at: new Date(firstDay + ((start + i) * DAY) / 4),
            };
          }),
        )
        .returning(['id', 'version', 'created_at'])
        .execute();
      const fileRows = rows.flatMap((r) => {
        const count = p.filesEach();
        const tags = count <= 1 ? [] : WHEEL_TAGS.slice(0, count - 1);
        const names = [`${dist}-${r.version}.tar.gz`, ...tags.map((t) => `${dist}-${r.version}-${t}.whl`)];
        return names.map((filename) => {
          const digest = createHash('sha256').update(`${options.seed}/${filename}`).digest('hex');
          const wheel = filename.endsWith('.whl');
          return {
            release_id: r.id,
            filename,
            packagetype: wheel ? ('bdist_wheel' as const) : ('sdist' as const),
            python_version: wheel ? filename.split('-').at(-3)!.split('.')[0]! : 'source',
            requires_python: null,
            size: String(10_000 + Math.floor(rand() * 5_000_000)),
            sha256_digest: digest,
            path: `${digest.slice(0, 2)}/${digest.slice(2, 4)}/${digest.slice(4)}/${filename}`,
            upload_time: r.created_at,
          };
        });
      });
      for (let f = 0; f < fileRows.length; f += 2000)
        await db
          .insertInto('files')
          .values(fileRows.slice(f, f + 2000))
          .execute();
      files += fileRows.length;
      done += chunk.length;
      options.onProgress?.(done, total);
    }
  }
  await sql`ANALYZE projects`.execute(db);
  await sql`ANALYZE releases`.execute(db);
  await sql`ANALYZE files`.execute(db);
  const ordinary = planned
    .slice(options.giants)
    .reduce((a, b) => (b.releases > a.releases ? b : a), { name: '', releases: 0 } as PlannedProject);
  return {
    projects: planned.length,
    releases: total,
    files,
    yanked,
    giants: planned.slice(0, options.giants).map((p) => normalizeName(p.name)),
    largestOrdinary: { name: normalizeName(ordinary.name), releases: ordinary.releases },
    seconds: (Date.now() - started) / 1000,
  };
}

/** `count` increasing PEP 440 versions: patches, minors and majors, with a release candidate now and then. */
function versionsOf(count: number, rand: () => number): string[] {
  const out: string[] = [];
  let [major, minor, patch] = [0, 1, 0];
  while (out.length < count) {
    if (rand() < 0.04 && out.length + 1 < count) out.push(`${major}.${minor}.${patch + 1}rc1`);
    patch++;
    if (patch >= 10) {
      patch = 0;
      minor++;
    }
    if (minor >= 30) {
      minor = 0;
      major++;
    }
    out.push(`${major}.${minor}.${patch}`);
  }
  return out.slice(0, count);
}

function capitalize(word: string): string {
  return word[0]!.toUpperCase() + word.slice(1);
}
