import { expect } from 'chai';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { canonicalVersion, normalizeVersion, parseVersion, sortKey } from '../package-index/pep440.js';
import { run } from './support/packages.js';
import { tempDir } from './support/services.js';
import { byVersion } from './support/versions.js';

/** Asks Python's `packaging` (what pip and Warehouse use) about each version: its normal form, or null, and the sorted order. */
const ORACLE = String.raw`
import json, sys
try:
    from packaging.version import Version, InvalidVersion
except ImportError:
    from pip._vendor.packaging.version import Version, InvalidVersion
texts = json.load(open(sys.argv[1]))
parsed = []
for t in texts:
    try:
        parsed.append(Version(t))
    except InvalidVersion:
        parsed.append(None)
valid = [i for i, v in enumerate(parsed) if v is not None]
order = sorted(valid, key=lambda i: parsed[i])
print(json.dumps({"normal": [None if v is None else str(v) for v in parsed], "order": order}))
`;

/** A small deterministic generator (mulberry32), so a failure can be replayed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Versions in every shape PEP 440 allows, and some it does not: epochs, long releases, pre/post/dev in every spelling, locals. */
function generate(count: number, seed: number): string[] {
  const r = random(seed);
  const pick = <T>(list: readonly T[]) => list[Math.floor(r() * list.length)]!;
  const n = () => pick(['0', '1', '2', '9', '10', '00', '01', '99', '2024', '123456789012345678901']);
  const sep = () => pick(['', '.', '-', '_']);
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    let v = r() < 0.1 ? `${n()}!` : '';
    if (r() < 0.05) v = `v${v}`;
    v += Array.from({ length: 1 + Math.floor(r() * 4) }, n).join('.');
    if (r() < 0.35)
      v += `${sep()}${pick(['a', 'b', 'rc', 'c', 'alpha', 'beta', 'pre', 'preview', 'A', 'RC'])}${sep()}${r() < 0.8 ? n() : ''}`;
    if (r() < 0.25) v += r() < 0.3 ? `-${n()}` : `${sep()}${pick(['post', 'rev', 'r', 'POST'])}${sep()}${r() < 0.8 ? n() : ''}`;
    if (r() < 0.25) v += `${sep()}${pick(['dev', 'DEV'])}${r() < 0.8 ? n() : ''}`;
    if (r() < 0.15)
      v += `+${Array.from({ length: 1 + Math.floor(r() * 3) }, () => pick(['ubuntu', '1', '02', 'abc', 'x7', 'LOCAL'])).join(pick(['.', '-', '_']))}`;
    if (r() < 0.03) v = pick([`${v}..`, `${v}+`, `${v} x`, `1.${v}!`, `${v}-`, `.${v}`]);
    out.push(v);
  }
  return out;
}

describe('PEP 440 against packaging (what pip and Warehouse use), on 4,000 generated versions', () => {
  let texts: string[];
  let oracle: { normal: (string | null)[]; order: number[] };

  before(async function () {
    this.timeout(60_000);
    texts = generate(4_000, 440);
    const dir = tempDir('banyan-pep440-');
    try {
      writeFileSync(join(dir, 'versions.json'), JSON.stringify(texts));
      const r = await run('python3', ['-c', ORACLE, join(dir, 'versions.json')]);
      oracle = JSON.parse(r.stdout) as typeof oracle;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('accepts and refuses the same versions, and normalizes them the same way', () => {
    const differences = texts
      .map((t, i) => [t, parseVersion(t) ? normalizeVersion(parseVersion(t)!) : null, oracle.normal[i]] as const)
      .filter(([, ours, theirs]) => ours !== theirs);
    expect(differences.slice(0, 10), `${differences.length} of ${texts.length} differ`).to.deep.equal([]);
    expect(oracle.normal.filter((x) => x === null).length, 'some generated versions are invalid').to.be.above(20);
  });

  it('orders them the same way, by comparison and by the database sort key', () => {
    const valid = oracle.order.slice().sort((a, b) => a - b);
    const parsed = new Map(valid.map((i) => [i, parseVersion(texts[i]!)!]));
    // Equal versions (1.0 and 1.0.0) keep their input order in both sorts.
    const ours = valid.slice().sort((a, b) => byVersion(parsed.get(a)!, parsed.get(b)!) || a - b);
    const theirs = oracle.order;
    const same = (x: number, y: number) => byVersion(parsed.get(x)!, parsed.get(y)!) === 0;
    const mismatch = ours.findIndex((i, k) => i !== theirs[k] && !same(i, theirs[k]!));
    expect(
      mismatch,
      mismatch < 0 ? '' : `first difference at ${mismatch}: ours ${texts[ours[mismatch]!]}, packaging ${texts[theirs[mismatch]!]}`,
    ).to.equal(-1);
    // The sort key orders releases in SQL; local versions are never stored (uploads refuse them).
    const publicOnes = valid.filter((i) => !parsed.get(i)!.local);
    const byKey = publicOnes
      .slice()
      .sort((a, b) =>
        sortKey(parsed.get(a)!) < sortKey(parsed.get(b)!) ? -1 : sortKey(parsed.get(a)!) > sortKey(parsed.get(b)!) ? 1 : a - b,
      );
    const byCompare = publicOnes.slice().sort((a, b) => byVersion(parsed.get(a)!, parsed.get(b)!) || a - b);
    expect(byKey.map((i) => canonicalVersion(parsed.get(i)!))).to.deep.equal(byCompare.map((i) => canonicalVersion(parsed.get(i)!)));
  });
});
