#!/usr/bin/env node
// The compiled CLI (dist/, from `npm run build`) when it is there and no source file is newer than it:
// an installed package, or a checkout built since its last edit. Otherwise the TypeScript sources,
// through tsx, so a checkout needs no build step.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const stamp = `${root}dist/BUILD`;
const SOURCES = ['api', 'autopilot', 'bin', 'lib', 'stack', 'migrations', 'routing', 'app', 'legacy', 'package-index', 'proxy', 'metrics'];

function newerThan(dir, time) {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return false;
  }
  return entries.some((e) => (e.isDirectory() ? newerThan(`${dir}/${e.name}`, time) : statSync(`${dir}/${e.name}`).mtimeMs > time));
}

const built = existsSync(stamp) ? statSync(stamp).mtimeMs : undefined;
// An installed package has no sources; a checkout runs its sources unless the build is newer than all of them.
const fresh = () =>
  !SOURCES.some((dir) => newerThan(`${root}${dir}`, built)) &&
  !(statSync(`${root}routes.json`, { throwIfNoEntry: false })?.mtimeMs > built);
if (built !== undefined && (!existsSync(`${root}bin/cli.ts`) || fresh())) {
  await import('../dist/bin/cli.js');
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('./cli.ts');
}
