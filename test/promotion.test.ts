import { expect } from 'chai';
import { rmSync } from 'node:fs';
import { createAppMetrics } from '../metrics/catalog.js';
import { DbRouter } from '../routing/reads/index.js';
import { startBackends, startServices, type Backends, type Services } from '../stack/local-stack.js';
import { basicAuth, newUploader } from './support/packages.js';
import { TEST_SECRET } from './support/proxy.js';
import { tempDir, withClient } from './support/services.js';

/** Writes must be accepted again this soon after the promotion finished (the proxy's role poll is 200 ms, the app's monitor 100 ms). */
const WRITES_BACK_WITHIN_MS = 3_000;

describe('roles at runtime: the replica is promoted, and writes move to it with no restart', () => {
  let dir: string;
  let services: Services;
  let backends: Backends;
  let auth: string;
  let n = 0;

  before(async function () {
    this.timeout(90_000);
    dir = tempDir('banyan-promotion-');
    services = await startServices({ dir, redis: 'off' });
    backends = await startBackends(services, { adminToken: 't', secret: TEST_SECRET, rolePollMs: 200 });
    auth = basicAuth('__token__', (await newUploader(services.primaryUrl)).token);
  });

  after(async () => {
    await backends?.stop();
    await services?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const project = () => `promoted-${process.pid}-${++n}`;
  const viaApp = (name: string) =>
    fetch(`${backends.urls.proxy}/manage/projects`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: auth },
      body: JSON.stringify({ name }),
    });
  const viaLegacy = (name: string) =>
    fetch(`${backends.urls.proxy}/pypi`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: auth },
      body: `:action=submit&name=${name}`,
    });

  it('kills the primary, promotes the replica: app, legacy and the proxy write to it, and reads leave the dead server', async function () {
    this.timeout(60_000);
    const before = await viaApp(project());
    expect(before.status, await before.text()).to.equal(201);
    await services.cluster.waitForReplay();
    const replicaUrl = services.replicaUrls[0]!;

    process.kill(services.cluster.pids.primary!, 'SIGKILL');
    const refused = await viaApp(project());
    await refused.text();
    expect(refused.status, 'no primary yet').to.equal(503);
    expect(refused.headers.get('retry-after')).to.equal('5');

    await withClient(replicaUrl, (c) => c.query('SELECT pg_promote(true, 30)'));
    const promoted = Date.now();
    let accepted: { name: string; at: number } | undefined;
    while (!accepted && Date.now() - promoted < WRITES_BACK_WITHIN_MS) {
      const name = project();
      const res = await viaApp(name);
      await res.text();
      if (res.status === 201) accepted = { name, at: Date.now() };
      else await new Promise((r) => setTimeout(r, 50));
    }
    expect(accepted, `a write accepted within ${WRITES_BACK_WITHIN_MS} ms of the promotion`).to.not.equal(undefined);
    const stored = await withClient(replicaUrl, (c) => c.query('SELECT 1 FROM projects WHERE name = $1', [accepted!.name]));
    expect(stored.rowCount, 'the write went to the promoted server').to.equal(1);

    // Legacy's router, like every one, may answer 503 (no primary known yet) until its role check sees the promotion.
    let legacy = await viaLegacy(project());
    for (const until = Date.now() + 5_000; legacy.status === 503 && Date.now() < until;) {
      await legacy.text();
      await new Promise((r) => setTimeout(r, 100));
      legacy = await viaLegacy(project());
    }
    expect(legacy.status, await legacy.text()).to.be.within(200, 299);

    // The proxy's own pool: the route table is written on the new primary.
    // The proxy's pool learns of the promotion on its next role check or on a failed write, so its first write
    // may still fail; within a few seconds it must land on the new primary.
    const changeMode = () =>
      fetch(`${backends.urls.admin}/api/routes/project.page/mode`, {
        method: 'POST',
        headers: { authorization: 'Bearer t', 'content-type': 'application/json' },
        body: JSON.stringify({ mode: 'legacy', reason: 'after the promotion' }),
      });
    let change = await changeMode();
    for (const until = Date.now() + 5_000; change.status !== 200 && Date.now() < until;) {
      await change.text();
      await new Promise((r) => setTimeout(r, 100));
      change = await changeMode();
    }
    expect(change.status, await change.text()).to.equal(200);

    // Asked of the app itself: which server answered is for operators, and the proxy keeps it from clients.
    const read = await fetch(`${backends.urls.app}/pypi/${accepted!.name}/json`);
    await read.text();
    expect(read.status).to.equal(200);
    expect(read.headers.get('x-banyan-read-from'), 'the only live server is the primary now').to.equal('primary');
    const router = backends.router;
    expect(router.nodes.primary?.name).to.equal('replica-1');
    expect(router.replicas, 'neither the dead server nor the promoted one serves reads as a replica').to.deep.equal([]);
    expect(router.nodes.primaryChanges).to.be.at.least(2);
    console.log(`      writes accepted again ${accepted!.at - promoted} ms after pg_promote() returned`);
  });

  it('a write the standby never received is lost: its fence reads from the new primary, is counted, and never blocks', async function () {
    this.timeout(90_000);
    const otherDir = tempDir('banyan-promotion-lost-');
    const other = await startServices({ dir: otherDir, redis: 'off' });
    const router = new DbRouter({ primaryUrl: other.primaryUrl, replicaUrls: other.replicaUrls, monitorIntervalMs: 50 });
    try {
      await router.start();
      await withClient(other.primaryUrl, (c) => c.query("CREATE TABLE lost_probe (v text); INSERT INTO lost_probe VALUES ('kept')"));
      const kept = await router.currentPosition();
      await other.cluster.waitForReplay();
      await other.cluster.stopReplica();
      await withClient(other.primaryUrl, (c) => c.query("INSERT INTO lost_probe VALUES ('lost')"));
      const lost = await router.currentPosition();
      process.kill(other.cluster.pids.primary!, 'SIGKILL');
      await other.cluster.restart('replica');
      await withClient(other.replicaUrls[0]!, (c) => c.query('SELECT pg_promote(true, 30)'));

      // Until the new timeline's history is read, an older fence goes to the primary too; then only the lost one does.
      const deadline = Date.now() + 10_000;
      let survived = await router.forRequest({ minLsn: kept.lsn, timeline: kept.timeline });
      while (survived.reason === 'old_timeline' && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
        survived = await router.forRequest({ minLsn: kept.lsn, timeline: kept.timeline });
      }
      expect(router.primaryTimeline).to.equal(kept.timeline! + 1);
      expect(survived.reason, "the kept write is in the new timeline's history: LSNs compare").to.not.equal('old_timeline');
      for (let i = 0; i < 3; i++) {
        const db = await router.forRequest({ minLsn: lost.lsn, timeline: lost.timeline });
        expect([db.readTarget, db.reason]).to.deep.equal(['primary', 'old_timeline']);
        const rows = await db.read(
          (k) =>
            k
              .selectFrom('lost_probe' as never)
              .selectAll()
              .execute() as Promise<{ v: string }[]>,
        );
        expect(
          rows.map((r) => r.v),
          'the write the standby never received is gone',
        ).to.deep.equal(['kept']);
      }
      expect(router.lostWrites, 'counted once per fence').to.equal(1);
      expect(await createAppMetrics(router).registry.metrics()).to.contain('banyan_db_lost_writes_total 1');
    } finally {
      await router.close();
      await other.stop();
      rmSync(otherDir, { recursive: true, force: true });
    }
  });
});
