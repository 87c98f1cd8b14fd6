import type { IndexDatabase } from '../package-index/schema.js';
import { spawnSync } from 'node:child_process';
import { expect } from 'chai';
import { authenticate } from '../package-index/accounts.js';
import { connect } from '../lib/database.js';
import { BANYAN, BANYAN_MIGRATION_NAMES, runBanyan } from './support/cli.js';
import { basicAuth } from './support/packages.js';
import { services } from './support/services.js';

describe('banyan command line', () => {
  it('prints usage for help, and exits 2 for an unknown command', () => {
    const help = runBanyan(['help']);
    expect(help.status).to.equal(0);
    expect(help.stdout).to.match(/^Usage: banyan <command> \[options\]/);
    expect(help.stdout).to.match(/\n {2}routes +the route table every proxy follows\n/);
    // Banyan's own commands are listed apart from the demo package index's.
    const [kit, index] = help.stdout.split('The demo package index it migrates');
    expect(kit).to.match(/Banyan \(the proxy, DB router and usage metrics\):\n/);
    for (const name of ['start', 'proxy', 'migrate', 'routes', 'upstreams', 'report']) expect(kit).to.match(new RegExp(`\n {2}${name} `));
    for (const name of ['app', 'legacy', 'users', 'tokens', 'projects', 'releases', 'seed']) {
      expect(index).to.match(new RegExp(`\n {2}${name} `));
      expect(kit).not.to.match(new RegExp(`\n {2}${name} `));
    }
    expect(runBanyan([]).stdout, 'no command at all prints the same').to.equal(help.stdout);
    const bad = runBanyan(['rotues']);
    expect(bad.status).to.equal(2);
    expect(bad.stderr).to.equal("banyan: unknown command 'rotues'\n(Did you mean routes?)\n(see: banyan --help)\n");
    const option = runBanyan(['routes', 'list', '--jsn']);
    expect([option.status, option.stderr]).to.deep.equal([
      2,
      "banyan: unknown option '--jsn'\n(Did you mean --json?)\n(see: banyan routes list --help)\n",
    ]);
    const extra = runBanyan(['tokens', 'list', 'alice', 'bob']);
    expect([extra.status, extra.stderr.split('\n')[0]]).to.deep.equal([
      2,
      "banyan: too many arguments for 'list'. Expected 1 argument but got 2.",
    ]);
  });

  it('stops quietly when its reader stops reading (banyan … | head), with no stack trace', () => {
    // `true` exits at once without reading: every write banyan makes meets a closed pipe (EPIPE).
    const piped = spawnSync(
      'bash',
      ['-c', `"${process.execPath}" "${BANYAN}" completion bash | true; echo "status \${PIPESTATUS[0]}" >&2`],
      { encoding: 'utf8', timeout: 60_000 },
    );
    expect(piped.stderr).to.equal('status 0\n');
  });

  it('completes commands, actions and options in bash (banyan completion bash)', () => {
    const script = runBanyan(['completion', 'bash']);
    expect(script.status).to.equal(0);
    const complete = (...words: string[]) =>
      spawnSync(
        'bash',
        [
          '-c',
          `eval "$1"; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _banyan; echo "\${COMPREPLY[@]}"`,
          'bash',
          script.stdout,
        ],
        { encoding: 'utf8' },
      ).stdout.trim();
    expect(complete('banyan', 'rou')).to.equal('routes');
    expect(complete('banyan', 'routes', 'pre')).to.equal('preview');
    expect(complete('banyan', 'routes', 'set', 'x', '--no')).to.equal('--no-fallback');
    expect(complete('banyan', 'routes', 'history', '--')).to.equal('--limit --json --help');
    expect(complete('banyan', 'tokens', 'create', 'alice', '--pro')).to.equal('--project');
    expect(complete('banyan', 'tokens', 'list', 'alice', '--pro'), 'only the options of that subcommand').to.equal('');
    expect(complete('banyan', 'start', '--w')).to.equal('--workers');
    expect(runBanyan(['completion', 'zsh']).status, 'only bash, said clearly').to.equal(2);
  });

  it("answers --help after any command with that command's usage and options, touching nothing", () => {
    const routes = runBanyan(['routes', '--help'], { env: { DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' } });
    expect([routes.status, routes.stderr]).to.deep.equal([0, '']);
    expect(routes.stdout).to.match(/^Usage: banyan routes \[options\] \[command\]/);
    expect(routes.stdout).to.match(/\n {2}preview \[options\] <name> +a link that sends one browser/);
    const set = runBanyan(['routes', 'set', 'x', '-h'], { env: { DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' } });
    expect([set.status, set.stderr]).to.deep.equal([0, '']);
    expect(set.stdout).to.match(/^Usage: banyan routes set \[options\] <name>/);
    expect(set.stdout).to.match(/--mode <mode> +where the route goes \(choices: "legacy", "shadow", "canary",/);
    expect(set.stdout).to.match(/--no-fallback +they do not/);
    expect(runBanyan(['help', 'routes']).stdout, 'banyan help routes is routes --help').to.equal(routes.stdout);
    const tokens = runBanyan(['tokens', 'create', '--help']);
    expect(tokens.stdout).to.match(/^Usage: banyan tokens create \[options\] <username>/);
    expect(tokens.stdout).to.match(/--project <name> +the token uploads to this project only/);
  });

  it("migrate status lists Banyan's migrations as applied, as a table and as JSON; index-migrate the index's", async () => {
    const s = await services();
    const env = { DATABASE_URL: s.primaryUrl };
    const table = runBanyan(['migrate', 'status'], { env });
    expect(table.status).to.equal(0);
    expect(table.stdout.split('\n')[0]).to.match(/^migration\s+applied$/);
    expect(table.stdout).to.match(/2026-11-21-02-route-table\s+\d{4}-\d\d-\d\dT/);
    const json = runBanyan(['migrate', 'status', '--json'], { env });
    const list = JSON.parse(json.stdout) as { name: string; executedAt: string | null }[];
    expect(list.map((m) => m.name)).to.deep.equal(BANYAN_MIGRATION_NAMES);
    expect(list.every((m) => m.executedAt !== null)).to.equal(true);
    const index = JSON.parse(runBanyan(['index-migrate', 'status', '--json'], { env }).stdout) as {
      name: string;
      executedAt: string | null;
    }[];
    expect(index.map((m) => m.name)).to.deep.equal([
      '2026-11-21-01-package-index',
      '2026-11-22-01-release-order',
      '2026-11-23-02-ownership',
      '2026-11-23-03-core-metadata',
      '2026-11-23-04-digests',
    ]);
    expect(index.every((m) => m.executedAt !== null)).to.equal(true);
    const up = runBanyan(['migrate', 'up'], { env });
    expect(up.stdout).to.equal('Nothing to do: the schema is up to date.\n');
    expect(runBanyan(['index-migrate', 'up'], { env }).stdout).to.equal('Nothing to do: the schema is up to date.\n');
  });

  it('migrate without an action, or without a database, says what to do', () => {
    const none = runBanyan(['migrate'], { cwd: '/', env: { DATABASE_URL: '' } });
    expect(none.status).to.equal(2);
    expect(none.stderr, 'the subcommands, on stderr').to.match(
      /^Usage: banyan migrate \[options\] \[command\][\s\S]*\n {2}status \[options\] +each migration/,
    );
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

  it('a connection failure names the setting it came from, for every command that uses the database', () => {
    const env = { DATABASE_URL: 'postgres://banyan:secret@127.0.0.1:1/banyan' };
    for (const args of [['routes', 'list'], ['report', 'usage'], ['tokens', 'create', 'nobody'], ['proxy']]) {
      const r = runBanyan(args, {
        cwd: '/',
        env: { ...env, LEGACY_URL: 'http://127.0.0.1:1', APP_URL: 'http://127.0.0.1:1', PORT: '0', ADMIN_PORT: '0' },
      });
      expect(r.status, args.join(' ')).to.equal(1);
      expect(r.stderr, args.join(' ')).to.match(
        /^banyan: cannot reach PostgreSQL at postgres:\/\/banyan:\*\*\*@127\.0\.0\.1:1\/banyan.*ECONNREFUSED.*check DATABASE_URL/,
      );
      expect(r.stderr, 'the password is never printed').to.not.contain('secret');
    }
  });

  it('users add takes the password from stdin; tokens create prints a token that authenticates, once', async () => {
    const s = await services();
    const env = { DATABASE_URL: s.primaryUrl };
    const name = `cli-user-${process.pid}`;
    const added = runBanyan(['users', 'add', name, '--email', `${name}@example.org`], { env, input: 'correct horse battery\n' });
    expect(added.status, added.stderr).to.equal(0);
    expect(added.stdout).to.equal(`Created user ${name}. Next: banyan tokens create ${name}\n`);
    const again = runBanyan(['users', 'add', name], { env, input: 'correct horse battery\n' });
    expect([again.status, again.stderr]).to.deep.equal([1, `banyan: a user named "${name}" already exists\n`]);
    const short = runBanyan(['users', 'add', `${name}-2`], { env, input: 'short\n' });
    expect([short.status, short.stderr]).to.deep.equal([1, 'banyan: the password must be at least 8 characters long\n']);
    expect(runBanyan(['users', 'remove', name], { env }).status).to.equal(2);

    const created = runBanyan(['tokens', 'create', name], { env });
    expect(created.status, created.stderr).to.equal(0);
    const token = created.stdout.trim();
    expect(token).to.match(/^banyan-[\w-]{43}$/);
    expect(created.stderr).to.contain('shown only once');
    const unknown = runBanyan(['tokens', 'create', 'nobody-at-all'], { env });
    expect(unknown.status).to.equal(1);
    expect(unknown.stderr).to.contain('there is no user named "nobody-at-all" (create one first: banyan users add nobody-at-all');

    const db = connect<IndexDatabase>(s.primaryUrl, { max: 1 });
    try {
      expect(await authenticate(db, basicAuth('__token__', token))).to.deep.include({ username: name });
      expect(await authenticate(db, basicAuth(name, 'correct horse battery'))).to.deep.include({ username: name });
      expect(await authenticate(db, basicAuth(name, 'wrong horse battery'))).to.equal('invalid');
      const stored = await db.selectFrom('api_tokens').select('token_hash').execute();
      expect(
        stored.map((r) => r.token_hash),
        'only the hash is stored',
      ).to.not.include(token);
    } finally {
      await db.destroy();
    }
  });
});
