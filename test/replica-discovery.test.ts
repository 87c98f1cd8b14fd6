import { expect } from 'chai';
import { sql } from 'kysely';
import { expandNodes } from '../lib/db-discovery.js';
import type { DbNodeConfig } from '../lib/db-nodes.js';
import { DbRouter } from '../routing/reads/index.js';
import { services } from './support/services.js';

describe('replicas that come and go', () => {
  it('a DNS name with several addresses is a server per address; one address or an IP is the entry as given', async () => {
    const answers: Record<string, string[]> = { 'replicas.db.internal': ['10.0.0.7', '10.0.0.5'], 'primary.db.internal': ['10.0.0.2'] };
    const resolve = async (host: string) => answers[host] ?? [];
    const nodes = await expandNodes(
      [
        { name: 'db-1', url: 'postgres://u:p@primary.db.internal:5432/app' },
        { name: 'replica-1', url: 'postgres://u:p@replicas.db.internal:6432/app' },
        { name: 'replica-2', url: 'postgres://u:p@10.0.0.9:5432/app' },
      ],
      resolve,
    );
    expect(nodes).to.deep.equal([
      { name: 'db-1', url: 'postgres://u:p@primary.db.internal:5432/app' },
      { name: 'replica-1@10.0.0.5', url: 'postgres://u:p@10.0.0.5:6432/app' },
      { name: 'replica-1@10.0.0.7', url: 'postgres://u:p@10.0.0.7:6432/app' },
      { name: 'replica-2', url: 'postgres://u:p@10.0.0.9:5432/app' },
    ]);
    const failing = async () => {
      throw new Error('SERVFAIL');
    };
    expect(await expandNodes([{ name: 'db-1', url: 'postgres://u:p@gone.internal/app' }], failing)).to.deep.equal([
      { name: 'db-1', url: 'postgres://u:p@gone.internal/app' },
    ]);
  });

  it('adds a replica at run time once it reports a replay position, and drains one that is removed', async function () {
    this.timeout(30_000);
    const s = await services();
    const primary: DbNodeConfig = { name: 'db-1', url: s.primaryUrl };
    const first: DbNodeConfig = { name: 'replica-1', url: s.replicaUrls[0]! };
    // The same standby under a second URL stands in for a second replica.
    const second: DbNodeConfig = { name: 'replica-2', url: `${s.replicaUrls[0]!}?application_name=banyan-second` };
    let found = [primary, first];
    const router = new DbRouter({
      primaryUrl: s.primaryUrl,
      replicaUrls: s.replicaUrls,
      discover: async () => found,
      resolveEveryMs: 1,
      drainMs: 1_000,
      monitorIntervalMs: 60_000,
    });
    const targets = async (n: number) => {
      const out = new Set<string>();
      for (let i = 0; i < n; i++) out.add((await router.forRequest()).readTarget);
      return [...out].sort();
    };
    const until = async (what: string, check: () => Promise<boolean>) => {
      const deadline = Date.now() + 5_000;
      while (!(await check())) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await router.tick();
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    try {
      await router.start();
      expect(await targets(4)).to.deep.equal(['replica-1']);

      found = [primary, first, second];
      await until('replica-2 to join', async () => (await targets(4)).includes('replica-2'));
      expect(await targets(4)).to.deep.equal(['replica-1', 'replica-2']);

      let onFirst = await router.forRequest();
      while (onFirst.readTarget !== 'replica-1') onFirst = await router.forRequest();
      const running = onFirst.read((db) => sql<{ standby: boolean }>`SELECT pg_is_in_recovery() AS standby FROM pg_sleep(0.5)`.execute(db));
      found = [primary, second];
      await until('replica-1 to leave', async () => (await targets(4)).join() === 'replica-2');
      expect((await running).rows[0]!.standby, 'a read already sent to the removed replica finishes there').to.equal(true);
      const removed = router.nodes.nodes.find((n) => n.name === 'replica-1')!;
      expect(removed.removed).to.equal(true);
      await new Promise((r) => setTimeout(r, 1_200));
      expect((removed.pool as unknown as { ending: boolean }).ending, 'its pool is closed once drained').to.equal(true);
      expect(await targets(6)).to.deep.equal(['replica-2']);
    } finally {
      await router.close();
    }
  });
});
