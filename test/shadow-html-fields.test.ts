import { expect } from 'chai';
import { validateTable } from '../routing/table/index.js';
import { normalizeValues, parseHtmlField, type HtmlField } from '../routing/table/shadow-html-fields.js';

describe('shadow.html.compare fields', () => {
  it('reads a selector, an optional @attribute and normalizations from the right', () => {
    expect(parseHtmlField('a#download@href|basename')).to.deep.equal({
      selector: 'a#download',
      attribute: 'href',
      normalize: ['basename'],
    });
    expect(parseHtmlField(' h1 | version ')).to.deep.equal({ selector: 'h1', attribute: undefined, normalize: ['version'] });
    expect(parseHtmlField('table.files a, #download@data-filename|basename|sorted')).to.deep.equal({
      selector: 'table.files a, #download',
      attribute: 'data-filename',
      normalize: ['basename', 'sorted'],
    });
    expect(parseHtmlField('[lang|=en] p'), 'a | inside the selector stays there').to.deep.equal({
      selector: '[lang|=en] p',
      attribute: undefined,
      normalize: [],
    });
    expect(parseHtmlField('h1|versoin')).to.equal(
      '"versoin" is not a normalization (known: basename, version, lower, sorted, unique, count)',
    );
    expect(parseHtmlField('a@|basename')).to.equal('"@" is not an attribute name (write "a@href", "img@src")');
    expect(parseHtmlField('@href')).to.match(/^needs a CSS selector/);
    expect(parseHtmlField('a[href@href')).to.equal(
      '"a[href" is not a CSS selector css-select can run (Attribute selector didn\'t terminate)',
    );
    expect(parseHtmlField('a:downloadable')).to.equal(
      '"a:downloadable" is not a CSS selector css-select can run (Unknown pseudo-class :downloadable)',
    );
  });

  it('normalizes what a selector read: file names, versions, order, duplicates, counts', () => {
    const run = (spec: string, values: string[]) => normalizeValues(parseHtmlField(spec) as HtmlField, values);
    expect(
      run('a@href|basename', [
        '/packages/ab/cd/demo-1.0-py3-none-any.whl#sha256=00ff',
        '/packages/x/demo%2B1-1.0.tar.gz?x=1',
        'https://h/p/',
      ]),
    ).to.deep.equal(['demo-1.0-py3-none-any.whl', 'demo+1-1.0.tar.gz', 'p']);
    expect(run('h1|version', ['demo 1.0', 'demo-pkg 2.0rc1', 'Demo2 1!2.3.post4.dev5+local.7', 'no version here'])).to.deep.equal([
      '1.0',
      '2.0rc1',
      '1!2.3.post4.dev5+local.7',
      '',
    ]);
    expect(run('a|lower|sorted|unique', ['b', 'A', 'a'])).to.deep.equal(['a', 'b']);
    expect(run('tr|count', ['x', 'y', 'z'])).to.deep.equal(['3']);
    expect(run('td', ['as', 'read'])).to.deep.equal(['as', 'read']);
  });

  it('refuses a bad shadow.html in the route table, naming the field', () => {
    const result = validateTable([
      {
        name: 'p',
        match: { path: '/p' },
        mode: 'shadow',
        shadow: { html: { compare: { offered: 'a#download@href|basenme', version: 7, 'bad name': 'h1', ok: 'h1|version' }, extra: 1 } },
      },
      { name: 'q', match: { path: '/q' }, mode: 'shadow', shadow: { html: { compare: {} } } },
      { name: 'r', match: { path: '/r' }, mode: 'shadow', shadow: { html: 'yes' } },
    ]);
    expect((result as { problems: string[] }).problems).to.deep.equal([
      'route 1 "p": shadow.html.extra: is not an html shadow setting (compare)',
      'route 1 "p": shadow.html.compare.offered: "basenme" is not a normalization (known: basename, version, lower, sorted, unique, count)',
      'route 1 "p": shadow.html.compare.version: must be a text such as "table.files a@href|basename|sorted"',
      'route 1 "p": shadow.html.compare.bad name: a field name is a letter then letters, digits, ".", "_" or "-" (at most 64)',
      'route 2 "q": shadow.html.compare: must name at least one field, such as {"offered": "a#download@href|basename"}',
      'route 3 "r": shadow.html: must be an object such as {"compare": {"version": "h1|version"}}',
    ]);
    expect(
      validateTable([{ name: 'p', match: { path: '/p' }, mode: 'shadow', shadow: { html: { compare: { version: 'h1|version' } } } }]).ok,
    ).to.equal(true);
  });
});
