// `npm run build`: compiles the TypeScript to dist/ (JavaScript, declarations, source maps), copies the
// files the code reads at run time beside it, and stamps the build (bin/banyan.js compares the stamp with
// the sources, so a checkout edited since the build runs its sources instead).
import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const started = Date.now();
rmSync(dist, { recursive: true, force: true });
execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
copyFileSync(join(root, 'routes.json'), join(dist, 'routes.json'));
copyFileSync(join(root, 'proxy', 'dashboard.html'), join(dist, 'proxy', 'dashboard.html'));
cpSync(join(root, 'package-index', 'data'), join(dist, 'package-index', 'data'), { recursive: true });
// The compiled launcher: what dist/stack/supervisor.js starts for each component.
writeFileSync(join(dist, 'bin', 'banyan.js'), "#!/usr/bin/env node\nawait import('./cli.js');\n", { mode: 0o755 });
mkdirSync(dist, { recursive: true });
writeFileSync(join(dist, 'BUILD'), `${new Date().toISOString()}\n`);
process.stderr.write(`built dist/ in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
