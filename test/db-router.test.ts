import { expect } from 'chai';
import { sql } from 'kysely';
import { DbRouter } from '../routing/db-router.js';
import { services, waitForReplay, withClient } from './support/services.js';

describe('DB router choices against a real replica', () => {
  let router: DbRouter;
  let busy: DbRouter;

  before(async () => {
    const s = await services();
    router = new DbRouter({ primaryUrl: s.primaryUrl, replicaUrls: s.replicaUrls, maxLagBytes: 0, monitorIntervalMs: 60_000 });
    busy = new DbRouter({ primaryUrl: s.primaryUrl, replicaUrls: s.replicaUrls, maxLagBytes: 0, monitorIntervalMs: 60_000, maxPrimaryReads: 0 });
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
    expect([ahead.readTarget, ahead.reason]).to.deep.equal(['primary', 'pinned']);
  });

  it('a lagging replica serves no reads, until the primary is too busy: then the least-lagged one does', async () => {
    const s = await services();
    await withClient(s.replicaUrls[0]!, (c) => c.query('SELECT pg_wal_replay_pause()'));
    await withClient(s.primaryUrl, (c) => c.query("CREATE TABLE IF NOT EXISTS lag_probe2 (v int); INSERT INTO lag_probe2 VALUES (1)"));
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
    const rr = new DbRouter({ primaryUrl: s.primaryUrl, replicaUrls: urls, monitorIntervalMs: 60_000 });
    const lif = new DbRouter({ primaryUrl: s.primaryUrl, replicaUrls: urls, monitorIntervalMs: 60_000, choice: 'least-in-flight' });
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
});
