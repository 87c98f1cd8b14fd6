import { expect } from 'chai';
import { Breaker, type BreakerState } from '../lib/breaker.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function breaker(clock: { now: number }, changes: BreakerState[] = [], resetTimeoutMs = 60_000): Breaker {
  return new Breaker({
    errorThresholdPercentage: 50,
    volumeThreshold: 4,
    resetTimeoutMs,
    rollingWindowMs: 10_000,
    now: () => clock.now,
    onChange: (state) => changes.push(state),
  });
}

describe('circuit breaker', () => {
  it('stays closed below the volume threshold, however many of those calls failed', () => {
    const b = breaker({ now: 0 });
    for (let i = 0; i < 3; i++) {
      expect(b.admit()).to.equal(true);
      b.failed();
    }
    expect(b.state).to.equal('closed');
  });

  it('opens once the window holds enough calls and more than the threshold share failed, and refuses calls', () => {
    const changes: BreakerState[] = [];
    const b = breaker({ now: 0 }, changes);
    b.succeeded();
    b.succeeded();
    b.failed();
    b.failed();
    expect(b.state, 'exactly 50 % is not above 50 %').to.equal('closed');
    b.failed();
    expect(b.state).to.equal('open');
    expect(changes).to.deep.equal(['open']);
    expect(b.admit()).to.equal(false);
    b.shutdown();
  });

  it('forgets calls older than the rolling window', () => {
    const clock = { now: 0 };
    const b = breaker(clock);
    for (let i = 0; i < 3; i++) b.failed();
    clock.now = 10_500;
    b.succeeded();
    b.succeeded();
    b.succeeded();
    b.failed();
    expect(b.state, 'the three old failures went out of the window').to.equal('closed');
    clock.now = 11_000;
    b.failed();
    b.failed();
    expect(b.state, '3 of 6 calls in the window').to.equal('closed');
    b.failed();
    expect(b.state, '4 of 7').to.equal('open');
    b.shutdown();
  });

  it('after the reset time lets one trial through: success closes it with a clean window', async () => {
    const changes: BreakerState[] = [];
    const b = breaker({ now: 0 }, changes, 30);
    for (let i = 0; i < 4; i++) b.failed();
    expect(b.state).to.equal('open');
    await sleep(60);
    expect(b.state).to.equal('half-open');
    expect(b.admit(), 'the trial').to.equal(true);
    expect(b.admit(), 'a second caller while the trial runs').to.equal(false);
    b.succeeded();
    expect(b.state).to.equal('closed');
    b.failed();
    expect(b.state, 'the failures that opened it no longer count').to.equal('closed');
    expect(changes).to.deep.equal(['open', 'half-open', 'closed']);
  });

  it('a failed trial opens it again for another reset time', async () => {
    const b = breaker({ now: 0 }, [], 30);
    for (let i = 0; i < 4; i++) b.failed();
    await sleep(60);
    expect(b.admit()).to.equal(true);
    b.failed();
    expect(b.state).to.equal('open');
    expect(b.admit()).to.equal(false);
    await sleep(60);
    expect(b.state).to.equal('half-open');
    b.shutdown();
  });
});
