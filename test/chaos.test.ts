import { expect } from 'chai';
import { chaos } from '../chaos/run.js';
import type { ChaosRow } from '../chaos/suite.js';

/**
 * `npm run chaos` in a form short enough for CI: the same scenarios against
 * the same real processes (`banyan start`, a proxy with two workers, two app
 * instances), with one-second faults. Each row must hold its invariants: no
 * acknowledged write lost, none stored twice, a proxy that never exited,
 * reads on fallback routes answered by legacy within a second of the death
 * of every app instance, and, when one instance dies, every read on the new
 * app's routes answered by another.
 */
describe('chaos: kills, freezes, flips and attacks against npm start, every invariant held', function () {
  this.timeout(600_000);
  let rows: ChaosRow[];
  const row = (name: string) => {
    const found = rows.find((r) => r.scenario === name);
    expect(found, `a row for "${name}"`).to.not.equal(undefined);
    return found!;
  };

  before(async function () {
    this.timeout(600_000);
    const lines: string[] = [];
    rows = await chaos({ seconds: 1, workers: 2, log: (line) => lines.push(line) });
    console.log(
      `\n${rows.map((r) => `      ${r.scenario.padEnd(32)} ${String(r.requests).padStart(5)} reads, ${r.failures} failed, ${r.writesAcknowledged} writes acked, ${r.lost} lost, ${r.duplicated} duplicated${r.firstFallbackMs === null ? '' : `, first fallback ${r.firstFallbackMs} ms`}${r.failures && r.notes ? ` (${r.notes})` : ''}`).join('\n')}`,
    );
  });

  it('runs every scenario under real load: reads and acknowledged uploads in each fault', () => {
    expect(rows.map((r) => r.scenario)).to.deep.equal([
      'kill the new app',
      'freeze the new app',
      'kill one app instance',
      'kill legacy',
      'freeze legacy',
      'kill the replica',
      'freeze the replica',
      'kill the primary',
      'freeze the primary',
      'kill Redis',
      'freeze Redis',
      'crash a proxy worker',
      'flip a route 50 times',
      'shadow to a dead app',
      'attacks: path tricks on a retired route',
      'attacks: usage poisoning',
      'attacks: slow bodies ×140',
      'attacks: slow bodies ×1000',
      'attacks: retired spellings',
      'attacks: form bomb against the app',
      'attacks: Host header in cacheable URLs',
      'attacks: forged banyan_sid',
      'attacks: login flood',
    ]);
    for (const r of rows.filter((x) => !x.scenario.startsWith('attacks: '))) {
      expect(r.requests, `${r.scenario}: reads sent`).to.be.above(50);
      expect(r.writesSent, `${r.scenario}: uploads sent`).to.be.above(0);
      // Uploads go to the new app: while it is dead or frozen they are refused with 503, never replayed.
      if (!/new app|dead app/.test(r.scenario)) expect(r.writesAcknowledged, `${r.scenario}: uploads acknowledged`).to.be.above(0);
    }
  });

  it('loses no acknowledged write and stores none twice, whatever died', () => {
    for (const r of rows) expect([r.scenario, r.lost, r.duplicated]).to.deep.equal([r.scenario, 0, 0]);
    for (const r of rows) expect(r.stored, `${r.scenario}: every acknowledged upload is stored`).to.be.at.least(r.writesAcknowledged);
  });

  it('keeps the proxy process up through every fault', () => {
    for (const r of rows) expect([r.scenario, r.proxyAlive]).to.deep.equal([r.scenario, true]);
  });

  it("answers reads on fallback routes from legacy within a second of the new app's death, and fails none", () => {
    const killed = row('kill the new app');
    expect(killed.firstFallbackMs).to.be.a('number').and.at.most(1_000);
    expect(killed.fallbacks).to.be.above(0);
    expect(killed.broken).to.deep.equal([]);
  });

  it("fails no read on the new app's routes when one instance dies: the other answers, none falls back to legacy", () => {
    const one = row('kill one app instance');
    expect(one.failures, `no read failed, on any route: ${one.notes}`).to.equal(0);
    expect(one.notes).to.equal('app-1 killed and restarted; app-2 stayed up');
    expect(one.writesAcknowledged, 'uploads go on through the other instance').to.be.above(0);
    expect(one.broken).to.deep.equal([]);
  });

  it('fails no read while a route flips 50 times, or while shadowing to a dead app', () => {
    for (const name of ['flip a route 50 times', 'shadow to a dead app'])
      expect(row(name).failures, `${name}: ${row(name).notes}`).to.equal(0);
  });

  it('lets no path trick reach a retired route, and no junk push real features out of the evidence', () => {
    expect(row('attacks: path tricks on a retired route').broken).to.deep.equal([]);
    expect(row('attacks: usage poisoning').broken).to.deep.equal([]);
  });

  it("keeps other clients' legacy pages under 1 s while 140 or 1,000 connections trickle bodies, each of those answered 408", () => {
    for (const name of ['attacks: slow bodies ×140', 'attacks: slow bodies ×1000'])
      expect([name, row(name).failures, row(name).broken]).to.deep.equal([name, 0, []]);
  });

  it('retires every spelling of a retired route, and refuses a fragment', () => {
    expect(row('attacks: retired spellings').broken).to.deep.equal([]);
  });

  it('answers four concurrent form bombs 413, with no app instance growing by more than 150 MB of RSS', () => {
    expect(row('attacks: form bomb against the app').broken).to.deep.equal([]);
  });

  it('puts no client-chosen host in a cacheable answer, lets no forged banyan_sid pick a side, and throttles a login flood', () => {
    for (const name of ['attacks: Host header in cacheable URLs', 'attacks: forged banyan_sid', 'attacks: login flood'])
      expect([name, row(name).broken]).to.deep.equal([name, []]);
  });

  it('holds every invariant in every scenario', () => {
    expect(rows.filter((r) => r.broken.length).map((r) => `${r.scenario}: ${r.broken.join('; ')}`)).to.deep.equal([]);
  });
});
