import { expect } from 'chai';
import { sql } from 'kysely';
import { rmSync } from 'node:fs';
import { startBackends, startServices, type Backends, type Services } from '../stack/local-stack.js';
import { DbRouter } from '../routing/reads/index.js';
import { TEST_SECRET } from './support/proxy.js';
import { tempDir, withClient } from './support/services.js';

describe('failures: a replica or the primary stops', () => {
  let dir: string;
  let services: Services;
  let backends: Backends;

  before(async function () {
    this.timeout(60_000);
    dir = tempDir('banyan-failover-');
    services = await startServices({ dir, redis: 'off' });
    backends = await startBackends(services, { adminToken: 't', secret: TEST_SECRET, debugHeaders: true });
  });

  after(async () => {
    await backends?.stop();
    await services?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a replica stopped in the middle of a read loop fails no read', async () => {
    const statuses: number[] = [];
    const targets = new Set<string>();
    let stopped = false;
    const loop = async () => {
      const until = Date.now() + 3_000;
      while (Date.now() < until) {
        const res = await fetch(`${backends.urls.proxy}/simple/`);
        await res.text();
        statuses.push(res.status);
        targets.add(`${stopped ? 'after' : 'before'}:${res.headers.get('x-banyan-read-from')}`);
      }
    };
    const loops = Promise.all([loop(), loop(), loop(), loop()]);
    await new Promise((r) => setTimeout(r, 1_000));
    await services.cluster.stopReplica();
    stopped = true;
    await loops;
    expect(statuses.length).to.be.greaterThan(100);
    expect(
      statuses.filter((s) => s !== 200),
      'failed reads',
    ).to.deep.equal([]);
    expect(targets).to.include('before:replica-1');
    expect(targets).to.include('after:primary');
  });

  it('with the primary stopped, writes get 503 within 1 s and reads go on', async function () {
    this.timeout(60_000);
    // A cluster of its own: the one above has lost its replica.
    const otherDir = tempDir('banyan-failover-primary-');
    const other = await startServices({ dir: otherDir, redis: 'off' });
    const stack = await startBackends(other, { adminToken: 't', secret: TEST_SECRET, debugHeaders: true });
    try {
      await checkPrimaryOutage(other, stack);
    } finally {
      await stack.stop();
      await other.stop();
      rmSync(otherDir, { recursive: true, force: true });
    }
  });
});

async function checkPrimaryOutage(services: Services, backends: Backends): Promise<void> {
  // A router whose last reading of the replica is older than a write the replica has since replayed.
  const stale = new DbRouter({ primaryUrl: services.primaryUrl, replicaUrls: services.replicaUrls, monitorIntervalMs: 3_600_000 });
  await stale.start();
  await withClient(services.primaryUrl, (c) => c.query('CREATE TABLE outage_probe AS SELECT 42 AS answer'));
  const fence = await stale.currentLsn();
  await services.cluster.waitForReplay();
  expect(stale.states[0]!.replayLsn! < fence, 'the router has not seen the replica replay the write').to.equal(true);

  await services.cluster.stopPrimary();
  try {
    const db = await stale.forRequest({ minLsn: fence });
    expect(db.readTarget, 'by its last reading, only the primary has the write').to.equal('primary');
    const r = await db.read((k) => sql<{ answer: number }>`SELECT answer FROM outage_probe`.execute(k));
    expect(r.rows[0]!.answer, 'the replica, which has replayed the fence by now, answers for the dead primary').to.equal(42);
    expect(stale.primaryDownRescues).to.equal(1);
  } finally {
    await stale.close();
  }

  const t0 = Date.now();
  // Credentials are checked on the primary too: the answer is the same 503, whoever asks.
  const write = await fetch(`${backends.urls.proxy}/manage/projects`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Basic ${Buffer.from('__token__:banyan-any').toString('base64')}` },
    body: JSON.stringify({ name: 'during-outage' }),
  });
  const body = await write.text();
  expect(Date.now() - t0).to.be.below(1_000);
  expect(write.status).to.equal(503);
  expect(write.headers.get('retry-after')).to.equal('5');
  expect(body).to.contain('The database is unavailable: nothing was changed');
  for (let i = 0; i < 20; i++) {
    const read = await fetch(`${backends.urls.proxy}/simple/`);
    await read.text();
    expect(read.status, 'reads go on from the replica').to.equal(200);
    expect(read.headers.get('x-banyan-read-from')).to.equal('replica-1');
  }
}
