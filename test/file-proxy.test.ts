import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FileRoutes } from '../proxy/file-runtime.js';
import { IMPLICIT_UPSTREAMS } from '../routing/table/index.js';
import { freePort } from '../stack/ports.js';
import { BANYAN, runBanyan } from './support/cli.js';
import { tempDir } from './support/services.js';
import { waitUntil } from './support/wait.js';

/**
 * README's quickstart, as a newcomer follows it: Banyan in front of two
 * plain HTTP servers (`python3 -m http.server` over two folders), from a
 * routes file alone, with no PostgreSQL and no Redis.
 */
describe("the file-only proxy: README's quickstart in front of two python3 -m http.server folders", function () {
  this.timeout(60_000);
  let dir: string;
  const children: ChildProcess[] = [];
  let proxy: string;
  let admin: string;
  let output = '';
  let exited: Promise<number | null>;

  const routes = (shop: 'new' | 'legacy') =>
    JSON.stringify(
      [
        { name: 'shop', match: { path: '/shop/*' }, mode: shop, fallback: true },
        { name: 'home', match: { path: '/' }, mode: 'legacy' },
      ],
      null,
      2,
    );

  before(async () => {
    dir = tempDir('banyan-quickstart-');
    for (const [folder, who] of [
      ['old', 'old app'],
      ['new', 'new app'],
    ] as const) {
      mkdirSync(join(dir, folder, 'shop'), { recursive: true });
      writeFileSync(join(dir, folder, 'index.html'), `${who}: home\n`);
      writeFileSync(join(dir, folder, 'shop', 'index.html'), `${who}: shop\n`);
    }
    const [oldPort, newPort, port, adminPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    for (const [folder, p] of [
      ['old', oldPort],
      ['new', newPort],
    ] as const) {
      children.push(
        spawn('python3', ['-m', 'http.server', String(p), '--bind', '127.0.0.1', '--directory', join(dir, folder)], { stdio: 'ignore' }),
      );
    }
    writeFileSync(join(dir, 'routes.json'), routes('new'));
    const banyan = spawn(process.execPath, [BANYAN, 'proxy'], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...Object.fromEntries(
          Object.entries(process.env).filter(([k]) => !['DATABASE_URL', 'DATABASE_REPLICA_URLS', 'REDIS_URL'].includes(k)),
        ),
        LEGACY_URL: `http://127.0.0.1:${oldPort}`,
        APP_URL: `http://127.0.0.1:${newPort}`,
        BANYAN_ROUTES_FILE: join(dir, 'routes.json'),
        PORT: String(port),
        ADMIN_PORT: String(adminPort),
      },
    });
    children.push(banyan);
    banyan.stdout!.on('data', (d) => {
      output += d;
    });
    banyan.stderr!.on('data', (d) => {
      output += d;
    });
    exited = new Promise((resolve) => banyan.once('exit', (code) => resolve(code)));
    proxy = `http://127.0.0.1:${port}`;
    admin = `http://127.0.0.1:${adminPort}`;
    await waitUntil(
      'the proxy and both servers answer',
      async () => {
        const answers = await Promise.all(
          [`${proxy}/`, `http://127.0.0.1:${oldPort}/`, `http://127.0.0.1:${newPort}/`].map((u) =>
            fetch(u).then(
              (r) => r.ok,
              () => false,
            ),
          ),
        );
        return answers.every(Boolean);
      },
      20_000,
    );
  });

  after(async () => {
    for (const child of children) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  const text = async (path: string) => (await fetch(`${proxy}${path}`)).text();

  it('starts without a database, says what it is, and sends each route where the file says', async () => {
    expect(output).to.contain(
      'no DATABASE_URL: file-only mode, a single instance without read-your-writes pins, usage ledger or route API',
    );
    expect(await text('/')).to.equal('old app: home\n');
    expect(await text('/shop/')).to.equal('new app: shop\n');
    // `banyan proxy` logs each request as a JSON line (BANYAN_LOG=json, its default).
    await waitUntil('the access log has the request', async () => /"route":"shop"/.test(output), 3_000);
    const entry = JSON.parse(output.split('\n').find((l) => l.includes('"route":"shop"'))!) as Record<string, unknown>;
    expect(entry).to.include({ msg: 'request', method: 'GET', url: '/shop/', route: 'shop', mode: 'new', backend: 'new', status: 200 });
    expect(entry['reqId']).to.be.a('string');
    expect(entry['bytes']).to.be.above(10);
    expect(await text('/elsewhere/'), 'unmatched paths go to legacy').to.match(/^<!DOCTYPE HTML|404/i);
    const ready = (await (await fetch(`${admin}/readyz`)).json()) as { status: string; checks: Record<string, { detail: string }> };
    expect(ready.status).to.equal('ready');
    expect(ready.checks['mode']!.detail).to.match(/^file-only: routes from .*routes\.json, watched/);
  });

  it('applies a valid edit of the file within a second or two, and keeps the table when an edit is invalid', async () => {
    writeFileSync(join(dir, 'routes.json'), routes('legacy'));
    await waitUntil('the shop goes back to the old app', async () => (await text('/shop/')) === 'old app: shop\n', 5_000);
    expect(output).to.match(/routes: applied .*routes\.json as version 2: .*shop/);
    writeFileSync(join(dir, 'routes.json'), '[{"name": "shop", "match": {"path": "shop"}, "mode": "sideways"}]');
    await waitUntil('the invalid edit is reported', async () => /changed but is not valid; keeping version 2/.test(output), 5_000);
    expect(output).to.contain('mode: must be one of legacy, shadow, canary, new, retired');
    expect(await text('/shop/'), 'still the last valid table').to.equal('old app: shop\n');
  });

  it('drains and exits 0 on SIGTERM', async () => {
    children.find((c) => c.spawnargs.includes('proxy'))!.kill('SIGTERM');
    expect(await exited).to.equal(0);
  });

  it('refuses to start on an invalid routes file, naming every problem', () => {
    writeFileSync(join(dir, 'bad.json'), '[{"name": "Shop", "match": {"path": "/shop/*"}, "mode": "new", "percent": 5}]');
    const r = runBanyan(['proxy'], {
      cwd: dir,
      env: {
        DATABASE_URL: '',
        LEGACY_URL: 'http://127.0.0.1:9',
        APP_URL: 'http://127.0.0.1:9',
        BANYAN_ROUTES_FILE: join(dir, 'bad.json'),
        PORT: '0',
        ADMIN_PORT: '0',
      },
    });
    expect(r.status).to.equal(1);
    expect(r.stderr).to.contain(`routes file ${join(dir, 'bad.json')} is not a valid route table:`);
    expect(r.stderr).to.contain('route 1 "Shop": name: must be a dotted lower-case name');
  });

  it("refuses to start with nowhere to send legacy traffic, and starts on the table's own endpoints without LEGACY_URL or APP_URL", async () => {
    writeFileSync(join(dir, 'bare.json'), routes('new'));
    const missing = runBanyan(['proxy'], {
      cwd: dir,
      env: { DATABASE_URL: '', LEGACY_URL: '', APP_URL: '', BANYAN_ROUTES_FILE: join(dir, 'bare.json'), PORT: '0', ADMIN_PORT: '0' },
    });
    expect([missing.status, missing.stderr.trim().split('\n').at(-1)]).to.deep.equal([
      1,
      'banyan: the legacy upstream has no endpoints: LEGACY_URL is not set on this proxy ' +
        '(set LEGACY_URL (a URL, or a comma list of them), or give legacy its endpoints in the route table)',
    ]);
    const [port, adminPort] = [await freePort(), await freePort()];
    writeFileSync(
      join(dir, 'own.json'),
      JSON.stringify({
        upstreams: [
          { name: 'legacy', endpoints: ['http://127.0.0.1:9'] },
          { name: 'app', endpoints: ['http://127.0.0.1:9'] },
        ],
        routes: [{ name: 'home', match: { path: '/' }, mode: 'legacy' }],
      }),
    );
    const own = spawn(process.execPath, [BANYAN, 'proxy'], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        DATABASE_URL: '',
        LEGACY_URL: '',
        APP_URL: '',
        BANYAN_ROUTES_FILE: join(dir, 'own.json'),
        PORT: String(port),
        ADMIN_PORT: String(adminPort),
      },
    });
    try {
      await waitUntil(
        "it starts on the table's endpoints",
        async () => (await fetch(`http://127.0.0.1:${adminPort}/healthz`).catch(() => undefined))?.status === 200,
        15_000,
      );
    } finally {
      own.kill('SIGTERM');
    }
  });
});

describe('a routes file with upstreams (FileRoutes)', () => {
  const files = { name: 'files', env: 'FILES_URL', health: { path: '/_health' } };
  const shop = { name: 'shop', match: { path: '/shop/*' }, mode: 'new', service: 'files', fallback: true };

  it('compiles the object form with its upstreams; a bare list then keeps them; each change is logged', () => {
    const dir = tempDir('banyan-file-upstreams-');
    try {
      const path = join(dir, 'routes.json');
      writeFileSync(path, JSON.stringify({ upstreams: [...IMPLICIT_UPSTREAMS, files], routes: [shop] }));
      const lines: string[] = [];
      const changed: number[] = [];
      const routes = new FileRoutes(
        path,
        (l) => lines.push(l),
        (t) => changed.push(t.version),
      );
      expect(routes.current.upstreams).to.deep.equal([...IMPLICIT_UPSTREAMS, files]);
      expect(routes.current.match('GET', undefined, '/shop/x', '', {})?.route.service).to.equal('files');

      writeFileSync(path, JSON.stringify([{ ...shop, mode: 'legacy' }]));
      routes.reload();
      expect(routes.current.version).to.equal(2);
      expect(routes.current.upstreams, 'a bare list keeps the upstreams in effect').to.deep.equal([...IMPLICIT_UPSTREAMS, files]);
      expect(lines.at(-1)).to.match(/as version 2: change {2}shop: new → files \(fallback\) → legacy$/);

      writeFileSync(path, JSON.stringify({ upstreams: IMPLICIT_UPSTREAMS, routes: [shop] }));
      routes.reload();
      expect(lines.at(-1))
        .to.contain('keeping version 2')
        .and.contain('route 1 "shop": service: no upstream named "files" (upstreams: legacy, app)');
      writeFileSync(path, JSON.stringify({ upstreams: IMPLICIT_UPSTREAMS, routes: [{ ...shop, service: 'app' }] }));
      routes.reload();
      expect(lines.at(-1)).to.match(/as version 3: remove {2}upstream files; change {2}shop: legacy → new \(fallback\)$/);
      expect(routes.current.upstreams).to.deep.equal(IMPLICIT_UPSTREAMS);
      expect(changed).to.deep.equal([2, 3]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
