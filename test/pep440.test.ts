import { expect } from 'chai';
import { canonicalVersion, isPrerelease, normalizeVersion, parseVersion, sortKey, type Version } from '../package-index/pep440.js';
import { byVersion } from './support/versions.js';

function v(text: string): Version {
  const parsed = parseVersion(text);
  if (!parsed) throw new Error(`test version ${text} did not parse`);
  return parsed;
}

describe('PEP 440 versions', () => {
  // packaging's own ordering table (tests/test_version.py), lowest first.
  const ordered = [
    '1.0.dev456',
    '1.0a1',
    '1.0a2.dev456',
    '1.0a12.dev456',
    '1.0a12',
    '1.0b1.dev456',
    '1.0b2',
    '1.0b2.post345.dev456',
    '1.0b2.post345',
    '1.0b2-346',
    '1.0c1.dev456',
    '1.0c1',
    '1.0rc2',
    '1.0c3',
    '1.0',
    '1.0.post456.dev34',
    '1.0.post456',
    '1.1.dev1',
    '1.2+123abc',
    '1.2+123abc456',
    '1.2+abc',
    '1.2+abc123',
    '1.2+abc123def',
    '1.2+1234.abc',
    '1.2+123456',
    '1.2.r32+123456',
    '1.2.rev33+123456',
    '1!1.0.dev456',
    '1!1.0a1',
    '1!1.0',
    '1!1.0.post456',
    '1!1.2+123456',
  ];
  it("orders packaging's table of versions exactly", () => {
    const shuffled = [...ordered].reverse().map(v);
    shuffled.sort(byVersion);
    expect(shuffled.map(normalizeVersion)).to.deep.equal(ordered.map((t) => normalizeVersion(v(t))));
    for (let i = 1; i < ordered.length; i++) {
      expect(byVersion(v(ordered[i - 1]!), v(ordered[i]!)), `${ordered[i - 1]} < ${ordered[i]}`).to.be.below(0);
    }
  });

  const equal: [string, string][] = [
    ['1.0', '1.0.0'],
    ['1.0', '1'],
    ['1.0a1', '1.0-alpha-1'],
    ['1.0rc1', '1.0c1'],
    ['1.0rc1', '1.0.pre1'],
    ['1.0.post1', '1.0-1'],
    ['1.0.post1', '1.0.rev1'],
    ['1.0.dev0', '1.0.dev'],
    ['v1.0', '1.0'],
    ['0!1.0', '1.0'],
    ['1.0+ubuntu-1', '1.0+ubuntu.1'],
    ['01.002', '1.2'],
  ];
  for (const [a, b] of equal) {
    it(`treats ${a} and ${b} as the same version`, () => {
      expect(byVersion(v(a), v(b))).to.equal(0);
      expect(canonicalVersion(v(a))).to.equal(canonicalVersion(v(b)));
    });
  }

  it('orders numerically, not as text', () => {
    expect(byVersion(v('1.10'), v('1.9'))).to.be.above(0);
    expect(byVersion(v('10.0'), v('9.99.99'))).to.be.above(0);
    expect(byVersion(v('2024.123456789012345678901'), v('2024.123456789012345678900'))).to.be.above(0);
    expect(byVersion(v('1.0.1'), v('1.0'))).to.be.above(0);
  });

  const normalized: [string, string][] = [
    ['1.0-Alpha_1', '1.0a1'],
    ['1.0.0', '1.0.0'],
    ['1.0-1', '1.0.post1'],
    ['1.0.DEV', '1.0.dev0'],
    ['1!2.0b3.post4.dev5+Local.7', '1!2.0b3.post4.dev5+local.7'],
    ['  1.0  ', '1.0'],
  ];
  for (const [text, expected] of normalized) {
    it(`normalizes ${JSON.stringify(text)} to ${expected}`, () => expect(normalizeVersion(v(text))).to.equal(expected));
  }

  it('canonicalizes by dropping trailing zeros of the release only', () => {
    expect(canonicalVersion(v('1.0.0'))).to.equal('1');
    expect(canonicalVersion(v('1.0.0.post0'))).to.equal('1.post0');
    expect(canonicalVersion(v('1.10'))).to.equal('1.10');
  });

  for (const bad of ['', 'latest', '1.0.', '1..0', '1.0+', '1.0+local!', 'a1.0', '1.0 beta', '1/0', '1.0-foo']) {
    it(`rejects ${JSON.stringify(bad)}`, () => expect(parseVersion(bad)).to.equal(undefined));
  }

  it('knows pre-releases and dev releases from final and post releases', () => {
    for (const t of ['1.0a1', '1.0rc1', '1.0.dev1', '1.0.post1.dev1']) expect(isPrerelease(v(t)), t).to.equal(true);
    for (const t of ['1.0', '1.0.post1', '1.0+local']) expect(isPrerelease(v(t)), t).to.equal(false);
  });

  it('gives sort keys in the same order as the comparison, for the database', () => {
    const keys = ordered.map((t) => sortKey(v(t)));
    expect([...keys].sort()).to.deep.equal(keys);
  });
});
