import { expect } from 'chai';
import { normalizeTarget } from '../proxy/request-target.js';

describe('request targets: one target, one decision', () => {
  const ok = (raw: string) => {
    const n = normalizeTarget(raw);
    if (!n.ok) throw new Error(`${raw} was refused: ${n.reason}`);
    return n.target;
  };
  const refused = (raw: string) => {
    const n = normalizeTarget(raw);
    return n.ok ? `accepted as ${n.target}` : n.reason;
  };

  it('leaves ordinary targets as they are, query included', () => {
    for (const t of ['/', '/simple/', '/simple/foo/', '/pypi?:action=rss', '/a/b?x=../y&z=%2F']) expect(ok(t)).to.equal(t);
  });

  it('removes dot-segments, encoded ones too, never above the root', () => {
    expect(ok('/a/../pypi/x')).to.equal('/pypi/x');
    expect(ok('/pypi/./x')).to.equal('/pypi/x');
    expect(ok('/a/%2e%2e/pypi/x')).to.equal('/pypi/x');
    expect(ok('/a/%2E%2e/pypi/x')).to.equal('/pypi/x');
    expect(ok('/../../pypi')).to.equal('/pypi');
    expect(ok('/simple/foo/.')).to.equal('/simple/foo/');
    expect(ok('/simple/foo/bar/..')).to.equal('/simple/foo/');
    expect(ok('/a/..b/c.d')).to.equal('/a/..b/c.d');
  });

  it('merges duplicate slashes and decodes only unreserved characters', () => {
    expect(ok('//pypi?:action=rss')).to.equal('/pypi?:action=rss');
    expect(ok('/simple///foo//')).to.equal('/simple/foo/');
    expect(ok('/%70ypi/%7euser')).to.equal('/pypi/~user');
    expect(ok('/a%20b/%c3%a9')).to.equal('/a%20b/%C3%A9');
  });

  it('routes absolute-form targets by their path', () => {
    expect(ok('http://x/pypi/x')).to.equal('/pypi/x');
    expect(ok('HTTPS://example.org:8443/a/../b?q=1')).to.equal('/b?q=1');
    expect(ok('http://x')).to.equal('/');
    expect(ok('http://x?a=1')).to.equal('/?a=1');
  });

  it('refuses what stays ambiguous, saying why', () => {
    expect(refused('/pypi\\x')).to.contain('backslash');
    expect(refused('/pypi%2fx')).to.contain('encoded slash');
    expect(refused('/pypi%5Cx')).to.contain('encoded slash or backslash');
    expect(refused('/pypi%00x')).to.contain('NUL');
    expect(refused('/pypi%zz')).to.contain('malformed');
    expect(refused('/pypi%2')).to.contain('malformed');
    expect(refused('*')).to.contain('must be a path');
    expect(refused('pypi/x')).to.contain('must be a path');
    expect(refused('ftp://x/y')).to.contain('must be a path');
    for (const target of ['/pypi#', '/pypi/#x', '/pypi?a=1#x', 'http://x/pypi#']) expect(refused(target), target).to.contain('#');
  });
});
