import { expect } from 'chai';
import { parseVersion, sortKey } from '../package-index/pep440.js';
import { migrateDown, migrateUp, migrationStatus } from '../migrations/migrator.js';
import { connect } from '../lib/database.js';
import { services, waitForReplay, withClient } from './support/services.js';

const TABLES = [
  'users',
  'api_tokens',
  'projects',
  'project_roles',
  'releases',
  'files',
  'journal',
  'route_table_versions',
  'route_audit',
  'usage_ledger',
  'usage_user_agents',
  'usage_flushes',
  'account_events',
  'cutover_plans',
  'autopilot_lease',
  'cutover_samples',
];

async function tablesOn(url: string): Promise<string[]> {
  return withClient(url, async (c) =>
    (
      await c.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename NOT LIKE 'banyan_migration%' ORDER BY 1")
    ).rows.map((r: { tablename: string }) => r.tablename),
  );
}

describe('migrations', () => {
  it('run up, down and up again on the primary, and the replica receives the schema', async () => {
    const s = await services();
    const db = connect(s.primaryUrl, { max: 1 });
    try {
      expect(
        (await migrationStatus(db)).every((m) => m.executedAt !== null),
        'the stack migrates on start',
      ).to.equal(true);
      expect(await tablesOn(s.primaryUrl)).to.have.members(TABLES);

      const reverted = await migrateDown(db, true);
      expect(reverted).to.have.length(12);
      expect(await tablesOn(s.primaryUrl)).to.deep.equal([]);
      expect((await migrationStatus(db)).every((m) => m.executedAt === null)).to.equal(true);
      await waitForReplay(s);
      expect(await tablesOn(s.replicaUrls[0]!)).to.deep.equal([]);

      const applied = await migrateUp(db);
      expect(applied).to.deep.equal([
        '2026-11-21-01-package-index',
        '2026-11-21-02-route-table',
        '2026-11-21-03-usage-ledger',
        '2026-11-22-01-release-order',
        '2026-11-23-01-usage-status',
        '2026-11-23-02-ownership',
        '2026-11-23-03-core-metadata',
        '2026-11-23-04-digests',
        '2026-11-23-05-autopilot',
        '2026-12-02-01-route-upstreams',
        '2026-12-02-02-usage-service',
        '2026-12-02-03-plan-gates',
      ]);
      expect(await migrateUp(db)).to.deep.equal([]);
      await waitForReplay(s);
      expect(await tablesOn(s.replicaUrls[0]!)).to.have.members(TABLES);
    } finally {
      await db.destroy();
    }
  });

  it('down reverts only the latest migration by default', async () => {
    const s = await services();
    const db = connect(s.primaryUrl, { max: 1 });
    try {
      // Undoing the status classes keeps every count: rows that differed only by class are added together.
      await withClient(s.primaryUrl, (c) =>
        c.query(`INSERT INTO usage_ledger (bucket, route, feature, backend, service, status_class, requests, last_seen)
        VALUES ('2026-01-01T00:00Z', 'down.probe', '', 'legacy', 'legacy', '2xx', 3, '2026-01-01T00:10Z'),
               ('2026-01-01T00:00Z', 'down.probe', '', 'legacy', 'legacy', '4xx', 4, '2026-01-01T00:20Z')`),
      );
      const columns = (table: string) =>
        withClient(s.primaryUrl, async (c) =>
          (await c.query('SELECT column_name FROM information_schema.columns WHERE table_name = $1', [table])).rows.map(
            (r: { column_name: string }) => r.column_name,
          ),
        );
      expect(await migrateDown(db)).to.deep.equal(['2026-12-02-03-plan-gates']);
      expect(await migrateDown(db)).to.deep.equal(['2026-12-02-02-usage-service']);
      expect(await columns('route_table_versions')).to.include('upstreams');
      expect(await migrateDown(db)).to.deep.equal(['2026-12-02-01-route-upstreams']);
      expect(await columns('route_table_versions')).to.not.include('upstreams');
      expect(await columns('route_audit'))
        .to.not.include('before_upstreams')
        .and.not.include('after_upstreams');
      expect(await migrateDown(db)).to.deep.equal(['2026-11-23-05-autopilot']);
      expect(await tablesOn(s.primaryUrl)).to.not.include('cutover_plans');
      expect(await migrateDown(db)).to.deep.equal(['2026-11-23-04-digests']);
      expect(await migrateDown(db)).to.deep.equal(['2026-11-23-03-core-metadata']);
      expect(await migrateDown(db)).to.deep.equal(['2026-11-23-02-ownership']);
      expect(await tablesOn(s.primaryUrl)).to.not.include('account_events');
      expect(await migrateDown(db)).to.deep.equal(['2026-11-23-01-usage-status']);
      expect(
        await withClient(s.primaryUrl, async (c) =>
          (await c.query("SELECT requests::int AS n, last_seen FROM usage_ledger WHERE route = 'down.probe'")).rows.map((r) => [
            r.n,
            r.last_seen.toISOString(),
          ]),
        ),
      ).to.deep.equal([[7, '2026-01-01T00:20:00.000Z']]);
      expect(await migrateDown(db)).to.deep.equal(['2026-11-22-01-release-order']);
      expect(await columns('releases'))
        .to.include('version')
        .and.not.include('sort_key');
      // A release stored before PEP 440 order was kept gets its sort key when the schema comes back up.
      await withClient(s.primaryUrl, async (c) => {
        const p = (await c.query("INSERT INTO projects (name, normalized_name) VALUES ('Old-Order', 'old-order') RETURNING id")).rows[0].id;
        await c.query("INSERT INTO releases (project_id, version, canonical_version) VALUES ($1, '2.0rc1', '2rc1')", [p]);
      });
      expect(await migrateDown(db)).to.deep.equal(['2026-11-21-03-usage-ledger']);
      expect(await tablesOn(s.primaryUrl)).to.not.include('usage_ledger');
      expect(await tablesOn(s.primaryUrl)).to.include('route_audit');
      await migrateUp(db);
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
      await migrateUp(db);
      await withClient(s.primaryUrl, (c) => c.query("DELETE FROM usage_ledger WHERE route = 'down.probe'"));
      await withClient(s.primaryUrl, (c) => c.query("DELETE FROM projects WHERE normalized_name = 'old-order'"));
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
