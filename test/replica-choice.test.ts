import { expect } from 'chai';
import { chooseReader, type ChoiceInput, type ChoicePolicy, type ReplicaReading } from '../routing/reads/replica-choice.js';

const policy: ChoicePolicy = { maxLagBytes: 1_000, maxLagSeconds: 5, staleReadLimitSeconds: 60, spread: 'round-robin' };

/** A replica that is reachable, caught up to `replayLsn`, and within the limits, unless told otherwise. */
const replica = (index: number, replayLsn: bigint | undefined, more: Partial<ReplicaReading> = {}): ReplicaReading => ({
  index,
  healthy: true,
  breakerOpen: false,
  replayLsn,
  lagBytes: 0,
  lagSeconds: 0,
  inFlight: 0,
  ...more,
});

const input = (more: Partial<ChoiceInput>): ChoiceInput => ({
  serverCount: 3,
  replicas: [replica(1, 100n), replica(2, 100n)],
  fence: {},
  fenceOnOldTimeline: false,
  primaryBusy: false,
  turn: 0,
  phase: 'first',
  mayWait: false,
  ...more,
});

const read = (target: 'primary' | number, reason: string, tookTurn = false) => ({ kind: 'read', target, reason, tookTurn });

describe('replica choice (chooseReader, no PostgreSQL)', () => {
  it('without a fence, takes turns among usable replicas', () => {
    expect(chooseReader(input({ turn: 0 }), policy)).to.deep.equal(read(1, 'no_fence', true));
    expect(chooseReader(input({ turn: 1 }), policy)).to.deep.equal(read(2, 'no_fence', true));
    expect(chooseReader(input({ turn: 2 }), policy)).to.deep.equal(read(1, 'no_fence', true));
  });

  it('least-in-flight takes the replica with the fewest reads running, and uses no turn', () => {
    const replicas = [replica(1, 100n, { inFlight: 7 }), replica(2, 100n, { inFlight: 2 }), replica(3, 100n, { inFlight: 5 })];
    expect(chooseReader(input({ replicas, serverCount: 4 }), { ...policy, spread: 'least-in-flight' })).to.deep.equal(read(2, 'no_fence'));
  });

  it('leaves out a replica that is down, whose breaker is open, that lags in bytes or seconds, or has no position yet', () => {
    const replicas = [
      replica(1, 100n, { healthy: false }),
      replica(2, 100n, { breakerOpen: true }),
      replica(3, 100n, { lagBytes: 1_001 }),
      replica(4, 100n, { lagSeconds: 6 }),
      replica(5, undefined),
      replica(6, 100n, { lagBytes: 1_000, lagSeconds: 5 }),
    ];
    for (const turn of [0, 1, 2, 3])
      expect(chooseReader(input({ replicas, serverCount: 7, turn }), policy)).to.deep.equal(read(6, 'no_fence', true));
  });

  it('a timed pin, a fence from an old timeline and a lone primary read from the primary, each saying why', () => {
    expect(chooseReader(input({ fence: { primary: true } }), policy)).to.deep.equal(read('primary', 'pinned'));
    expect(chooseReader(input({ fence: { minLsn: 50n }, fenceOnOldTimeline: true }), policy)).to.deep.equal(
      read('primary', 'old_timeline'),
    );
    expect(chooseReader(input({ serverCount: 1, replicas: [] }), policy)).to.deep.equal(read('primary', 'no_replica'));
  });

  it('with a fence, only a replica that has replayed it serves', () => {
    const replicas = [replica(1, 90n), replica(2, 120n)];
    expect(chooseReader(input({ replicas, fence: { minLsn: 100n } }), policy)).to.deep.equal(read(2, 'fence_met', true));
    expect(chooseReader(input({ replicas, fence: { minLsn: 120n }, turn: 5 }), policy)).to.deep.equal(read(2, 'fence_met', true));
    expect(chooseReader(input({ replicas, fence: { minLsn: 121n } }), policy)).to.deep.equal(read('primary', 'fence_unmet'));
  });

  it('an unmet fence waits when it may, a replica that catches up ends the wait, and the end of the wait is fence_unmet', () => {
    const behind = [replica(1, 90n)];
    const fence = { minLsn: 100n };
    expect(chooseReader(input({ replicas: behind, serverCount: 2, fence, mayWait: true }), policy)).to.deep.equal({ kind: 'wait' });
    expect(chooseReader(input({ replicas: behind, serverCount: 2, fence, phase: 'waiting', mayWait: true }), policy)).to.deep.equal({
      kind: 'wait',
    });
    // Even a replica that drops out while the router waits does not end the wait early: only one that catches up does.
    const gone = [replica(1, 90n, { healthy: false })];
    expect(chooseReader(input({ replicas: gone, serverCount: 2, fence, phase: 'waiting', mayWait: true }), policy)).to.deep.equal({
      kind: 'wait',
    });
    const caughtUp = [replica(1, 100n)];
    expect(chooseReader(input({ replicas: caughtUp, serverCount: 2, fence, phase: 'waiting', mayWait: true }), policy)).to.deep.equal(
      read(1, 'fence_wait', true),
    );
    expect(chooseReader(input({ replicas: behind, serverCount: 2, fence, phase: 'last', mayWait: true }), policy)).to.deep.equal(
      read('primary', 'fence_unmet'),
    );
  });

  it('with no usable replica: lagging when one is reachable, replica_down when none is; a fence does not wait then', () => {
    const lagging = [replica(1, 100n, { lagSeconds: 10 })];
    const down = [replica(1, 100n, { healthy: false })];
    for (const fence of [{}, { minLsn: 50n }]) {
      expect(chooseReader(input({ replicas: lagging, serverCount: 2, fence, mayWait: true }), policy)).to.deep.equal(
        read('primary', 'lagging'),
      );
      expect(chooseReader(input({ replicas: down, serverCount: 2, fence, mayWait: true }), policy)).to.deep.equal(
        read('primary', 'replica_down'),
      );
    }
  });

  it('a busy primary sends unfenced reads to the replica furthest along within the staleness limit, never fenced ones', () => {
    const replicas = [replica(1, 80n, { lagSeconds: 10 }), replica(2, 95n, { lagSeconds: 20 }), replica(3, 99n, { lagSeconds: 61 })];
    expect(chooseReader(input({ replicas, serverCount: 4, primaryBusy: true }), policy)).to.deep.equal(read(2, 'primary_busy'));
    expect(chooseReader(input({ replicas, serverCount: 4, primaryBusy: false }), policy)).to.deep.equal(read('primary', 'lagging'));
    expect(chooseReader(input({ replicas, serverCount: 4, primaryBusy: true, fence: { minLsn: 1n } }), policy)).to.deep.equal(
      read('primary', 'lagging'),
    );
    const tooStale = [replica(1, 80n, { lagSeconds: 61 })];
    expect(chooseReader(input({ replicas: tooStale, serverCount: 2, primaryBusy: true }), policy)).to.deep.equal(
      read('primary', 'lagging'),
    );
  });
});
