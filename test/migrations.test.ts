import { expect } from 'chai';
import { parseVersion, sortKey } from '../package-index/pep440.js';
import { BANYAN_TABLES, banyanMigrations } from '../migrations/migrator.js';
import { INDEX_MIGRATIONS } from '../package-index/migrations/index.js';
import { connect } from '../lib/database.js';
import { BANYAN_MIGRATION_NAMES, runBanyanAsync } from './support/cli.js';
import { services, waitForReplay, withClient } from './support/services.js';

/** The demo package index's, which `banyan index-migrate up` (and `npm start`) create. */
const INDEX_TABLES = ['users', 'api_tokens', 'projects', 'project_roles', 'releases', 'files', 'journal', 'account_events'];

/** The tables in one PostgreSQL schema (`public`: the application's; `banyan`: Banyan's own). */
async function tablesOn(url: string, schema: string, logs = false): Promise<string[]> {
  return withClient(url, async (c) =>
    (
      await c.query(
        `SELECT tablename FROM pg_tables WHERE schemaname = $1${logs ? '' : " AND tablename NOT LIKE '%_migration%'"} ORDER BY 1`,
        [schema],
      )
    ).rows.map((r: { tablename: string }) => r.tablename),
  );
}

/** A new, empty database on the test cluster, dropped after `fn`. */
async function withDatabase<T>(name: string, fn: (url: string) => Promise<T>): Promise<T> {
  const s = await services();
  const db = `${name}_${process.pid}`;
  await withClient(s.primaryUrl, (c) => c.query(`CREATE DATABASE ${db}`));
  const url = new URL(s.primaryUrl);
  url.pathname = `/${db}`;
  try {
    return await fn(url.toString());
  } finally {
    await withClient(s.primaryUrl, (c) => c.query(`DROP DATABASE ${db} WITH (FORCE)`));
  }
}

describe('migrations', () => {
  it("banyan migrate up on a fresh database creates Banyan's tables only; index-migrate up adds the index's", async () => {
    await withDatabase('fresh', async (url) => {
      const env = { DATABASE_URL: url };
      const up = await runBanyanAsync(['migrate', 'up'], { env });
      expect(up.status, up.stderr).to.equal(0);
      expect(up.stdout).to.contain('applied   2026-11-21-02-route-table');
      expect(await tablesOn(url, 'banyan')).to.have.members(BANYAN_TABLES);
      expect(await tablesOn(url, 'banyan', true)).to.include.members(['banyan_migration', 'banyan_migration_lock']);
      expect(await tablesOn(url, 'public', true), "nothing of Banyan's among the application's tables").to.deep.equal([]);
      const index = await runBanyanAsync(['index-migrate', 'up'], { env });
      expect(index.status, index.stderr).to.equal(0);
      expect(index.stdout).to.contain('applied   2026-11-21-01-package-index');
      expect(await tablesOn(url, 'public')).to.have.members(INDEX_TABLES);
      expect(await tablesOn(url, 'banyan')).to.have.members(BANYAN_TABLES);
      const down = await runBanyanAsync(['index-migrate', 'down', '--all'], { env });
      expect(down.status, down.stderr).to.equal(0);
      expect(await tablesOn(url, 'public'), "undoing the index's leaves Banyan's").to.deep.equal([]);
      expect(await tablesOn(url, 'banyan')).to.have.members(BANYAN_TABLES);
    });
  });

  it('BANYAN_SCHEMA names the schema; a malformed one is refused before anything is written', async () => {
    await withDatabase('own_schema', async (url) => {
      const up = await runBanyanAsync(['migrate', 'up'], { env: { DATABASE_URL: url, BANYAN_SCHEMA: 'edge_kit' } });
      expect(up.status, up.stderr).to.equal(0);
      expect(await tablesOn(url, 'edge_kit')).to.have.members(BANYAN_TABLES);
      expect(await tablesOn(url, 'banyan')).to.deep.equal([]);
      const routes = await runBanyanAsync(['routes', 'list', '--json'], { env: { DATABASE_URL: url, BANYAN_SCHEMA: 'edge_kit' } });
      expect(routes.status, routes.stderr).to.equal(0);

      for (const bad of ['Edge-Kit', 'pg_kit', '1kit', 'kit;drop']) {
        const refused = await runBanyanAsync(['migrate', 'up'], { env: { DATABASE_URL: url, BANYAN_SCHEMA: bad } });
        expect(refused.status, bad).to.equal(1);
        expect(refused.stderr, bad).to.match(/BANYAN_SCHEMA: .* is not a schema name/);
      }
      expect(
        await withClient(url, async (c) => (await c.query("SELECT nspname FROM pg_namespace WHERE nspname ILIKE '%kit%' ORDER BY 1")).rows),
      ).to.deep.equal([{ nspname: 'edge_kit' }]);

      // A connection that resolves names elsewhere would create Banyan's tables among the app's: refused.
      const plain = connect(url, { max: 1 });
      try {
        const err = await banyanMigrations('edge_kit')
          .up(plain)
          .catch((e: Error) => e);
        expect(String(err)).to.match(/belong in the schema "edge_kit"/);
      } finally {
        await plain.destroy();
      }
    });
  });

  it('a database of the earlier layout (one log, every table in public) moves forward with its data, and runs nothing again', async () => {
    await withDatabase('shared_log', async (url) => {
      const earlier = connect(url, { max: 1, statementTimeoutMs: 0, schema: 'public' });
      const db = connect(url, { max: 1, statementTimeoutMs: 0, schema: 'public' });
      try {
        await banyanMigrations('public').up(earlier);
        await INDEX_MIGRATIONS.up(db);
        // The layout before the split: Banyan's tables beside the index's, one log with every migration
        // in it, and data.
        await withClient(url, async (c) => {
          await c.query('INSERT INTO banyan_migration SELECT * FROM package_index_migration');
          await c.query('DROP TABLE package_index_migration, package_index_migration_lock');
          await c.query("INSERT INTO projects (name, normalized_name) VALUES ('Kept', 'kept')");
          await c.query(`INSERT INTO usage_ledger (bucket, route, feature, backend, service, status_class, requests, last_seen)
            VALUES ('2026-01-01T00:00Z', 'kept.route', '', 'legacy', 'legacy', '2xx', 5, '2026-01-01T00:10Z')`);
          await c.query(`INSERT INTO route_table_versions (version, routes, actor, reason) VALUES (1, '[]', 'ops', 'before')`);
          await c.query(`INSERT INTO route_audit (version, action, actor, reason, after) VALUES (1, 'apply', 'ops', 'before', '[]')`);
        });
      } finally {
        await earlier.destroy();
        await db.destroy();
      }
      const env = { DATABASE_URL: url };
      const up = await runBanyanAsync(['migrate', 'up'], { env });
      expect([up.status, up.stdout], up.stderr).to.deep.equal([0, 'Nothing to do: the schema is up to date.\n']);
      const index = await runBanyanAsync(['index-migrate', 'up'], { env });
      expect([index.status, index.stdout], index.stderr).to.deep.equal([0, 'Nothing to do: the schema is up to date.\n']);
      const status = JSON.parse((await runBanyanAsync(['index-migrate', 'status', '--json'], { env })).stdout) as { executedAt: string }[];
      expect(status).to.have.length(5);
      expect(status.every((m) => m.executedAt !== null)).to.equal(true);
      expect(await tablesOn(url, 'banyan')).to.have.members(BANYAN_TABLES);
      expect(await tablesOn(url, 'public'), "Banyan's tables left the application's schema").to.have.members(INDEX_TABLES);
      await withClient(url, async (c) => {
        expect((await c.query('SELECT name FROM banyan.banyan_migration ORDER BY 1')).rows.map((r) => r.name)).to.deep.equal(
          BANYAN_MIGRATION_NAMES,
        );
        expect((await c.query("SELECT name FROM projects WHERE normalized_name = 'kept'")).rows).to.have.length(1);
        expect((await c.query("SELECT requests::int AS n FROM banyan.usage_ledger WHERE route = 'kept.route'")).rows).to.deep.equal([
          { n: 5 },
        ]);
        // The moved tables keep their sequences: the next audit row gets the next id.
        const next = await c.query(
          "INSERT INTO banyan.route_audit (version, action, actor, reason, after) VALUES (1, 'apply', 'ops', 'after', '[]') RETURNING id",
        );
        expect(next.rows).to.deep.equal([{ id: '2' }]);
      });
      // The route table written before the move is the one the commands read now.
      const history = await runBanyanAsync(['routes', 'history', '--json'], { env });
      expect(history.status, history.stderr).to.equal(0);
      expect(history.stdout).to.contain('before');
    });
  });

  it('run up, down and up again on the primary, each set on its own, and the replica receives the schema', async () => {
    const s = await services();
    const kit = connect(s.primaryUrl, { max: 1, schema: 'banyan' });
    const db = connect(s.primaryUrl, { max: 1, schema: 'public' });
    try {
      expect(
        [...(await banyanMigrations().status(kit)), ...(await INDEX_MIGRATIONS.status(db))].every((m) => m.executedAt !== null),
        'the stack migrates both on start',
      ).to.equal(true);
      expect(await tablesOn(s.primaryUrl, 'banyan')).to.have.members(BANYAN_TABLES);
      expect(await tablesOn(s.primaryUrl, 'public')).to.have.members(INDEX_TABLES);

      expect(await banyanMigrations().down(kit, true)).to.have.length(7);
      expect(await tablesOn(s.primaryUrl, 'banyan')).to.deep.equal([]);
      expect(await tablesOn(s.primaryUrl, 'public'), "Banyan's down leaves the index's tables").to.have.members(INDEX_TABLES);
      expect(await INDEX_MIGRATIONS.down(db, true)).to.have.length(5);
      expect(await tablesOn(s.primaryUrl, 'public')).to.deep.equal([]);
      expect((await banyanMigrations().status(kit)).every((m) => m.executedAt === null)).to.equal(true);
      await waitForReplay(s);
      expect(await tablesOn(s.replicaUrls[0]!, 'public')).to.deep.equal([]);

      expect(await banyanMigrations().up(kit)).to.deep.equal(BANYAN_MIGRATION_NAMES);
      expect(await INDEX_MIGRATIONS.up(db)).to.deep.equal([
        '2026-11-21-01-package-index',
        '2026-11-22-01-release-order',
        '2026-11-23-02-ownership',
        '2026-11-23-03-core-metadata',
        '2026-11-23-04-digests',
      ]);
      expect(await banyanMigrations().up(kit)).to.deep.equal([]);
      expect(await INDEX_MIGRATIONS.up(db)).to.deep.equal([]);
      await waitForReplay(s);
      expect(await tablesOn(s.replicaUrls[0]!, 'banyan')).to.have.members(BANYAN_TABLES);
      expect(await tablesOn(s.replicaUrls[0]!, 'public')).to.have.members(INDEX_TABLES);
    } finally {
      await kit.destroy();
      await db.destroy();
    }
  });

  it('down reverts only the latest migration by default', async () => {
    const s = await services();
    const kit = connect(s.primaryUrl, { max: 1, schema: 'banyan' });
    const db = connect(s.primaryUrl, { max: 1, schema: 'public' });
    try {
      // Undoing the status classes keeps every count: rows that differed only by class are added together.
      await withClient(s.primaryUrl, (c) =>
        c.query(`INSERT INTO banyan.usage_ledger (bucket, route, feature, backend, service, status_class, requests, last_seen)
        VALUES ('2026-01-01T00:00Z', 'down.probe', '', 'legacy', 'legacy', '2xx', 3, '2026-01-01T00:10Z'),
               ('2026-01-01T00:00Z', 'down.probe', '', 'legacy', 'legacy', '4xx', 4, '2026-01-01T00:20Z')`),
      );
      const columns = (table: string) =>
        withClient(s.primaryUrl, async (c) =>
          (await c.query('SELECT column_name FROM information_schema.columns WHERE table_name = $1', [table])).rows.map(
            (r: { column_name: string }) => r.column_name,
          ),
        );
      expect(await banyanMigrations().down(kit)).to.deep.equal(['2026-12-02-03-plan-gates']);
      expect(await banyanMigrations().down(kit)).to.deep.equal(['2026-12-02-02-usage-service']);
      expect(await columns('route_table_versions')).to.include('upstreams');
      expect(await banyanMigrations().down(kit)).to.deep.equal(['2026-12-02-01-route-upstreams']);
      expect(await columns('route_table_versions')).to.not.include('upstreams');
      expect(await columns('route_audit'))
        .to.not.include('before_upstreams')
        .and.not.include('after_upstreams');
      expect(await banyanMigrations().down(kit)).to.deep.equal(['2026-11-23-05-autopilot']);
      expect(await tablesOn(s.primaryUrl, 'banyan')).to.not.include('cutover_plans');
      expect(await banyanMigrations().down(kit)).to.deep.equal(['2026-11-23-01-usage-status']);
      expect(
        await withClient(s.primaryUrl, async (c) =>
          (await c.query("SELECT requests::int AS n, last_seen FROM banyan.usage_ledger WHERE route = 'down.probe'")).rows.map((r) => [
            r.n,
            r.last_seen.toISOString(),
          ]),
        ),
      ).to.deep.equal([[7, '2026-01-01T00:20:00.000Z']]);
      expect(await banyanMigrations().down(kit)).to.deep.equal(['2026-11-21-03-usage-ledger']);
      expect(await tablesOn(s.primaryUrl, 'banyan')).to.not.include('usage_ledger');
      expect(await tablesOn(s.primaryUrl, 'banyan')).to.include('route_audit');

      expect(await INDEX_MIGRATIONS.down(db)).to.deep.equal(['2026-11-23-04-digests']);
      expect(await INDEX_MIGRATIONS.down(db)).to.deep.equal(['2026-11-23-03-core-metadata']);
      expect(await INDEX_MIGRATIONS.down(db)).to.deep.equal(['2026-11-23-02-ownership']);
      expect(await tablesOn(s.primaryUrl, 'public')).to.not.include('account_events');
      expect(await INDEX_MIGRATIONS.down(db)).to.deep.equal(['2026-11-22-01-release-order']);
      expect(await columns('releases'))
        .to.include('version')
        .and.not.include('sort_key');
      // A release stored before PEP 440 order was kept gets its sort key when the schema comes back up.
      await withClient(s.primaryUrl, async (c) => {
        const p = (await c.query("INSERT INTO projects (name, normalized_name) VALUES ('Old-Order', 'old-order') RETURNING id")).rows[0].id;
        await c.query("INSERT INTO releases (project_id, version, canonical_version) VALUES ($1, '2.0rc1', '2rc1')", [p]);
      });
      await banyanMigrations().up(kit);
      await INDEX_MIGRATIONS.up(db);
      expect(await columns('route_table_versions')).to.include('upstreams');
      expect(await columns('route_audit')).to.include.members(['before_upstreams', 'after_upstreams']);
      const old = await withClient(
        s.primaryUrl,
        async (c) =>
          (
            await c.query(
              "SELECT r.sort_key, r.is_prerelease FROM releases r JOIN projects p ON p.id = r.project_id WHERE p.normalized_name = 'old-order'",
            )
          ).rows[0],
      );
      expect(old).to.deep.equal({ sort_key: sortKey(parseVersion('2.0rc1')!), is_prerelease: true });
    } finally {
      await banyanMigrations().up(kit);
      await INDEX_MIGRATIONS.up(db);
      await withClient(s.primaryUrl, (c) => c.query("DELETE FROM banyan.usage_ledger WHERE route = 'down.probe'")).catch(() => undefined);
      await withClient(s.primaryUrl, (c) => c.query("DELETE FROM projects WHERE normalized_name = 'old-order'"));
      await kit.destroy();
      await db.destroy();
    }
  });

  it('the schema enforces what the index relies on: normalized names, digests, unique filenames', async () => {
    const s = await services();
    await withClient(s.primaryUrl, async (c) => {
      const bad = await c.query("INSERT INTO projects (name, normalized_name) VALUES ('Bad', 'Bad_Name')").catch((e: Error) => e);
      expect(String(bad)).to.match(/check constraint/);
      const p = (await c.query("INSERT INTO projects (name, normalized_name) VALUES ('Probe', 'probe-schema') RETURNING id")).rows[0].id;
      const r = (await c.query("INSERT INTO releases (project_id, version, canonical_version) VALUES ($1, '1.0', '1') RETURNING id", [p]))
        .rows[0].id;
      const digest = await c
        .query(
          "INSERT INTO files (release_id, filename, packagetype, python_version, size, sha256_digest, path) VALUES ($1, 'p-1.0.tar.gz', 'sdist', 'source', 1, 'XYZ', 'x')",
          [r],
        )
        .catch((e: Error) => e);
      expect(String(digest)).to.match(/check constraint/);
      await c.query('DELETE FROM projects WHERE id = $1', [p]);
    });
  });
});
