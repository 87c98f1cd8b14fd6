import { expect } from 'chai';
import { existsSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { isAlive } from '../lib/processes.js';
import { processesMentioning, runBanyan, startStack } from './support/cli.js';
import { tempDir, withClient } from './support/services.js';

describe('banyan start (npm start)', () => {
  let cwd: string;

  beforeEach(() => { cwd = tempDir('banyan-start-'); });
  afterEach(() => {
    expect(processesMentioning(cwd), 'no server may outlive the stack').to.deep.equal([]);
    rmSync(cwd, { recursive: true, force: true });
  });

  let pidsSeen: number[] = [];

  it('brings the stack up, writes stack.json, and SIGTERM stops every process it started', async () => {
    const run = await startStack(cwd, ['--replica-delay', '250ms']);
    try {
      const { stack } = run;
      expect(stack).to.have.all.keys('proxy', 'admin', 'app', 'legacy', 'primary', 'replicas', 'redis', 'adminToken', 'pids');
      const pids = stack['pids'] as Record<string, number>;
      expect(pids).to.have.all.keys('supervisor', 'proxy', 'app', 'legacy', 'postgresPrimary', 'postgresReplica', 'redis');
      const distinct = new Set(Object.values(pids));
      expect(distinct.size, 'each component is a process of its own').to.equal(7);
      for (const pid of distinct) expect(isAlive(pid), `pid ${pid} runs`).to.equal(true);
      pidsSeen = [...distinct];
      expect(stack.replicas).to.have.length(1);
      expect(stack['redis']).to.match(/^redis:\/\/127\.0\.0\.1:\d+$/);
      expect(run.output()).to.contain('Where everything listens');
      expect(run.output()).to.contain(`Admin token (shown once; also in stack.json): ${stack['adminToken']}`);

      const home = await fetch(`${stack.proxy}/`);
      expect(await home.text()).to.contain('Legacy Package Index');
      const simple = await fetch(`${stack.proxy}/simple/`);
      expect(simple.status).to.equal(200);
      expect(simple.headers.get('x-banyan-read-from')).to.equal('replica-1');

      const delay = await withClient(stack.replicas[0]!, async (c) => (await c.query('SHOW recovery_min_apply_delay')).rows[0].recovery_min_apply_delay);
      expect(delay).to.equal('250ms');
      const streaming = await withClient(stack.primary, async (c) => (await c.query("SELECT state FROM pg_stat_replication")).rows);
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
      const rows = await withClient(second.stack.primary, async (c) => (await c.query(
        "SELECT coalesce(sum(requests), 0)::int AS n FROM usage_ledger WHERE route = 'legacy.rss' AND feature = ''")).rows);
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
      const found = await withClient(second.stack.primary, async (c) => (await c.query("SELECT count(*)::int AS n FROM projects WHERE name = 'kept'")).rows[0].n);
      expect(found).to.equal(1);
    } finally {
      expect(await second.stop('SIGINT')).to.equal(0);
    }
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
