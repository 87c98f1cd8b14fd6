import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { namespacesUnavailable } from '../chaos/netns.js';
import { chaos } from '../chaos/run.js';
import type { ChaosRow } from '../chaos/suite.js';

/**
 * `npm run chaos -- --only partition`: a second proxy and app, each in a network namespace of its own,
 * lose one link at a time (packets dropped, not refused) under read and upload load. Every row must hold
 * the chaos invariants and every wait its stated bound; where namespaces cannot be made, every row says
 * it was skipped, and why.
 */
describe('chaos: network partitions (proxy ↔ Redis, proxy ↔ PostgreSQL, app ↔ replica, app ↔ primary)', function () {
  this.timeout(600_000);
  let rows: ChaosRow[];
  const unavailable = namespacesUnavailable();

  before(async function () {
    this.timeout(600_000);
    rows = await chaos({ seconds: 1, workers: 1, only: 'partition', partitions: true, log: () => {} });
    console.log(
      `\n${rows.map((r) => `      ${r.scenario.padEnd(30)} ${r.requests} reads, ${r.failures} failed, ${r.writesAcknowledged} writes acked, ${r.lost} lost, ${r.duplicated} duplicated; ${r.notes}`).join('\n')}`,
    );
  });

  it('runs the four partitions, or skips each saying why', () => {
    expect(rows.map((r) => r.scenario)).to.deep.equal([
      'partition proxy ↔ Redis',
      'partition proxy ↔ PostgreSQL',
      'partition app ↔ replica',
      'partition app ↔ primary',
    ]);
    if (unavailable) for (const r of rows) expect(r.notes).to.equal(`skipped: ${unavailable}`);
  });

  it('holds every invariant under load: nothing acknowledged lost or doubled, the proxy up, no fallback read failed, every wait within its bound', function () {
    if (unavailable) this.skip();
    for (const r of rows) {
      expect(r.broken, r.scenario).to.deep.equal([]);
      expect(r.requests, `${r.scenario}: reads sent`).to.be.above(50);
      expect(r.writesAcknowledged, `${r.scenario}: uploads acknowledged`).to.be.above(0);
      expect(r.proxyAlive, r.scenario).to.equal(true);
    }
  });

  it('leaves no namespace or veth behind', function () {
    if (unavailable) this.skip();
    expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).to.not.match(new RegExp(`banyan-${process.pid % 100_000}\\d`));
    expect(execFileSync('ip', ['link'], { encoding: 'utf8' })).to.not.match(new RegExp(`bnh${process.pid % 100_000}\\d`));
  });
});
