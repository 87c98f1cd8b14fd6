import { expect } from 'chai';
import { pickBySession, pickLeastRequest, pickRoundRobin, slowStartWeight, type Balanced } from '../proxy/upstreams/upstream-balancer.js';
import { seededRandom } from '../lib/random.js';

/** An endpoint as the balancer sees it, set by hand. */
interface Fake extends Balanced {
  inFlight: number;
  up: boolean;
  weightAt: (now: number) => number;
}

function fake(url: string, weight = 1): Fake {
  return {
    url,
    inFlight: 0,
    up: true,
    weightAt: () => weight,
    available() {
      return this.up;
    },
    weight(now) {
      return this.weightAt(now);
    },
  };
}

/**
 * Least request under load: `picks` requests arrive while 30 are in flight,
 * each finishing in random order. Returns each endpoint's share of the picks.
 */
function shares(endpoints: Fake[], now: number, picks = 20_000): number[] {
  const random = seededRandom(7);
  const counts = endpoints.map(() => 0);
  const inFlight: Fake[] = [];
  for (let i = 0; i < picks; i++) {
    const e = pickLeastRequest(endpoints, now, random)!;
    e.inFlight++;
    inFlight.push(e);
    counts[endpoints.indexOf(e)]!++;
    if (inFlight.length > 30) {
      const done = inFlight.splice(Math.floor(random() * inFlight.length), 1)[0]!;
      done.inFlight--;
    }
  }
  for (const e of inFlight) e.inFlight--;
  return counts.map((c) => c / picks);
}

function urls(list: readonly (Fake | undefined)[]): string[] {
  return list.map((e) => e?.url ?? 'none');
}

describe('upstream balancer', () => {
  describe('least request (power of two choices)', () => {
    it('never sends to the busier of the pair: an endpoint busier than all others gets nothing while they stay idle', () => {
      const [a, b, c] = [fake('a'), fake('b'), fake('c')];
      a.inFlight = 5;
      b.inFlight = 1;
      const random = seededRandom(1);
      const picked = new Map<string, number>();
      for (let i = 0; i < 1_000; i++) {
        const e = pickLeastRequest([a, b, c], 0, random)!;
        picked.set(e.url, (picked.get(e.url) ?? 0) + 1);
      }
      expect(picked.get('a'), 'the busiest is in a pair with a less busy one every time').to.equal(undefined);
      expect(picked.get('c')).to.be.greaterThan(picked.get('b') ?? 0);
      expect(pickLeastRequest([a, b], 0, random), 'two endpoints: both are in every pair').to.equal(b);
    });

    it('spreads load evenly over equal endpoints', () => {
      const share = shares([fake('a'), fake('b'), fake('c')], 0);
      for (const s of share) expect(s).to.be.closeTo(1 / 3, 0.03);
    });

    it('gives an endpoint a share that grows with its weight', () => {
      const [light1, light2, heavy] = shares([fake('a', 0.5), fake('b', 0.5), fake('c', 1)], 0);
      expect(heavy).to.be.closeTo(0.5, 0.06);
      expect(light1).to.be.closeTo(0.25, 0.04);
      expect(light2).to.be.closeTo(0.25, 0.04);
    });

    it('ramps a slow-starting endpoint up from a tenth of its share to all of it', () => {
      const ramping = fake('new');
      ramping.weightAt = (now) => slowStartWeight(now - 1_000, 10_000);
      const endpoints = [fake('a'), fake('b'), ramping];
      const at = [1_000, 3_500, 6_000, 8_500, 11_000].map((now) => shares(endpoints, now)[2]!);
      for (let i = 1; i < at.length; i++) expect(at[i], `share at step ${i}`).to.be.greaterThan(at[i - 1]!);
      expect(at[0], 'a tenth of the weight of each of the others').to.be.lessThan(0.06);
      expect(at[4], 'all of it after slow start').to.be.closeTo(1 / 3, 0.03);
    });

    it('never picks the excluded or unavailable endpoint, and picks none when nothing else is left', () => {
      const [a, b, c] = [fake('a'), fake('b'), fake('c')];
      c.up = false;
      const random = seededRandom(3);
      for (let i = 0; i < 200; i++) expect(pickLeastRequest([a, b, c], 0, random, a)).to.equal(b);
      b.up = false;
      expect(pickLeastRequest([a, b, c], 0, random, a)).to.equal(undefined);
      expect(pickLeastRequest([a, b, c], 0, random)).to.equal(a);
      expect(pickLeastRequest([], 0, random)).to.equal(undefined);
    });

    it('copes with a random source at the very end of its range', () => {
      const endpoints = [fake('a', 0.3), fake('b', 0.3), fake('c', 0.3)];
      expect(pickLeastRequest(endpoints, 0, () => 0.9999999999999999)).to.not.equal(undefined);
    });
  });

  describe('round robin (smooth weighted)', () => {
    it('takes equal endpoints in turn', () => {
      const endpoints = [fake('a'), fake('b'), fake('c')];
      const scores = new Float64Array(3);
      const order = urls(Array.from({ length: 9 }, () => pickRoundRobin(endpoints, scores, 0)));
      expect(order).to.deep.equal(['a', 'b', 'c', 'a', 'b', 'c', 'a', 'b', 'c']);
    });

    it('interleaves by weight as nginx does: 5:1:1 gives a a b a c a a', () => {
      const endpoints = [fake('a', 1), fake('b', 0.2), fake('c', 0.2)];
      const scores = new Float64Array(3);
      const order = urls(Array.from({ length: 14 }, () => pickRoundRobin(endpoints, scores, 0)));
      expect(order).to.deep.equal(
        ['a', 'a', 'b', 'a', 'c', 'a', 'a', 'a', 'a', 'b', 'a', 'c', 'a', 'a'].slice(0, 7).concat(['a', 'a', 'b', 'a', 'c', 'a', 'a']),
      );
    });

    it('skips the excluded and unavailable endpoints, and picks none when nothing else is left', () => {
      const [a, b, c] = [fake('a'), fake('b'), fake('c')];
      b.up = false;
      const scores = new Float64Array(3);
      expect(urls(Array.from({ length: 4 }, () => pickRoundRobin([a, b, c], scores, 0)))).to.deep.equal(['a', 'c', 'a', 'c']);
      expect(pickRoundRobin([a, b, c], scores, 0, c)).to.equal(a);
      expect(pickRoundRobin([a, b, c], scores, 0, a)).to.equal(c);
      c.up = false;
      expect(pickRoundRobin([a, b, c], scores, 0, a)).to.equal(undefined);
    });
  });

  describe('sessions (rendezvous hashing)', () => {
    const keys = Array.from({ length: 2_000 }, (_, i) => `session-${i}`);

    it('keeps each session on one endpoint and spreads sessions evenly', () => {
      const endpoints = ['http://10.0.0.1:8081', 'http://10.0.0.2:8081', 'http://10.0.0.3:8081', 'http://10.0.0.4:8081'].map((u) =>
        fake(u),
      );
      const counts = new Map<string, number>();
      for (const key of keys) {
        const e = pickBySession(endpoints, key, 0)!;
        expect(pickBySession(endpoints, key, 0)).to.equal(e);
        counts.set(e.url, (counts.get(e.url) ?? 0) + 1);
      }
      expect(counts.size).to.equal(4);
      for (const n of counts.values()) expect(n / keys.length).to.be.closeTo(0.25, 0.04);
    });

    it('moves only the sessions of an endpoint that goes down, spread over the others, and brings them back', () => {
      const endpoints = ['http://10.0.0.1:8081', 'http://10.0.0.2:8081', 'http://10.0.0.3:8081'].map((u) => fake(u));
      const before = keys.map((k) => pickBySession(endpoints, k, 0)!);
      endpoints[1]!.up = false;
      const during = keys.map((k) => pickBySession(endpoints, k, 0)!);
      const moved = new Map<string, number>();
      keys.forEach((_, i) => {
        if (before[i] !== endpoints[1]) expect(during[i], `session ${i} was on a live endpoint`).to.equal(before[i]);
        else moved.set(during[i]!.url, (moved.get(during[i]!.url) ?? 0) + 1);
      });
      expect([...moved.keys()].sort()).to.deep.equal(['http://10.0.0.1:8081', 'http://10.0.0.3:8081']);
      for (const n of moved.values()) expect(n).to.be.greaterThan((keys.length / 3 / 2) * 0.7);
      endpoints[1]!.up = true;
      expect(keys.map((k) => pickBySession(endpoints, k, 0))).to.deep.equal(before);
    });

    it('keeps sessions where they are when the endpoint list changes around them', () => {
      const [a, b, c, d] = ['http://10.0.0.1:8081', 'http://10.0.0.2:8081', 'http://10.0.0.3:8081', 'http://10.0.0.4:8081'].map((u) =>
        fake(u),
      );
      const before = keys.map((k) => pickBySession([a!, b!, c!], k, 0)!);
      const after = keys.map((k) => pickBySession([d!, c!, a!], k, 0)!);
      keys.forEach((_, i) => {
        if (before[i] !== b)
          expect(after[i] === before[i] || after[i] === d, `session ${i} stays or moves to the new endpoint`).to.equal(true);
        else expect(after[i]).to.not.equal(b);
      });
      const toNew = after.filter((e) => e === d).length / keys.length;
      expect(toNew, 'the new endpoint takes its share of sessions').to.be.closeTo(1 / 3, 0.05);
    });

    it('ignores weights, so slow start moves no session', () => {
      const endpoints = [fake('http://a:1'), fake('http://b:1'), fake('http://c:1')];
      const before = keys.map((k) => pickBySession(endpoints, k, 0));
      endpoints[0]!.weightAt = () => 0.1;
      expect(keys.map((k) => pickBySession(endpoints, k, 0))).to.deep.equal(before);
    });

    it('sends a session whose endpoint is excluded to its next choice, and picks none when nothing else is left', () => {
      const [a, b] = [fake('http://a:1'), fake('http://b:1')];
      const home = pickBySession([a, b], 'k', 0)!;
      const other = home === a ? b : a;
      expect(pickBySession([a, b], 'k', 0, home)).to.equal(other);
      other.up = false;
      expect(pickBySession([a, b], 'k', 0, home)).to.equal(undefined);
      expect(pickBySession([], 'k', 0)).to.equal(undefined);
    });
  });

  it('slow start weight rises linearly from a tenth to one', () => {
    expect(slowStartWeight(-5, 1_000)).to.equal(0.1);
    expect(slowStartWeight(0, 1_000)).to.equal(0.1);
    expect(slowStartWeight(500, 1_000)).to.be.closeTo(0.55, 1e-9);
    expect(slowStartWeight(1_000, 1_000)).to.equal(1);
    expect(slowStartWeight(Infinity, 1_000)).to.equal(1);
    expect(slowStartWeight(0, 0), 'no slow start').to.equal(1);
  });
});
