import { expect } from 'chai';
import { connect } from 'node:net';
import { services, waitForReplay, withClient } from './support/services.js';

describe('local stack: PostgreSQL primary, streaming replica, Redis', () => {
  it('the primary shows the replica streaming in pg_stat_replication', async () => {
    const s = await services();
    const rows = await withClient(s.primaryUrl, async (c) =>
      (await c.query("SELECT application_name, state FROM pg_stat_replication")).rows);
    expect(rows).to.deep.include({ application_name: 'banyan_replica_1', state: 'streaming' });
  });

  it('the replica is a hot standby in recovery, and the primary is not', async () => {
    const s = await services();
    const primary = await withClient(s.primaryUrl, async (c) => (await c.query('SELECT pg_is_in_recovery() AS r')).rows[0].r);
    const replica = await withClient(s.replicaUrls[0]!, async (c) => (await c.query('SELECT pg_is_in_recovery() AS r')).rows[0].r);
    expect(primary).to.equal(false);
    expect(replica).to.equal(true);
  });

  it('a write on the primary reaches the replica, and the replica refuses writes', async () => {
    const s = await services();
    await withClient(s.primaryUrl, (c) => c.query("CREATE TABLE IF NOT EXISTS stack_probe (v text); INSERT INTO stack_probe VALUES ('hello')"));
    await waitForReplay(s);
    const seen = await withClient(s.replicaUrls[0]!, async (c) => (await c.query("SELECT count(*)::int AS n FROM stack_probe WHERE v = 'hello'")).rows[0].n);
    expect(seen).to.be.greaterThan(0);
    const error = await withClient(s.replicaUrls[0]!, (c) => c.query("INSERT INTO stack_probe VALUES ('no')")).catch((e: Error) => e);
    expect(String(error)).to.match(/read-only transaction/);
    await withClient(s.primaryUrl, (c) => c.query('DROP TABLE stack_probe'));
  });

  it('an apply delay makes replication lag real, and removing it lets the replica catch up', async () => {
    const s = await services();
    await s.cluster.setReplicaDelay(1_500);
    try {
      await withClient(s.primaryUrl, (c) => c.query('CREATE TABLE lag_probe (v int); INSERT INTO lag_probe VALUES (1)'));
      const soon = await withClient(s.replicaUrls[0]!, async (c) =>
        (await c.query("SELECT to_regclass('lag_probe') IS NOT NULL AS present")).rows[0].present);
      expect(soon, 'the replica should not have replayed the write yet').to.equal(false);
      await s.cluster.setReplicaDelay(0);
      await waitForReplay(s);
      const later = await withClient(s.replicaUrls[0]!, async (c) =>
        (await c.query("SELECT to_regclass('lag_probe') IS NOT NULL AS present")).rows[0].present);
      expect(later).to.equal(true);
    } finally {
      await s.cluster.setReplicaDelay(0);
      await withClient(s.primaryUrl, (c) => c.query('DROP TABLE IF EXISTS lag_probe'));
    }
  });

  it('Redis answers on its loopback port', async () => {
    const s = await services();
    expect(s.redisUrl).to.match(/^redis:\/\/127\.0\.0\.1:\d+$/);
    const port = Number(new URL(s.redisUrl!).port);
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = connect({ port, host: '127.0.0.1' }, () => socket.write('PING\r\n'));
      socket.once('data', (d) => { socket.destroy(); resolve(d.toString()); });
      socket.once('error', reject);
    });
    expect(reply).to.equal('+PONG\r\n');
  });
});
