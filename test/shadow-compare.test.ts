import { expect } from 'chai';
import { compareResponses, type Observed } from '../proxy/shadow-compare.js';

const json = (value: unknown, status = 200): Observed => ({
  status,
  headers: { 'content-type': 'application/json' },
  body: Buffer.from(JSON.stringify(value)),
});
const text = (value: string, status = 200): Observed => ({ status, headers: { 'content-type': 'text/plain' }, body: Buffer.from(value) });
const options = { headers: ['content-type'], ignore: [] as string[] };

describe('shadow comparison', () => {
  it('matches identical answers, and JSON that differs only in key order', () => {
    expect(compareResponses(json({ a: 1, b: [1, 2] }), json({ b: [1, 2], a: 1 }), options)).to.deep.equal({
      verdict: 'match',
      differences: [],
    });
  });

  it('reports status, header and JSON field differences with their paths', () => {
    const r = compareResponses(
      json({ info: { version: '1.0', name: 'x' } }),
      { ...json({ info: { version: '1.1', name: 'x' }, extra: true }, 404), headers: { 'content-type': 'text/plain' } },
      options,
    );
    expect(r.verdict).to.equal('mismatch');
    expect(r.differences).to.deep.equal([
      { where: 'status', legacy: '200', new: '404' },
      { where: 'header content-type', legacy: 'application/json', new: 'text/plain' },
      { where: 'body.info.version', legacy: '"1.0"', new: '"1.1"' },
      { where: 'body.extra', legacy: '(absent)', new: 'true' },
    ]);
  });

  it('skips ignored paths, with * for any key or index', () => {
    const a = json({ urls: [{ url: 'u', upload_time: 't1' }], serial: 1 });
    const b = json({ urls: [{ url: 'u', upload_time: 't2' }], serial: 2 });
    expect(compareResponses(a, b, { headers: [], ignore: ['urls.*.upload_time', 'serial'] }).verdict).to.equal('match');
  });

  it('shows the first differing line of a text body', () => {
    const r = compareResponses(text('<h1>x</h1>\n<p>one</p>\n'), text('<h1>x</h1>\n<p>two</p>\n'), options);
    expect(r.differences).to.deep.equal([{ where: 'body line 2', legacy: '<p>one</p>', new: '<p>two</p>' }]);
  });

  it('calls differences that legacy makes with itself noise, and keeps real ones', () => {
    const legacy = json({ now: 1, name: 'x' });
    const again = json({ now: 2, name: 'x' });
    expect(compareResponses(legacy, json({ now: 3, name: 'x' }), options, again)).to.deep.equal({ verdict: 'noise', differences: [] });
    const real = compareResponses(legacy, json({ now: 3, name: 'y' }), options, again);
    expect(real.verdict).to.equal('mismatch');
    expect(real.differences).to.deep.equal([{ where: 'body.name', legacy: '"x"', new: '"y"' }]);
  });
});
