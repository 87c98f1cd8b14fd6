import { expect } from 'chai';
import { runBanyan } from './support/cli.js';
import { services } from './support/services.js';

describe('banyan command line', () => {
  it('prints usage for help, and exits 2 for an unknown command', () => {
    const help = runBanyan(['help']);
    expect(help.status).to.equal(0);
    expect(help.stdout).to.contain('migrate up|down|status');
    const bad = runBanyan(['frobnicate']);
    expect(bad.status).to.equal(2);
    expect(bad.stderr).to.equal('banyan: unknown command "frobnicate" (run `banyan help` for the list)\n');
  });

  it('migrate status lists every migration as applied, as a table and as JSON', async () => {
    const s = await services();
    const env = { DATABASE_URL: s.primaryUrl };
    const table = runBanyan(['migrate', 'status'], { env });
    expect(table.status).to.equal(0);
    expect(table.stdout.split('\n')[0]).to.match(/^migration\s+applied$/);
    expect(table.stdout).to.match(/2026-11-21-01-package-index\s+\d{4}-\d\d-\d\dT/);
    const json = runBanyan(['migrate', 'status', '--json'], { env });
    const list = JSON.parse(json.stdout) as { name: string; executedAt: string | null }[];
    expect(list.map((m) => m.name)).to.deep.equal(['2026-11-21-01-package-index', '2026-11-21-02-route-table', '2026-11-21-03-usage-ledger']);
    expect(list.every((m) => m.executedAt !== null)).to.equal(true);
    const up = runBanyan(['migrate', 'up'], { env });
    expect(up.stdout).to.equal('Nothing to do: the schema is up to date.\n');
  });

  it('migrate without an action, or without a database, says what to do', () => {
    const none = runBanyan(['migrate'], { cwd: '/', env: { DATABASE_URL: '' } });
    expect(none.status).to.equal(2);
    expect(none.stderr).to.contain('migrate needs up, down or status');
    const noDb = runBanyan(['migrate', 'status'], { cwd: '/', env: { DATABASE_URL: '' } });
    expect(noDb.status).to.equal(1);
    expect(noDb.stderr).to.contain('DATABASE_URL is not set; it is needed to reach the primary');
    const badDb = runBanyan(['migrate', 'status'], { cwd: '/', env: { DATABASE_URL: 'postgres//nope' } });
    expect(badDb.status).to.equal(1);
    expect(badDb.stderr).to.equal('banyan: DATABASE_URL is not a URL: "postgres//nope" (expected postgres://host:port/...)\n');
  });

  it('an unreachable database is one clear line, not a stack trace', () => {
    const r = runBanyan(['migrate', 'status'], { cwd: '/', env: { DATABASE_URL: 'postgres://banyan@127.0.0.1:1/banyan' } });
    expect(r.status).to.equal(1);
    expect(r.stderr.trim().split('\n')).to.have.length(1);
    expect(r.stderr).to.match(/ECONNREFUSED|connect/);
  });
});
