import type { IndexDatabase } from '../package-index/schema.js';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { expect } from 'chai';
import { sql } from 'kysely';
import { createAppMetrics } from '../metrics/catalog.js';
import { DbRouter } from '../routing/reads/index.js';
import { services, waitForReplay, withClient } from './support/services.js';

describe('DB router choices against a real replica', () => {
  let router: DbRouter<IndexDatabase>;
  let busy: DbRouter<IndexDatabase>;

  before(async () => {
    const s = await services();
    router = new DbRouter<IndexDatabase>({
      primaryUrl: s.primaryUrl,
      replicaUrls: s.replicaUrls,
      maxLagBytes: 0,
      monitorIntervalMs: 60_000,
    });
    busy = new DbRouter<IndexDatabase>({
      primaryUrl: s.primaryUrl,
      replicaUrls: s.replicaUrls,
      maxLagBytes: 0,
      monitorIntervalMs: 60_000,
      maxPrimaryReads: 0,
    });
    await router.start();
    await busy.start();
  });

  after(async () => {
    const s = await services();
    await withClient(s.replicaUrls[0]!, (c) => c.query('SELECT pg_wal_replay_resume()'));
    await router.close();
    await busy.close();
    await waitForReplay(s);
  });

  it('reads from the replica when it is caught up, and says why', async () => {
    await router.tick();
    const db = await router.forRequest();
    expect([db.readTarget, db.reason]).to.deep.equal(['replica-1', 'no_fence']);
    const fenced = await router.forRequest({ minLsn: router.states[0]!.replayLsn! });
    expect([fenced.readTarget, fenced.reason]).to.deep.equal(['replica-1', 'fence_met']);
    const ahead = await router.forRequest({ minLsn: router.states[0]!.replayLsn! + 1_000_000n });
    expect([ahead.readTarget, ahead.reason]).to.deep.equal(['primary', 'fence_unmet']);
  });

  it('a lagging replica serves no reads, until the primary is too busy: then the least-lagged one does', async () => {
    const s = await services();
    await withClient(s.replicaUrls[0]!, (c) => c.query('SELECT pg_wal_replay_pause()'));
    await withClient(s.primaryUrl, (c) => c.query('CREATE TABLE IF NOT EXISTS lag_probe2 (v int); INSERT INTO lag_probe2 VALUES (1)'));
    await router.tick();
    await busy.tick();
    expect(router.states[0]!.lagBytes).to.be.greaterThan(0);
    const normal = await router.forRequest();
    expect([normal.readTarget, normal.reason]).to.deep.equal(['primary', 'lagging']);
    const overflow = await busy.forRequest();
    expect([overflow.readTarget, overflow.reason]).to.deep.equal(['replica-1', 'primary_busy']);
    const pinned = await busy.forRequest({ minLsn: busy.primaryLsn! });
    expect(pinned.readTarget, 'a pinned read never takes a stale replica').to.equal('primary');
    const r = await pinned.read((db) => sql<{ n: number }>`SELECT count(*)::int AS n FROM lag_probe2`.execute(db));
    expect(r.rows[0]!.n).to.equal(1);
    await withClient(s.replicaUrls[0]!, (c) => c.query('SELECT pg_wal_replay_resume()'));
    await withClient(s.primaryUrl, (c) => c.query('DROP TABLE lag_probe2'));
  });

  it('spreads reads round robin, or to the replica with the fewest reads running', async () => {
    const s = await services();
    // The same standby listed twice stands in for two replicas.
    const urls = [s.replicaUrls[0]!, s.replicaUrls[0]!];
    const rr = new DbRouter<IndexDatabase>({ primaryUrl: s.primaryUrl, replicaUrls: urls, monitorIntervalMs: 60_000 });
    const lif = new DbRouter<IndexDatabase>({
      primaryUrl: s.primaryUrl,
      replicaUrls: urls,
      monitorIntervalMs: 60_000,
      choice: 'least-in-flight',
    });
    await rr.start();
    await lif.start();
    try {
      const turns = [];
      for (let i = 0; i < 4; i++) turns.push((await rr.forRequest()).readTarget);
      expect(turns).to.deep.equal(['replica-1', 'replica-2', 'replica-1', 'replica-2']);
      const first = await lif.forRequest();
      expect(first.readTarget).to.equal('replica-1');
      const slow = first.read((db) => sql`SELECT pg_sleep(0.3)`.execute(db));
      await new Promise((r) => setTimeout(r, 50));
      expect((await lif.forRequest()).readTarget, 'replica-1 is busy').to.equal('replica-2');
      await slow;
      expect((await lif.forRequest()).readTarget).to.equal('replica-1');
    } finally {
      await rr.close();
      await lif.close();
    }
  });

  it('runs a read again elsewhere when the standby cancels it for a recovery conflict (SQLSTATE 40001)', async function () {
    this.timeout(30_000);
    const s = await services();
    const setDelay = (value: string | undefined) =>
      withClient(s.replicaUrls[0]!, async (c) => {
        await c.query(
          value === undefined
            ? 'ALTER SYSTEM RESET max_standby_streaming_delay'
            : `ALTER SYSTEM SET max_standby_streaming_delay = '${value}'`,
        );
        await c.query('SELECT pg_reload_conf()');
      });
    /** A read on replica-1 that a lock replayed from the primary cancels; resolves with what the user got. */
    const conflictedRead = async (r: DbRouter<IndexDatabase>) => {
      await r.tick();
      const db = await r.forRequest();
      expect(db.readTarget).to.equal('replica-1');
      const read = db.read((k) =>
        sql<{ n: number; standby: boolean }>`
        SELECT (SELECT count(*) FROM conflict_probe)::int AS n, pg_sleep(1.5) IS NULL AS slept, pg_is_in_recovery() AS standby`.execute(k),
      );
      await new Promise((resolve) => setTimeout(resolve, 300));
      // An ACCESS EXCLUSIVE lock taken on the primary is replayed on the standby, where the read holds ACCESS SHARE.
      await withClient(s.primaryUrl, (c) => c.query('BEGIN; LOCK TABLE conflict_probe IN ACCESS EXCLUSIVE MODE; COMMIT'));
      return (await read).rows[0]!;
    };
    await withClient(s.primaryUrl, (c) => c.query('CREATE TABLE conflict_probe (v int); INSERT INTO conflict_probe VALUES (1), (2)'));
    await waitForReplay(s);
    // The standby cancels a conflicting query after 10 ms instead of delaying replay for 30 s.
    await setDelay('10ms');
    // The same standby listed twice stands in for a second replica.
    const two = new DbRouter<IndexDatabase>({
      primaryUrl: s.primaryUrl,
      replicaUrls: [s.replicaUrls[0]!, s.replicaUrls[0]!],
      monitorIntervalMs: 60_000,
    });
    await two.start();
    try {
      const before = router.recoveryConflictRetries;
      const alone = await conflictedRead(router);
      expect(alone.n, 'the user got the answer, not "canceling statement due to conflict with recovery"').to.equal(2);
      expect(alone.standby, 'with one replica, the primary answers').to.equal(false);
      expect(router.recoveryConflictRetries - before).to.equal(1);
      expect(router.states[0]!.healthy, 'a conflict does not take the replica out of rotation').to.equal(true);

      const other = await conflictedRead(two);
      expect(other.n).to.equal(2);
      expect(other.standby, 'another replica as far along answers, sparing the primary').to.equal(true);
      expect(two.recoveryConflictRetries).to.equal(1);
      // Operators see it on the app's /metrics.
      const text = await createAppMetrics(two).registry.metrics();
      expect(text).to.contain('banyan_db_read_retries_total{why="recovery_conflict"} 1');
      expect(text).to.contain('banyan_db_read_retries_total{why="replica_failed"} 0');
    } finally {
      await two.close();
      await setDelay(undefined);
      await withClient(s.primaryUrl, (c) => c.query('DROP TABLE conflict_probe'));
    }
  });

  it("sends a request's later reads to the primary once its replica stops answering, instead of waiting on each", async function () {
    this.timeout(30_000);
    const s = await services();
    const target = new URL(s.replicaUrls[0]!);
    // A relay in front of the replica that can stop passing packets: a partition, nothing refused.
    let frozen = false;
    const sockets: Socket[] = [];
    const relay = createServer((client) => {
      const upstream = connect({ host: target.hostname, port: Number(target.port) });
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
      client.on('data', (d: Buffer) => void (frozen || upstream.write(d)));
      upstream.on('data', (d: Buffer) => void (frozen || client.write(d)));
      sockets.push(client, upstream);
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    const relayed = new URL(s.replicaUrls[0]!);
    relayed.port = String((relay.address() as AddressInfo).port);
    const cut = new DbRouter<IndexDatabase>({
      primaryUrl: s.primaryUrl,
      replicaUrls: [relayed.toString()],
      monitorIntervalMs: 60_000,
      answerTimeoutMs: 1_000,
    });
    try {
      await cut.start();
      await cut.tick();
      const db = await cut.forRequest();
      expect(db.readTarget).to.equal('replica-1');
      frozen = true;
      const started = Date.now();
      const standby: boolean[] = [];
      for (let i = 0; i < 4; i++) {
        const r = await db.read((d) => sql<{ standby: boolean }>`SELECT pg_is_in_recovery() AS standby`.execute(d));
        standby.push(r.rows[0]!.standby);
      }
      const took = Date.now() - started;
      expect(standby, 'every read answered, by the primary').to.deep.equal([false, false, false, false]);
      expect(took, `four reads took ${took} ms: one answer timeout (1 s), not one each`).to.be.below(2_000);
    } finally {
      frozen = false;
      for (const socket of sockets) socket.destroy();
      await cut.close();
      await new Promise<void>((resolve) => relay.close(() => resolve()));
    }
  });
});
