import { expect } from 'chai';
import { laterPosition, parseLsn, parseTimeline } from '../lib/lsn.js';
import { FenceStore, requestFence } from '../routing/reads/index.js';
import { fenceOnTimeline, parseTimelineHistory } from '../routing/reads/timelines.js';
import { services } from './support/services.js';

describe('fences across a failover (timelines)', () => {
  // What PostgreSQL writes to pg_wal/00000003.history after two promotions.
  const history = parseTimelineHistory(
    '1\t0/3000060\tno recovery target specified\n\n2\t0/5000000\tno recovery target specified\n',
    parseLsn,
  );

  it('reads a timeline history file', () => {
    expect(history).to.deep.equal([
      { timeline: 1, switchLsn: 0x3000060n },
      { timeline: 2, switchLsn: 0x5000000n },
    ]);
  });

  it("a fence of the primary's own timeline, or without one (an old pin), compares LSNs", () => {
    expect(fenceOnTimeline({ minLsn: 0x6000000n, timeline: 3 }, 3, history)).to.deep.equal({ kind: 'lsn' });
    expect(fenceOnTimeline({ minLsn: 0x6000000n }, 3, history)).to.deep.equal({ kind: 'lsn' });
  });

  it('a write of an older timeline before its switch point survived: LSNs compare', () => {
    expect(fenceOnTimeline({ minLsn: 0x3000060n, timeline: 1 }, 3, history)).to.deep.equal({ kind: 'lsn' });
    expect(fenceOnTimeline({ minLsn: 0x4000000n, timeline: 2 }, 3, history)).to.deep.equal({ kind: 'lsn' });
  });

  it('one past its switch point never reached the standby: lost, so reads go to the primary (never wait for it)', () => {
    expect(fenceOnTimeline({ minLsn: 0x3000061n, timeline: 1 }, 3, history)).to.deep.equal({ kind: 'primary', lost: true });
  });

  it('without the history, or with a fence newer than the primary known, the primary answers', () => {
    expect(fenceOnTimeline({ minLsn: 1n, timeline: 1 }, 3, undefined)).to.deep.equal({ kind: 'primary', lost: false });
    expect(fenceOnTimeline({ minLsn: 1n, timeline: 4 }, 3, history)).to.deep.equal({ kind: 'primary', lost: false });
  });

  it('the later of two positions: a newer timeline wins whatever its LSN; timelines are positive whole numbers', () => {
    expect(laterPosition({ lsn: 500n, timeline: 1 }, { lsn: 300n, timeline: 2 })).to.deep.equal({ lsn: 300n, timeline: 2 });
    expect(laterPosition({ lsn: 500n, timeline: 2 }, { lsn: 300n, timeline: 2 })).to.deep.equal({ lsn: 500n, timeline: 2 });
    expect(laterPosition({ lsn: 500n }, { lsn: 600n, timeline: 2 })).to.deep.equal({ lsn: 600n, timeline: 2 });
    expect([parseTimeline('3'), parseTimeline('0'), parseTimeline('x'), parseTimeline('99999999999')]).to.deep.equal([
      3,
      undefined,
      undefined,
      undefined,
    ]);
  });

  it('a resource fence in Redis keeps the later position: a newer timeline replaces a higher LSN of an older one', async () => {
    const store = new FenceStore({ redisUrl: (await services()).redisUrl ?? undefined });
    const resource = `project:timelines-${process.pid}`;
    try {
      // Commands fail rather than queue until the client has connected.
      for (let tries = 0; tries < 5; tries++) {
        await new Promise((r) => setTimeout(r, tries === 0 ? 200 : 2_100));
        const skipped = store.skipped;
        await store.raise(`${resource}-warm`, { lsn: 1n });
        if (store.skipped === skipped) break;
      }
      await store.raise(resource, { lsn: 500n, timeline: 1 });
      await store.raise(resource, { lsn: 400n, timeline: 1 });
      expect(await store.fenceFor([resource])).to.deep.equal({ lsn: 500n, timeline: 1 });
      await store.raise(resource, { lsn: 300n, timeline: 2 });
      expect(await store.fenceFor([resource])).to.deep.equal({ lsn: 300n, timeline: 2 });
      await store.raise(resource, { lsn: 900n, timeline: 1 });
      expect(await store.fenceFor([resource]), 'a late write of the old timeline does not win').to.deep.equal({ lsn: 300n, timeline: 2 });
      expect(await requestFence({ minLsn: 600n, timeline: 1 }, store, [resource])).to.deep.equal({
        primary: undefined,
        minLsn: 300n,
        timeline: 2,
      });
      expect(await requestFence({ minLsn: 350n, timeline: 2 }, store, [resource])).to.deep.equal({ minLsn: 350n, timeline: 2 });
    } finally {
      store.close();
    }
  });
});
