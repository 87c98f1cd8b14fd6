import { expect } from 'chai';
import { isValidName, normalizeName } from '../package-index/names.js';

describe('project names (PEP 503 / PEP 508)', () => {
  const cases: [string, string][] = [
    ['Django', 'django'],
    ['zope.interface', 'zope-interface'],
    ['Foo__Bar', 'foo-bar'],
    ['foo-._bar', 'foo-bar'],
    ['A', 'a'],
    ['requests', 'requests'],
  ];
  for (const [name, expected] of cases) {
    it(`normalizes ${name} to ${expected}`, () => expect(normalizeName(name)).to.equal(expected));
  }

  it('accepts names that start and end with a letter or digit', () => {
    for (const name of ['a', 'A1', 'zope.interface', 'foo_bar-baz']) expect(isValidName(name), name).to.equal(true);
  });

  it('rejects empty names, leading or trailing punctuation, and other characters', () => {
    for (const name of ['', '-foo', 'foo.', 'foo bar', 'föö', 'a/b', '../x']) expect(isValidName(name), name).to.equal(false);
  });
});
