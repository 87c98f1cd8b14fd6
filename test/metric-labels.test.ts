import { expect } from 'chai';
import { CappedLabels, normalizePath } from '../metrics/paths.js';

describe('labels for unmatched paths', () => {
  const cases: [string, string][] = [
    ['/', '/'],
    ['/users/12345/edit', '/users/:n/edit'],
    ['/download/550e8400-e29b-41d4-a716-446655440000', '/download/:uuid'],
    ['/objects/deadbeefcafebabe0123456789abcdef', '/objects/:hash'],
    ['/pypi/Foo/1.2.3/json?x=1', '/pypi/foo/:version/json'],
    ['/files/foo-1.2.3rc1.tar.gz', '/files/foo-:version.tar.gz'],
    ['/a/b/c/d/e/f/g/h', '/a/b/c/d/e/f/…'],
    [`/x/${'y'.repeat(80)}`, '/x/:long'],
    ['/odd/na%20me/<script>', '/odd/na_me/_script_'],
    ['/bad/%E0%A4%A', '/bad/_e0_a4_a'],
  ];
  for (const [path, label] of cases) {
    it(`labels ${path} as ${label}`, () => expect(normalizePath(path)).to.equal(label));
  }

  it('keeps at most the limit of distinct labels, then answers "other"', () => {
    const labels = new CappedLabels(3);
    expect(['/a', '/b', '/a', '/c', '/d', '/b'].map((p) => labels.label(p))).to.deep.equal(['/a', '/b', '/a', '/c', 'other', '/b']);
    expect(labels.size).to.equal(3);
  });
});
