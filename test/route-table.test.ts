import { expect } from 'chai';
import {
  canaryBucket, compileTable, decide, describeChange, validateTable, type Route,
} from '../routing/table/index.js';

const routes: Route[] = [
  { name: 'simple.index', match: { path: '/simple/' }, mode: 'new' },
  { name: 'simple.detail', match: { path: '/simple/:project/' }, mode: 'new', fallback: true },
  { name: 'simple.special', match: { path: '/simple/pip/' }, mode: 'legacy' },
  { name: 'packages', match: { path: '/packages/*' }, mode: 'canary', percent: 10 },
  { name: 'legacy.rss', match: { path: '/pypi', query: { ':action': 'rss' } }, mode: 'retired', retired: { status: 410, message: 'Use /rss/updates.xml' } },
  { name: 'legacy.xmlrpc', match: { path: '/pypi', methods: ['POST'] }, mode: 'shadow' },
  { name: 'legacy.pypi', match: { path: '/pypi' }, mode: 'legacy' },
  { name: 'legacy.project', match: { path: '/pypi/:project' }, mode: 'legacy' },
  { name: 'api.host', match: { path: '/*', host: 'api.example.org' }, mode: 'new' },
];

describe('route table: matching', () => {
  const table = compileTable(routes, 7);
  const name = (method: string, path: string, query = '', host = 'pypi.example.org') => table.match(method, host, path, query)?.route.name;

  it('matches literal paths, parameters and wildcards', () => {
    expect(name('GET', '/simple/')).to.equal('simple.index');
    expect(name('GET', '/simple/requests/')).to.equal('simple.detail');
    expect(name('GET', '/packages/ab/cd/file.whl')).to.equal('packages');
    expect(name('GET', '/packages/')).to.equal('packages');
    expect(name('GET', '/packages')).to.equal('packages');
  });

  it('prefers a literal segment over a parameter, and a parameter over a wildcard', () => {
    expect(name('GET', '/simple/pip/')).to.equal('simple.special');
    const t = compileTable([
      { name: 'any', match: { path: '/a/*' }, mode: 'legacy' },
      { name: 'param', match: { path: '/a/:x/c' }, mode: 'legacy' },
      { name: 'literal', match: { path: '/a/b/c' }, mode: 'legacy' },
    ], 1);
    expect(t.match('GET', undefined, '/a/b/c', '')?.route.name).to.equal('literal');
    expect(t.match('GET', undefined, '/a/z/c', '')?.route.name).to.equal('param');
    expect(t.match('GET', undefined, '/a/z/d', '')?.route.name).to.equal('any');
    expect(t.match('GET', undefined, '/a/b/c/d', '')?.route.name).to.equal('any');
  });

  it('takes the route with more conditions when patterns are equal', () => {
    expect(name('GET', '/pypi', ':action=rss')).to.equal('legacy.rss');
    expect(name('GET', '/pypi', ':action=browse')).to.equal('legacy.pypi');
    expect(name('POST', '/pypi')).to.equal('legacy.xmlrpc');
    expect(name('GET', '/pypi')).to.equal('legacy.pypi');
  });

  it('keeps trailing slashes significant and needs non-empty parameters', () => {
    expect(name('GET', '/simple/requests')).to.equal(undefined);
    expect(name('GET', '/simple//')).to.equal(undefined);
  });

  it('matches hosts exactly or by *.suffix, ignoring the port', () => {
    expect(name('GET', '/anything', '', 'api.example.org:8080')).to.equal('api.host');
    const t = compileTable([{ name: 'wild', match: { path: '/x', host: '*.example.org' }, mode: 'new' }], 1);
    expect(t.match('GET', 'a.example.org', '/x', '')?.route.name).to.equal('wild');
    expect(t.match('GET', 'example.com', '/x', '')).to.equal(undefined);
  });

  it('treats GET as also allowing HEAD', () => {
    const t = compileTable([{ name: 'g', match: { path: '/x', methods: ['GET'] }, mode: 'new' }], 1);
    expect(t.match('HEAD', undefined, '/x', '')?.route.name).to.equal('g');
    expect(t.match('POST', undefined, '/x', '')).to.equal(undefined);
  });

  it('captures decoded parameters', () => {
    expect(table.match('GET', undefined, '/simple/zope%2Einterface/', '')?.params).to.deep.equal({ project: 'zope.interface' });
  });
});

describe('route table: decisions', () => {
  const table = compileTable(routes, 1);
  const at = (method: string, path: string, query = '', bucket = 0, now = Date.parse('2026-11-21T12:00:00Z')) =>
    decide(table, method, undefined, path, query, () => bucket, now);

  it('sends each mode to the right side', () => {
    expect(at('GET', '/simple/').target).to.equal('new');
    expect(at('GET', '/pypi').target).to.equal('legacy');
    expect(at('POST', '/pypi').target).to.equal('legacy');
    expect(at('GET', '/pypi', ':action=rss').target).to.equal('proxy');
    expect(at('GET', '/nowhere')).to.deep.include({ route: 'legacy.unmatched', target: 'legacy' });
  });

  it('sends canary buckets below percent × 100 to new', () => {
    expect(at('GET', '/packages/x', '', 999).target).to.equal('new');
    expect(at('GET', '/packages/x', '', 1000).target).to.equal('legacy');
  });

  it('answers from the proxy during a brownout window only', () => {
    const t = compileTable([{ name: 'old', match: { path: '/old' }, mode: 'legacy', retired: { status: 410, message: 'gone' },
      brownouts: [{ start: '2026-12-01T10:00:00Z', end: '2026-12-01T11:00:00Z' }] }], 1);
    const when = (iso: string) => decide(t, 'GET', undefined, '/old', '', () => 0, Date.parse(iso)).target;
    expect(when('2026-12-01T09:59:59Z')).to.equal('legacy');
    expect(when('2026-12-01T10:30:00Z')).to.equal('proxy');
    expect(when('2026-12-01T11:00:00Z')).to.equal('legacy');
  });
});

describe('route table: canary buckets', () => {
  it('puts 10 ± 1 % of 10,000 distinct sessions under a 10 % canary, the same way every time', () => {
    const keys = Array.from({ length: 10_000 }, (_, i) => `session-${i}-${(i * 7919) % 104729}`);
    const inCanary = keys.filter((k) => canaryBucket(k) < 1000).length;
    expect(inCanary).to.be.within(900, 1100);
    for (const k of keys.slice(0, 100)) expect(canaryBucket(k)).to.equal(canaryBucket(k));
  });

  it('spreads sequential client addresses too', () => {
    const keys = Array.from({ length: 10_000 }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    const inCanary = keys.filter((k) => canaryBucket(k) < 1000).length;
    expect(inCanary).to.be.within(900, 1100);
  });
});

describe('route table: validation', () => {
  it('accepts a good table', () => {
    expect(validateTable(routes)).to.deep.equal({ ok: true, routes });
  });

  it('reports every problem, naming the route and the field', () => {
    const result = validateTable([
      { name: 'Bad Name', match: { path: 'simple' }, mode: 'sideways' },
      { name: 'c', match: { path: '/c/*/d' }, mode: 'canary', percent: 140 },
      { name: 'r', match: { path: '/r' }, mode: 'retired' },
      { name: 'c', match: { path: '/x', methods: ['FETCH'] }, mode: 'legacy', fallback: 'yes' },
      { name: 'b', match: { path: '/b' }, mode: 'new', brownouts: [{ start: 'x', end: 'y' }], colour: 'red' },
      { name: 'f', match: { path: '/f' }, mode: 'legacy', features: [{ query: ':action' }, { xmlrpc: 'yes' }, { query: 'a', form: 'b' }] },
      { name: 's', match: { path: '/s' }, mode: 'shadow', shadow: { maxBodyBytes: 0, calibrate: true, ignored: ['x'] } },
    ]);
    expect(result.ok).to.equal(false);
    const problems = (result as { problems: string[] }).problems;
    expect(problems).to.include.members([
      'route 1 "Bad Name": name: must be a dotted lower-case name such as "simple.detail" (letters, digits, _ and .)',
      'route 1 "Bad Name": match.path: must start with /',
      'route 1 "Bad Name": mode: must be one of legacy, shadow, canary, new, retired',
      'route 2 "c": match.path: * may only be the last segment',
      'route 2 "c": percent: canary needs a percent from 0 to 100',
      'route 3 "r": retired: a retired route needs retired: {"status": 410, "message": "…"}',
      'route 4 "c": name: duplicates route 2',
      'route 4 "c": match.methods: "FETCH" is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS',
      'route 4 "c": fallback: must be true or false',
      'route 5 "b": colour: unknown field (known: name, match, mode, percent, fallback, retired, brownouts, shadow, timeouts, features)',
      'route 5 "b": brownouts: brownouts are for routes still served by legacy (mode legacy or shadow)',
      'route 5 "b": brownouts[0]: start and end must be ISO 8601 times such as 2026-12-01T10:00:00Z',
      'route 6 "f": features: [1] must be {"query": "<parameter>"}, {"form": "<field>"} or {"xmlrpc": true}',
      'route 6 "f": features: [2] must be {"query": "<parameter>"}, {"form": "<field>"} or {"xmlrpc": true}',
      'route 7 "s": shadow.maxBodyBytes: must be a whole number of bytes from 1 to 16777216',
      'route 7 "s": shadow.ignored: is not a shadow setting (ignore, headers, calibrate, maxBodyBytes)',
    ]);
    expect(problems.filter((p) => p.includes('"f"'))).to.have.length(2);
  });

  it('rejects two routes that match exactly the same requests', () => {
    const result = validateTable([
      { name: 'a', match: { path: '/p/:x' }, mode: 'legacy' },
      { name: 'b', match: { path: '/p/:y' }, mode: 'new' },
    ]);
    expect(result).to.deep.equal({ ok: false, problems: ['route 2 "b": match: is the same as route 1 "a"; one of them could never match'] });
  });

  it('rejects what is not a list', () => {
    expect(validateTable({ routes: [] })).to.deep.equal({ ok: false, problems: ['the table must be a JSON array of routes'] });
  });

  it('describes a change route by route', () => {
    const after: Route[] = [
      { name: 'simple.index', match: { path: '/simple/' }, mode: 'canary', percent: 10 },
      { name: 'new.one', match: { path: '/n' }, mode: 'new' },
    ];
    expect(describeChange(routes.slice(0, 2), after)).to.deep.equal([
      'change  simple.index: new → canary 10%',
      'add     new.one: /n → new',
      'remove  simple.detail: /simple/:project/ (new (fallback))',
    ]);
  });
});

describe('route table: change descriptions', () => {
  it('ignores key order, as PostgreSQL jsonb does not keep it', () => {
    const a: Route = { name: 'x', match: { path: '/x', methods: ['GET'] }, mode: 'new', fallback: true };
    const reordered = JSON.parse('{"mode":"new","fallback":true,"match":{"methods":["GET"],"path":"/x"},"name":"x"}') as Route;
    expect(describeChange([a], [reordered])).to.deep.equal([]);
  });
});
