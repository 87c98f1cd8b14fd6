import { expect } from 'chai';
import type { ServerResponse } from 'node:http';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ProxyRuntime } from '../proxy/runtime.js';
import { runBanyanAsync } from './support/cli.js';
import { IMPLICIT_UPSTREAMS } from '../routing/table/index.js';
import { ADMIN_TOKEN, call, setRoutes, startTestProxy } from './support/proxy.js';
import { services, tempDir } from './support/services.js';
import { fakeBackend, type FakeBackend } from './support/upstreams.js';
import { waitUntil as until } from './support/wait.js';

describe('banyan routes: an operator cuts a route over from the command line', () => {
  let legacy: FakeBackend;
  let app: FakeBackend;
  let proxy: ProxyRuntime;
  let env: NodeJS.ProcessEnv;
  let start: number;

  const json = (version: string) => (_req: unknown, res: ServerResponse) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ name: 'demo', version }));
  };
  const routes = (...args: string[]) => runBanyanAsync(['routes', ...args], { cwd: '/', env });

  before(async () => {
    const s = await services();
    legacy = await fakeBackend('legacy');
    app = await fakeBackend('new');
    legacy.answer('/project/', json('1.0'));
    app.answer('/project/', json('1.1'));
    start = await setRoutes(s, {
      upstreams: [...IMPLICIT_UPSTREAMS, { name: 'files', env: 'FILES_URL', health: { path: '/_health' }, slowStartMs: 10_000 }],
      routes: [
        { name: 'legacy.home', match: { path: '/' }, mode: 'legacy' },
        { name: 'project.page', match: { path: '/project/:name/' }, mode: 'legacy' },
        { name: 'files', match: { path: '/packages/*', methods: ['GET'] }, mode: 'new', service: 'files', fallback: true },
      ],
    });
    proxy = await startTestProxy(s, legacy.url, app.url, { breaker: { volumeThreshold: 3, resetTimeoutMs: 60_000 } });
    env = { DATABASE_URL: s.primaryUrl, REDIS_URL: s.redisUrl!, BANYAN_ADMIN_URL: proxy.adminUrl, BANYAN_ADMIN_TOKEN: ADMIN_TOKEN };
  });

  after(async () => {
    await proxy.stop();
    await legacy.close();
    await app.close().catch(() => {});
  });

  it("lists the table as a readable table, with each route's service and the upstreams, and as JSON", async () => {
    const list = await routes('list');
    expect(list.status).to.equal(0);
    expect(list.stdout).to.match(new RegExp(`^Route table version ${start}, by test: test setup`));
    expect(list.stdout).to.match(/^route +match +mode +service\n/m);
    expect(list.stdout).to.match(/^project\.page +\/project\/:name\/ +legacy *\n/m);
    expect(list.stdout).to.match(/^files +\/packages\/\* \(GET\) +new \(fallback\) +files\n/m);
    expect(list.stdout).to.match(
      /^upstream +endpoints +balance +health\nlegacy +env LEGACY_URL +least-request *\napp +env APP_URL +least-request *\nfiles +env FILES_URL +least-request +\/_health\n/m,
    );
    const parsed = JSON.parse((await routes('list', '--json')).stdout) as {
      version: number;
      upstreams: { name: string }[];
      routes: { name: string }[];
    };
    expect(Object.keys(parsed)).to.deep.equal(['version', 'upstreams', 'routes']);
    expect(parsed.version).to.equal(start);
    expect(parsed.upstreams.map((u) => u.name)).to.deep.equal(['legacy', 'app', 'files']);
    expect(parsed.routes.map((r) => r.name)).to.deep.equal(['legacy.home', 'project.page', 'files']);
  });

  it('shadow, read the mismatches, canary, new, fall back when the new app dies, roll back: no restart', async () => {
    const shadowed = await routes('set', 'project.page', '--mode', 'shadow', '--reason', 'compare the rewrite');
    expect(shadowed.status, shadowed.stderr).to.equal(0);
    expect(shadowed.stdout).to.contain('change  project.page: legacy → shadow');
    expect(shadowed.stdout).to.contain(`Version ${start + 1} is stored; every proxy switches to it within a second.`);
    await until('the proxy follows', async () => proxy.routes.current.version === start + 1);
    const page = await call(`${proxy.url}/project/demo/`);
    expect(JSON.parse(page.text).version, 'legacy still answers').to.equal('1.0');
    await until('the comparison is in', async () => proxy.proxy.shadow.report('project.page').counts.mismatch === 1);
    const report = await routes('shadow', 'project.page');
    expect(report.status, report.stderr).to.equal(0);
    expect(report.stdout).to.contain('Shadow results for project.page: 1 compared: 0 match, 1 mismatch');
    expect(report.stdout).to.match(/body\.version\s+"1\.0"\s+"1\.1"/);

    const canary = await routes('set', 'project.page', '--mode', 'canary', '--percent', '10', '--reason', 'first users');
    expect(canary.stdout).to.contain('change  project.page: shadow → canary 10%');

    const cut = await routes('set', 'project.page', '--mode', 'new', '--fallback', '--reason', 'all users');
    expect(cut.stdout).to.contain('change  project.page: canary 10% → new (fallback)');
    await until('the new app answers', async () => JSON.parse((await call(`${proxy.url}/project/demo/`)).text).version === '1.1');

    await app.close();
    for (let i = 0; i < 4; i++) {
      const r = await call(`${proxy.url}/project/demo/`);
      expect(r.status).to.equal(200);
      expect(JSON.parse(r.text).version, 'served by legacy while the new app is down').to.equal('1.0');
    }
    const status = await routes('status');
    expect(status.stdout).to.match(/^app +1 +\d+ +open \(safe requests fall back to legacy\)$/m);

    const back = await routes('rollback', String(start), '--reason', 'new app down');
    expect(back.status, back.stderr).to.equal(0);
    expect(back.stdout).to.contain(`Restored version ${start} as version ${start + 4}.`);
    await until('the route is back on legacy', async () => proxy.routes.current.version === start + 4);
    expect(proxy.routes.current.routes.find((r) => r.name === 'project.page')?.mode).to.equal('legacy');

    const history = await routes('history', '--limit', '5');
    expect(history.stdout).to.match(/rollback to \d+\s+new app down/);
    expect(history.stdout).to.contain('compare the rewrite');
  });

  it('refuses bad changes with exit 1 and the reason, and bad usage with exit 2', async () => {
    const noPercent = await routes('set', 'project.page', '--mode', 'canary', '--reason', 'x');
    expect(noPercent.status).to.equal(1);
    expect(noPercent.stderr).to.contain('route 2 "project.page": percent: canary needs a percent from 0 to 100');
    const unknown = await routes('set', 'project', '--mode', 'new', '--reason', 'x');
    expect(unknown.status).to.equal(1);
    expect(unknown.stderr).to.equal('banyan: no route named "project" (did you mean project.page?)\n');
    const mode = await routes('set', 'project.page', '--mode', 'sideways', '--reason', 'x');
    expect(mode.status).to.equal(2);
    expect(mode.stderr).to.equal(
      "banyan: option '--mode <mode>' argument 'sideways' is invalid. Allowed choices are legacy, shadow, canary, new, retired.\n" +
        '(see: banyan routes set --help)\n',
    );
    const noReason = await routes('set', 'project.page', '--mode', 'new');
    expect(noReason.status).to.equal(2);
    expect(noReason.stderr).to.equal('banyan: a change needs --reason "…" for the audit log (see banyan routes set --help)\n');
    const unknownAction = await routes('frobnicate');
    expect(unknownAction.status).to.equal(2);
    expect(unknownAction.stderr).to.equal("banyan: unknown command 'frobnicate'\n(see: banyan routes --help)\n");
  });

  it('applies a whole file, with a dry run first', async () => {
    const dir = tempDir('banyan-routes-');
    const file = join(dir, 'routes.json');
    writeFileSync(
      file,
      JSON.stringify([
        { name: 'legacy.home', match: { path: '/' }, mode: 'legacy' },
        { name: 'project.page', match: { path: '/project/:name/' }, mode: 'retired', retired: { status: 410, message: 'gone' } },
      ]),
    );
    const before = proxy.routes.current.version;
    const dry = await routes('apply', file, '--dry-run');
    expect(dry.status).to.equal(0);
    expect(dry.stdout).to.contain('Dry run (apply');
    expect(dry.stdout).to.contain('change  project.page: legacy → retired 410');
    const applied = await routes('apply', file, '--reason', 'retire the page');
    expect(applied.status).to.equal(0);
    expect(JSON.parse((await routes('list', '--json')).stdout).version).to.equal(before + 1);
    writeFileSync(file, '[{"name": "x"}]');
    const bad = await routes('apply', file, '--reason', 'bad');
    expect(bad.status).to.equal(1);
    expect(bad.stderr).to.contain('route 1 "x": match: must be an object with at least "path"');
    const kept = JSON.parse((await routes('list', '--json')).stdout) as { upstreams: { name: string }[] };
    expect(
      kept.upstreams.map((u) => u.name),
      'a bare list of routes keeps the upstreams',
    ).to.deep.equal(['legacy', 'app', 'files']);
  });

  it('applies a table with upstreams, describing the upstream changes in a dry run', async () => {
    const dir = tempDir('banyan-upstreams-');
    const file = join(dir, 'table.json');
    const exported = JSON.parse((await routes('list', '--json')).stdout) as {
      version: number;
      upstreams: { name: string }[];
      routes: unknown[];
    };
    const search = { name: 'search', dns: 'http://localhost:9' };
    const table = (upstreams: unknown[]) => {
      writeFileSync(file, JSON.stringify({ ...exported, upstreams }));
    };
    table([...exported.upstreams.filter((u) => u.name !== 'files'), { name: 'files', endpoints: ['http://127.0.0.1:9'] }, search]);
    const dry = await routes('apply', file, '--dry-run');
    expect(dry.status, dry.stderr).to.equal(0);
    expect(dry.stdout).to.contain(
      'change  upstream files: env FILES_URL → endpoints http://127.0.0.1:9; health {"path":"/_health"} → (default); slowStartMs 10000 → (default)',
    );
    expect(dry.stdout).to.contain('add     upstream search: dns http://localhost:9');
    expect(JSON.parse((await routes('list', '--json')).stdout).version, 'a dry run stores nothing').to.equal(exported.version);
    table(exported.upstreams.filter((u) => u.name !== 'legacy'));
    const noLegacy = await routes('apply', file, '--reason', 'no legacy');
    expect(noLegacy.status).to.equal(1);
    expect(noLegacy.stderr).to.contain('upstreams: "legacy" is required');
    table([...exported.upstreams, search]);
    const applied = await routes('apply', file, '--reason', 'a search service');
    expect(applied.status, applied.stderr).to.equal(0);
    expect(applied.stdout).to.contain('add     upstream search: dns http://localhost:9');
    await until('the proxy follows', async () => proxy.routes.current.upstreams.some((u) => u.name === 'search'));
  });

  it('warns before sending users to a backend that is down or answers 404, and changes nothing without --force', async () => {
    const dead = 'http://127.0.0.1:9';
    const cli = (...args: string[]) =>
      runBanyanAsync(['routes', ...args], { cwd: '/', env: { ...env, APP_URL: dead, LEGACY_URL: legacy.url } });
    const before = proxy.routes.current.version;
    const refused = await cli('set', 'legacy.home', '--mode', 'new', '--reason', 'try');
    expect(refused.status).to.equal(1);
    expect(refused.stderr).to.match(/warning: legacy\.home sends users to the new app, which is down \(ECONNREFUSED/);
    expect(refused.stderr).to.contain('add --force to change it anyway');
    expect(JSON.parse((await routes('list', '--json')).stdout).version, 'nothing was stored').to.equal(before);
    const rewrite = await fakeBackend('new');
    try {
      rewrite.answer('/missing/', (_req, res) => {
        res.writeHead(404);
        res.end();
      });
      legacy.answer('/missing/', (_req, res) => {
        res.writeHead(200);
        res.end('here');
      });
      const sampled = await runBanyanAsync(
        ['routes', 'set', 'legacy.home', '--mode', 'canary', '--percent', '5', '--sample', '/missing/', '--reason', 'try'],
        { cwd: '/', env: { ...env, APP_URL: rewrite.url, LEGACY_URL: legacy.url } },
      );
      expect(sampled.status).to.equal(1);
      expect(sampled.stderr).to.contain('warning: the new app answers GET /missing/ with 404, where legacy answers 200');
    } finally {
      await rewrite.close();
    }
    const forced = await cli('set', 'legacy.home', '--mode', 'new', '--reason', 'on purpose', '--force');
    expect(forced.status, forced.stderr).to.equal(0);
    const back = await cli('set', 'legacy.home', '--mode', 'legacy', '--reason', 'back');
    expect(back.status, back.stderr).to.equal(0);
  });

  it('takes routes list --json back through apply, and refuses it once someone else changed the table', async () => {
    const dir = tempDir('banyan-export-');
    const file = join(dir, 'table.json');
    writeFileSync(file, (await routes('list', '--json')).stdout);
    const exported = JSON.parse((await routes('list', '--json')).stdout) as { version: number; routes: { name: string; mode: string }[] };
    exported.routes = exported.routes.map((r) => (r.name === 'project.page' ? { ...r, mode: 'shadow' } : r));
    writeFileSync(file, JSON.stringify(exported));
    const applied = await routes('apply', file, '--reason', 'edited export');
    expect(applied.status, applied.stderr).to.equal(0);
    expect(applied.stdout).to.contain('project.page');
    const stale = await routes('apply', file, '--reason', 'the same file again');
    expect(stale.status).to.equal(1);
    expect(stale.stderr).to.contain(`the table is at version ${exported.version + 1}, not ${exported.version}: someone else changed it`);
    const explicit = await routes('apply', file, '--reason', 'on purpose', '--expected-version', String(exported.version + 1));
    expect(explicit.status, explicit.stderr).to.equal(0);
  });

  it('keeps fallback when a route goes back to legacy and forward again', async () => {
    await routes('set', 'project.page', '--mode', 'new', '--fallback', '--reason', 'cut over');
    await routes('set', 'project.page', '--mode', 'legacy', '--reason', 'roll back');
    await routes('set', 'project.page', '--mode', 'new', '--reason', 'again');
    const shown = JSON.parse((await routes('show', 'project.page', '--json')).stdout) as { mode: string; fallback?: boolean };
    expect(shown).to.include({ mode: 'new', fallback: true });
  });

  it('sends a route to another service with --service, keeps it across modes, and refuses one the table does not have', async () => {
    const moved = await routes('set', 'project.page', '--service', 'files', '--reason', 'pages from files');
    expect(moved.status, moved.stderr).to.equal(0);
    expect(moved.stdout).to.contain('change  project.page: new (fallback) → new → files (fallback)');
    expect((await routes('list')).stdout).to.match(/^project\.page +\/project\/:name\/ +new \(fallback\) +files\n/m);
    const shown = await routes('show', 'project.page');
    expect(shown.stdout).to.match(/^service +files$/m);
    expect((await routes('show', 'legacy.home')).stdout, 'the default, said').to.match(/^service +app \(the default\)$/m);
    await routes('set', 'project.page', '--mode', 'legacy', '--reason', 'back');
    expect(JSON.parse((await routes('show', 'project.page', '--json')).stdout)).to.include({
      mode: 'legacy',
      service: 'files',
      fallback: true,
    });
    expect((await routes('list')).stdout, 'a legacy route keeps the service it names').to.match(
      /^project\.page +\/project\/:name\/ +legacy +files\n/m,
    );

    const before = proxy.routes.current.version;
    const typo = await routes('set', 'project.page', '--mode', 'new', '--service', 'filez', '--reason', 'typo');
    expect(typo.status).to.equal(1);
    expect(typo.stderr).to.contain('route 2 "project.page": service: no upstream named "filez" (upstreams: legacy, app, files, search)');
    const dry = await routes('set', 'project.page', '--service', 'filez', '--dry-run');
    expect(dry.status).to.equal(1);
    expect(dry.stderr).to.contain('service: no upstream named "filez"');
    const legacy = await routes('set', 'project.page', '--service', 'legacy', '--reason', 'x');
    expect(legacy.stderr).to.contain(
      'route 2 "project.page": service: names the upstream that answers on the new side; legacy is the other side',
    );
    expect(JSON.parse((await routes('list', '--json')).stdout).version, 'nothing was stored').to.equal(before);
    expect((await routes('set', '--help')).stdout).to.match(
      /--service <name> +new, canary and shadow: the upstream that answers on the new\s+side/,
    );
  });
});
