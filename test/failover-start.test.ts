import { expect } from 'chai';
import { WRITES_BACK_WITHIN_MS } from '../chaos/failover.js';
import { chaos } from '../chaos/run.js';
import type { ChaosRow } from '../chaos/suite.js';

/**
 * `npm start -- --failover` as a managed database behaves: SIGKILL to the
 * primary under read and upload load through the proxy. The replica is
 * promoted (the old primary is not started again), a new replica is built
 * from it, stack.json follows, and the proxy, the app and legacy keep their
 * processes. The scenario is the chaos suite's "fail over the primary".
 */
describe('npm start -- --failover: the primary killed under load', function () {
  this.timeout(300_000);
  let row: ChaosRow;
  const lines: string[] = [];

  before(async function () {
    this.timeout(300_000);
    [row] = (await chaos({ seconds: 1, workers: 1, only: 'fail over the primary', failover: true, log: (line) => lines.push(line) })) as [
      ChaosRow,
    ];
    console.log(`      ${row.notes}`);
  });

  it('holds every invariant: nothing lost that the replica had, nothing doubled, no component restarted, the upload right after seen at once', () => {
    expect(row.scenario).to.equal('fail over the primary');
    expect(row.broken, lines.join('\n')).to.deep.equal([]);
    expect(row.proxyAlive).to.equal(true);
    expect(row.duplicated).to.equal(0);
    expect(row.writesAcknowledged).to.be.above(0);
    expect(row.stored + row.lost).to.be.at.least(row.writesAcknowledged);
  });

  it(`accepts uploads through the proxy again within ${WRITES_BACK_WITHIN_MS / 1000} s of the kill, and reads from the new replica`, () => {
    const t = row.timeline!;
    expect(t['promoted']).to.be.a('number');
    expect(t['firstAcceptedWrite']).to.be.at.most(WRITES_BACK_WITHIN_MS);
    expect(t['firstAcceptedWrite']).to.be.at.least(t['promoted']! - 1_000);
    expect(t['firstReadFromNewReplica']).to.be.a('number').and.above(0);
  });
});
