import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { buildWheel } from '../chaos/wheel.js';
import type { StackFile } from '../lib/config.js';
import { storagePath } from '../lib/file-store.js';
import { isAlive } from '../lib/processes.js';
import { processesMentioning, runBanyan, startStack } from './support/cli.js';
import { basicAuth, newUploader } from './support/packages.js';
import { tempDir, withClient } from './support/services.js';
import { waitUntil } from './support/wait.js';

describe('banyan start (npm start)', () => {
  let cwd: string;

  beforeEach(() => {
    cwd = tempDir('banyan-start-');
  });
  afterEach(() => {
    expect(processesMentioning(cwd), 'no server may outlive the stack').to.deep.equal([]);
    rmSync(cwd, { recursive: true, force: true });
  });

  let pidsSeen: number[] = [];

  it('brings the stack up, writes stack.json, and SIGTERM stops every process it started', async () => {
    const run = await startStack(cwd, ['--replica-delay', '250ms']);
    try {
      const { stack } = run;
      expect(stack).to.have.all.keys('proxy', 'admin', 'app', 'legacy', 'primary', 'replicas', 'redis', 'adminToken', 'services', 'pids');
      const pids = stack['pids'] as Record<string, number>;
      expect(pids).to.have.all.keys(
        'supervisor',
        'proxy',
        'app-1',
        'app-2',
        'files',
        'legacy',
        'postgresPrimary',
        'postgresReplica',
        'redis',
      );
      const distinct = new Set(Object.values(pids));
      expect(distinct.size, 'each component is a process of its own').to.equal(9);
      for (const pid of distinct) expect(isAlive(pid), `pid ${pid} runs`).to.equal(true);
      pidsSeen = [...distinct];

      // The proxy's upstreams, each a list of endpoints with their processes: two app instances by default.
      expect(stack.services).to.have.all.keys('legacy', 'app', 'files');
      const services = stack.services as Record<'legacy' | 'app' | 'files', readonly { url: string; pid: number | null }[]>;
      expect(services.app.map((e) => e.pid)).to.deep.equal([pids['app-1'], pids['app-2']]);
      expect(services.files.map((e) => e.pid)).to.deep.equal([pids['files']]);
      expect(services.legacy.map((e) => e.pid)).to.deep.equal([pids['legacy']]);
      expect(stack.app, 'app: the first instance, for compatibility').to.equal(services.app[0]!.url);
      expect(stack.legacy).to.equal(services.legacy[0]!.url);
      const urls = [stack.proxy, stack.admin, ...services.app.map((e) => e.url), services.files[0]!.url, stack.legacy];
      expect(new Set(urls).size, 'no two components share a port').to.equal(urls.length);
      for (const e of [...services.app, ...services.files]) expect((await fetch(`${e.url}/_health`)).status, e.url).to.equal(200);
      // The start table lists every instance with its process id.
      for (const [i, e] of services.app.entries())
        expect(run.output())
          .to.contain(`new app, app-${i + 1}`)
          .and.contain(`${e.url}  (/metrics)  (pid ${e.pid})`);
      expect(run.output()).to.contain(`${services.files[0]!.url}  (/packages/; /metrics)  (pid ${pids['files']})`);
      expect(run.output()).to.contain('component lines are prefixed [proxy], [app-1], [app-2], [files], [legacy]');
      expect(run.output()).to.match(/^\[app-2\] • app listening on /m);

      // A file uploaded through one app instance is served by the files service, as the app would serve it.
      const uploader = await newUploader(stack.primary);
      const project = `start-files-${process.pid}`;
      const wheel = buildWheel(project, '1.0', randomBytes(1_024));
      const sha256 = createHash('sha256').update(wheel.bytes).digest('hex');
      const form = new FormData();
      for (const [k, v] of Object.entries({
        ':action': 'file_upload',
        protocol_version: '1',
        name: project,
        version: '1.0',
        filetype: 'bdist_wheel',
        pyversion: 'py3',
        metadata_version: '2.1',
        summary: 'one file',
        sha256_digest: sha256,
      }))
        form.append(k, v);
      form.append('content', new Blob([wheel.bytes]), wheel.filename);
      const up = await fetch(`${services.app[1]!.url}/legacy/`, {
        method: 'POST',
        body: form,
        headers: { authorization: basicAuth('__token__', uploader.token) },
      });
      expect(up.status, await up.text()).to.equal(200);
      const file = await fetch(`${services.files[0]!.url}/packages/${storagePath(sha256, wheel.filename)}`);
      expect([file.status, file.headers.get('etag')]).to.deep.equal([200, `"${sha256}"`]);
      expect(Buffer.from(await file.arrayBuffer()).equals(wheel.bytes)).to.equal(true);

      // stack.json follows a restart: the dead instance's pid is null while it is down, then its new pid.
      const stackFile = join(cwd, '.banyan', 'stack.json');
      const now = () => JSON.parse(readFileSync(stackFile, 'utf8')) as StackFile;
      const before = pids['app-2']!;
      process.kill(before, 'SIGKILL');
      await waitUntil(
        'stack.json shows app-2 down',
        async () => now().services!['app']![1]!.pid === null && now().pids!['app-2'] === null,
        10_000,
      );
      await waitUntil('stack.json shows app-2 back', async () => typeof now().services!['app']![1]!.pid === 'number', 30_000);
      const after = now();
      expect(after.services!['app']![1]!.pid).to.not.equal(before);
      expect(after.pids!['app-2']).to.equal(after.services!['app']![1]!.pid);
      expect(after.services!['app']![1]!.url, 'the restarted instance keeps its URL').to.equal(services.app[1]!.url);
      expect(after.services!['app']![0], 'app-1 was not touched').to.deep.equal(services.app[0]);
      pidsSeen.push(after.pids!['app-2']!);
      expect(stack.replicas).to.have.length(1);
      expect(stack['redis']).to.match(/^redis:\/\/127\.0\.0\.1:\d+$/);
      expect(run.output()).to.contain('Where everything listens');
      expect(run.output()).to.contain(`Admin token (shown once; also in stack.json): ${stack['adminToken']}`);

      const home = await fetch(`${stack.proxy}/`);
      expect(await home.text()).to.contain('Legacy Package Index');
      const simple = await fetch(`${stack.proxy}/simple/`);
      expect(simple.status).to.equal(200);
      expect(simple.headers.get('x-banyan-read-from')).to.equal('replica-1');

      const delay = await withClient(
        stack.replicas[0]!,
        async (c) => (await c.query('SHOW recovery_min_apply_delay')).rows[0].recovery_min_apply_delay,
      );
      expect(delay).to.equal('250ms');
      const streaming = await withClient(stack.primary, async (c) => (await c.query('SELECT state FROM pg_stat_replication')).rows);
      expect(streaming).to.deep.equal([{ state: 'streaming' }]);
      expect(processesMentioning(cwd).length, 'postgres and redis run while the stack is up').to.be.greaterThan(1);
    } finally {
      expect(await run.stop('SIGTERM')).to.equal(0);
    }
    expect(existsSync(join(cwd, '.banyan', 'stack.json')), 'stack.json is removed on stop').to.equal(false);
    expect(pidsSeen.filter(isAlive), 'no process of the stack is left').to.deep.equal([]);
  });

  it('Ctrl-C stops the proxy first: its last usage counts reach PostgreSQL before the databases stop', async function () {
    this.timeout(120_000);
    const first = await startStack(cwd, [], { BANYAN_USAGE_FLUSH: '1h' });
    for (let i = 0; i < 7; i++) expect((await fetch(`${first.stack.proxy}/pypi?:action=rss`)).status).to.equal(200);
    expect(await first.interrupt('SIGINT'), 'Ctrl-C reaches the whole process group').to.equal(0);
    const out = first.output();
    expect(out).to.not.contain('flush failed');
    expect(out.indexOf('stopping the proxy')).to.be.lessThan(out.indexOf('stopping Redis and PostgreSQL'));
    const second = await startStack(cwd);
    try {
      const rows = await withClient(
        second.stack.primary,
        async (c) =>
          (
            await c.query(
              "SELECT coalesce(sum(requests), 0)::int AS n FROM banyan.usage_ledger WHERE route = 'legacy.rss' AND feature = ''",
            )
          ).rows,
      );
      expect(rows[0].n, 'the 7 requests made just before Ctrl-C are in the ledger').to.equal(7);
    } finally {
      expect(await second.stop('SIGINT')).to.equal(0);
    }
  });

  it('keeps data in .banyan across restarts (Ctrl-C, then start again) and keeps the admin token', async () => {
    const first = await startStack(cwd);
    await withClient(first.stack.primary, (c) => c.query("INSERT INTO projects (name, normalized_name) VALUES ('kept', 'kept')"));
    const token = first.stack['adminToken'];
    expect(await first.stop('SIGINT')).to.equal(0);

    const second = await startStack(cwd);
    try {
      expect(second.output()).to.not.contain('initialising');
      expect(second.output()).to.not.contain('Admin token (shown once');
      expect(second.stack['adminToken']).to.equal(token);
      const found = await withClient(
        second.stack.primary,
        async (c) => (await c.query("SELECT count(*)::int AS n FROM projects WHERE name = 'kept'")).rows[0].n,
      );
      expect(found).to.equal(1);
    } finally {
      expect(await second.stop('SIGINT')).to.equal(0);
    }
  });

  it('--app-instances 1 runs one app process behind the proxy', async () => {
    const run = await startStack(cwd, ['--app-instances', '1']);
    try {
      const { stack } = run;
      expect(Object.keys(stack.pids).sort()).to.deep.equal([
        'app-1',
        'files',
        'legacy',
        'postgresPrimary',
        'postgresReplica',
        'proxy',
        'redis',
        'supervisor',
      ]);
      expect(stack.services!['app']!).to.deep.equal([{ url: stack.app, pid: stack.pids['app-1'] }]);
      expect(stack.services!['files']!).to.have.length(1);
      expect(run.output()).to.contain('starting legacy, the new app (app-1) and files');
      const simple = await fetch(`${stack.proxy}/simple/`);
      expect(simple.status).to.equal(200);
      expect(simple.headers.get('x-banyan-read-from'), 'the new app answered').to.be.a('string');
    } finally {
      expect(await run.stop('SIGTERM')).to.equal(0);
    }
    expect(run.output()).to.contain('stopping the new app (app-1), files and legacy');
  });

  it('refuses a bad --app-instances with one clear line, starting nothing', () => {
    for (const bad of ['0', '17', 'two']) {
      const r = runBanyan(['start', '--app-instances', bad], { cwd, env: { PORT: '0', ADMIN_PORT: '0' } });
      expect([r.status, r.stderr], `--app-instances ${bad}`).to.deep.equal([
        2,
        `banyan: --app-instances must be a whole number from 1 to 16, not "${bad}" (it is the number of new app processes behind the proxy)\n`,
      ]);
    }
    expect(existsSync(join(cwd, '.banyan', 'postgres'))).to.equal(false);
  });

  it('refuses a port in use with one line naming the setting, starting nothing', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      const r = runBanyan(['start'], { cwd, env: { PORT: String(port), ADMIN_PORT: '0' } });
      expect(r.status).to.equal(1);
      expect(r.stderr.trim().split('\n')).to.deep.equal([
        `banyan: port ${port} (PORT) is already in use (stop what is using it (another \`npm start\`?) or set PORT=<free port>)`,
      ]);
      expect(existsSync(join(cwd, '.banyan', 'postgres'))).to.equal(false);
    } finally {
      blocker.close();
    }
  });

  it('rejects a malformed setting with exit code 1 and the variable named', () => {
    const r = runBanyan(['start'], { cwd, env: { PORT: 'eighty' } });
    expect(r.status).to.equal(1);
    expect(r.stderr).to.equal('banyan: PORT must be a port number from 0 to 65535, not "eighty"\n');
  });

  it('rejects a bad --replica-delay before starting anything', () => {
    const r = runBanyan(['start', '--replica-delay', 'soon'], { cwd, env: { PORT: '0', ADMIN_PORT: '0' } });
    expect(r.status).to.equal(1);
    expect(r.stderr).to.contain('--replica-delay must be a duration like 500ms, 2s or 1m, not "soon"');
    expect(existsSync(join(cwd, '.banyan', 'postgres'))).to.equal(false);
  });
});
