import { expect } from 'chai';
import type { IncomingHttpHeaders } from 'node:http';
import {
  canaryBucket,
  compileTable,
  decide,
  describeChange,
  IMPLICIT_UPSTREAMS,
  summary,
  validateTable,
  type Route,
  type UpstreamSpec,
} from '../routing/table/index.js';

const routes: Route[] = [
  { name: 'simple.index', match: { path: '/simple/' }, mode: 'new' },
  { name: 'simple.detail', match: { path: '/simple/:project/' }, mode: 'new', fallback: true },
  { name: 'simple.special', match: { path: '/simple/pip/' }, mode: 'legacy' },
  { name: 'packages', match: { path: '/packages/*' }, mode: 'canary', percent: 10 },
  {
    name: 'legacy.rss',
    match: { path: '/pypi', query: { ':action': 'rss' } },
    mode: 'retired',
    retired: { status: 410, message: 'Use /rss/updates.xml' },
  },
  { name: 'legacy.xmlrpc', match: { path: '/pypi', methods: ['POST'] }, mode: 'shadow' },
  { name: 'legacy.pypi', match: { path: '/pypi' }, mode: 'legacy' },
  { name: 'legacy.project', match: { path: '/pypi/:project' }, mode: 'legacy' },
  { name: 'api.host', match: { path: '/*', host: 'api.example.org' }, mode: 'new' },
];

describe('route table: matching', () => {
  const table = compileTable(routes, 7);
  const name = (method: string, path: string, query = '', host = 'pypi.example.org') =>
    table.match(method, host, path, query, {})?.route.name;

  it('matches literal paths, parameters and wildcards', () => {
    expect(name('GET', '/simple/')).to.equal('simple.index');
    expect(name('GET', '/simple/requests/')).to.equal('simple.detail');
    expect(name('GET', '/packages/ab/cd/file.whl')).to.equal('packages');
    expect(name('GET', '/packages/')).to.equal('packages');
    expect(name('GET', '/packages')).to.equal('packages');
  });

  it('prefers a literal segment over a parameter, and a parameter over a wildcard', () => {
    expect(name('GET', '/simple/pip/')).to.equal('simple.special');
    const t = compileTable(
      [
        { name: 'any', match: { path: '/a/*' }, mode: 'legacy' },
        { name: 'param', match: { path: '/a/:x/c' }, mode: 'legacy' },
        { name: 'literal', match: { path: '/a/b/c' }, mode: 'legacy' },
      ],
      1,
    );
    expect(t.match('GET', undefined, '/a/b/c', '', {})?.route.name).to.equal('literal');
    expect(t.match('GET', undefined, '/a/z/c', '', {})?.route.name).to.equal('param');
    expect(t.match('GET', undefined, '/a/z/d', '', {})?.route.name).to.equal('any');
    expect(t.match('GET', undefined, '/a/b/c/d', '', {})?.route.name).to.equal('any');
  });

  it('takes the route with more conditions when patterns are equal', () => {
    expect(name('GET', '/pypi', ':action=rss')).to.equal('legacy.rss');
    expect(name('GET', '/pypi', ':action=browse')).to.equal('legacy.pypi');
    expect(name('POST', '/pypi')).to.equal('legacy.xmlrpc');
    expect(name('GET', '/pypi')).to.equal('legacy.pypi');
  });

  it('matches a path with or without its final slash, the spelling as written first, and needs non-empty parameters', () => {
    expect(name('GET', '/simple/requests')).to.equal('simple.detail');
    expect(name('GET', '/simple/pip')).to.equal('simple.special');
    expect(name('POST', '/pypi/')).to.equal('legacy.xmlrpc');
    expect(name('GET', '/pypi/', ':action=rss')).to.equal('legacy.rss');
    expect(name('GET', '/simple//')).to.equal(undefined);
    const t = compileTable(
      [
        { name: 'bare', match: { path: '/a' }, mode: 'legacy' },
        { name: 'slashed', match: { path: '/a/', methods: ['GET'] }, mode: 'new' },
        { name: 'strict', match: { path: '/s', strictSlash: true }, mode: 'retired', retired: { status: 410, message: 'gone' } },
        { name: 'strict.dir', match: { path: '/d/:x/', strictSlash: true }, mode: 'legacy' },
      ],
      1,
    );
    expect(t.match('GET', undefined, '/a/', '', {})?.route.name, 'written as /a/').to.equal('slashed');
    expect(t.match('GET', undefined, '/a', '', {})?.route.name, 'written as /a').to.equal('bare');
    expect(t.match('POST', undefined, '/a/', '', {})?.route.name, '/a/ is not for POST: /a is').to.equal('bare');
    expect(t.match('GET', undefined, '/s', '', {})?.route.name).to.equal('strict');
    expect(t.match('GET', undefined, '/s/', '', {})).to.equal(undefined);
    expect(t.match('GET', undefined, '/d/x/', '', {})?.params).to.deep.equal({ x: 'x' });
    expect(t.match('GET', undefined, '/d/x', '', {})).to.equal(undefined);
    expect(table.match('GET', undefined, '/simple/zope.interface', '', {})?.params).to.deep.equal({ project: 'zope.interface' });
  });

  it('matches hosts exactly or by *.suffix, ignoring the port', () => {
    expect(name('GET', '/anything', '', 'api.example.org:8080')).to.equal('api.host');
    const t = compileTable([{ name: 'wild', match: { path: '/x', host: '*.example.org' }, mode: 'new' }], 1);
    expect(t.match('GET', 'a.example.org', '/x', '', {})?.route.name).to.equal('wild');
    expect(t.match('GET', 'example.com', '/x', '', {})).to.equal(undefined);
  });

  it('treats GET as also allowing HEAD', () => {
    const t = compileTable([{ name: 'g', match: { path: '/x', methods: ['GET'] }, mode: 'new' }], 1);
    expect(t.match('HEAD', undefined, '/x', '', {})?.route.name).to.equal('g');
    expect(t.match('POST', undefined, '/x', '', {})).to.equal(undefined);
  });

  it('captures decoded parameters', () => {
    expect(table.match('GET', undefined, '/simple/zope%2Einterface/', '', {})?.params).to.deep.equal({ project: 'zope.interface' });
  });
});

describe('route table: decisions', () => {
  const table = compileTable(routes, 1);
  const at = (method: string, path: string, query = '', bucket = 0, now = Date.parse('2026-11-21T12:00:00Z')) =>
    decide(table, method, undefined, path, query, {}, () => bucket, now);

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
    const t = compileTable(
      [
        {
          name: 'old',
          match: { path: '/old' },
          mode: 'legacy',
          retired: { status: 410, message: 'gone' },
          brownouts: [{ start: '2026-12-01T10:00:00Z', end: '2026-12-01T11:00:00Z' }],
        },
      ],
      1,
    );
    const when = (iso: string) => decide(t, 'GET', undefined, '/old', '', {}, () => 0, Date.parse(iso)).target;
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
    expect(validateTable(routes)).to.deep.equal({ ok: true, routes, upstreams: [...IMPLICIT_UPSTREAMS] });
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
      { name: 't', match: { path: '/t', strictSlash: 'yes' }, mode: 'legacy' },
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
      'route 4 "c": fallback: no upstream named "yes" (upstreams: legacy, app)',
      'route 5 "b": colour: unknown field (known: name, match, mode, percent, service, fallback, retired, brownouts, shadow, timeouts, features)',
      'route 5 "b": brownouts: brownouts are for routes still served by legacy (mode legacy or shadow)',
      'route 5 "b": brownouts[0]: start and end must be ISO 8601 times such as 2026-12-01T10:00:00Z',
      'route 6 "f": features: [1] must be {"query": "<parameter>"}, {"form": "<field>"} or {"xmlrpc": true}',
      'route 6 "f": features: [2] must be {"query": "<parameter>"}, {"form": "<field>"} or {"xmlrpc": true}',
      'route 7 "s": shadow.maxBodyBytes: must be a whole number of bytes from 1 to 16777216',
      'route 7 "s": shadow.ignored: is not a shadow setting (ignore, headers, calibrate, maxBodyBytes, percent, service, maxInFlight, html)',
      'route 8 "t": match.strictSlash: must be true (match the path only as written) or false (with or without the final slash)',
    ]);
    expect(problems.filter((p) => p.includes('"f"'))).to.have.length(2);
  });

  it('rejects two routes that match exactly the same requests', () => {
    const result = validateTable([
      { name: 'a', match: { path: '/p/:x' }, mode: 'legacy' },
      { name: 'b', match: { path: '/p/:y' }, mode: 'new' },
    ]);
    expect(result).to.deep.equal({
      ok: false,
      problems: ['route 2 "b": match: is the same as route 1 "a"; one of them could never match'],
    });
  });

  it('rejects what is neither a list of routes nor a table object', () => {
    expect(validateTable('routes')).to.deep.equal({
      ok: false,
      problems: ['the table must be a JSON array of routes, or {"upstreams": [...], "routes": [...]}'],
    });
    expect(validateTable({ routes: {}, version: 3 })).to.deep.equal({
      ok: false,
      problems: ['table: version: unknown field (known: upstreams, routes)', 'routes: must be a JSON array of routes'],
    });
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

  it('names the fields that changed when the summaries read the same', () => {
    const kept: Route = { name: 'k', match: { path: '/k' }, mode: 'legacy' };
    expect(describeChange([kept], [{ ...kept, service: 'files', timeouts: { headersMs: 5 } }])).to.deep.equal([
      'change  k: legacy (service, timeouts changed)',
    ]);
  });
});

describe('route table: header and cookie conditions', () => {
  const t = compileTable(
    [
      { name: 'plain', match: { path: '/x' }, mode: 'legacy' },
      { name: 'tenant', match: { path: '/x', headers: { 'X-Tenant': 'acme' } }, mode: 'new' },
      { name: 'tenant.any', match: { path: '/y', headers: { 'x-tenant': '*' } }, mode: 'new' },
      { name: 'tenant.list', match: { path: '/z', headers: { 'x-tenant': ['acme', 'globex'] } }, mode: 'new' },
      { name: 'beta', match: { path: '/x', cookies: { beta: '1' } }, mode: 'new', service: 'files' },
      { name: 'beta.acme', match: { path: '/x', headers: { 'x-tenant': 'acme' }, cookies: { beta: ['1', '2'] } }, mode: 'new' },
      { name: 'session', match: { path: '/s', cookies: { sid: '*' } }, mode: 'new' },
    ],
    1,
    [...IMPLICIT_UPSTREAMS, { name: 'files', env: 'FILES_URL' }],
  );
  const name = (path: string, headers: IncomingHttpHeaders) => t.match('GET', undefined, path, '', headers)?.route.name;

  it('matches exact values, * for present, and lists, with header names in any case', () => {
    expect(name('/x', { 'x-tenant': 'acme' })).to.equal('tenant');
    expect(name('/x', { 'x-tenant': 'ACME' }), 'values are exact').to.equal('plain');
    expect(name('/x', {})).to.equal('plain');
    expect(name('/y', { 'x-tenant': '' }), 'present, even empty').to.equal('tenant.any');
    expect(name('/y', {})).to.equal(undefined);
    expect(name('/z', { 'x-tenant': 'globex' })).to.equal('tenant.list');
    expect(name('/z', { 'x-tenant': 'initech' })).to.equal(undefined);
  });

  it('matches a repeated header when any of its values does', () => {
    expect(name('/z', { 'x-tenant': ['initech', 'globex'] } as unknown as IncomingHttpHeaders)).to.equal('tenant.list');
    expect(name('/z', { 'x-tenant': ['initech', 'umbrella'] } as unknown as IncomingHttpHeaders)).to.equal(undefined);
  });

  it('matches cookies by name, quoted or not, among others, any of a repeated name', () => {
    expect(name('/x', { cookie: 'a=b; beta=1' })).to.equal('beta');
    expect(name('/x', { cookie: 'beta="1"' })).to.equal('beta');
    expect(name('/x', { cookie: 'beta=0; beta=1' })).to.equal('beta');
    expect(name('/x', { cookie: 'beta=0' })).to.equal('plain');
    expect(name('/x', { cookie: 'xbeta=1; beta1=1' }), 'names are whole').to.equal('plain');
    expect(name('/s', { cookie: 'sid=' })).to.equal('session');
    expect(name('/s', { cookie: 'other=1' })).to.equal(undefined);
    expect(name('/s', {})).to.equal(undefined);
  });

  it('ranks query, header and cookie conditions before methods and host; equal counts go to the one listed first', () => {
    expect(name('/x', { 'x-tenant': 'acme', cookie: 'beta=2' }), 'two conditions beat one').to.equal('beta.acme');
    expect(name('/x', { 'x-tenant': 'acme', cookie: 'beta=3' })).to.equal('tenant');
    expect(name('/x', { 'x-tenant': 'acme', cookie: 'beta=1' }), 'beta.acme has both').to.equal('beta.acme');
    const tie = compileTable(
      [
        { name: 'by.cookie', match: { path: '/t', cookies: { a: '1' } }, mode: 'new' },
        { name: 'by.header', match: { path: '/t', headers: { 'x-a': '1' } }, mode: 'new' },
        { name: 'by.query', match: { path: '/t', query: { a: '1' } }, mode: 'new' },
        { name: 'by.method', match: { path: '/t', methods: ['GET'] }, mode: 'new' },
      ],
      1,
    );
    const all = { 'x-a': '1', cookie: 'a=1' };
    expect(tie.match('GET', undefined, '/t', 'a=1', all)?.route.name).to.equal('by.cookie');
    expect(tie.match('GET', undefined, '/t', 'a=1', { 'x-a': '1' })?.route.name).to.equal('by.header');
    expect(tie.match('GET', undefined, '/t', 'a=1', {})?.route.name).to.equal('by.query');
    expect(tie.match('GET', undefined, '/t', '', {})?.route.name).to.equal('by.method');
    // A beta route added after the page's own route still takes the beta users: its header picks them out.
    const beta = compileTable(
      [
        { name: 'page', match: { path: '/p/:name/', methods: ['GET'] }, mode: 'legacy' },
        { name: 'page.beta', match: { path: '/p/:name/', headers: { 'x-beta': '1' } }, mode: 'new' },
      ],
      1,
    );
    expect(beta.match('GET', undefined, '/p/x/', '', { 'x-beta': '1' })?.route.name).to.equal('page.beta');
    expect(beta.match('GET', undefined, '/p/x/', '', {})?.route.name).to.equal('page');
  });

  it('reads the Cookie header only when a candidate has cookie conditions, and then once', () => {
    let reads = 0;
    const headers = (others: IncomingHttpHeaders, cookie: string): IncomingHttpHeaders =>
      Object.defineProperty({ ...others }, 'cookie', {
        get: () => {
          reads++;
          return cookie;
        },
        enumerable: true,
      });
    expect(name('/y', headers({ 'x-tenant': 'a' }, 'beta=1'))).to.equal('tenant.any');
    expect(name('/nowhere', headers({}, 'beta=1'))).to.equal(undefined);
    expect(reads, 'no candidate had cookie conditions').to.equal(0);
    const c = compileTable(
      [
        { name: 'one', match: { path: '/c', cookies: { a: '1' } }, mode: 'new' },
        { name: 'two', match: { path: '/c', cookies: { b: '1' } }, mode: 'new' },
        { name: 'none', match: { path: '/c' }, mode: 'new' },
      ],
      1,
    );
    expect(c.match('GET', undefined, '/c', '', headers({}, 'b=1'))?.route.name).to.equal('two');
    expect(reads, 'two candidates with cookie conditions, one parse').to.equal(1);
  });
});

describe('route table: which service answers', () => {
  const upstreams: UpstreamSpec[] = [...IMPLICIT_UPSTREAMS, { name: 'files', env: 'FILES_URL' }];
  const t = compileTable(
    [
      { name: 'files', match: { path: '/packages/*' }, mode: 'new', service: 'files', fallback: true },
      { name: 'index', match: { path: '/simple/' }, mode: 'new' },
      { name: 'canary', match: { path: '/c' }, mode: 'canary', percent: 10, service: 'files' },
      { name: 'shadowed', match: { path: '/s' }, mode: 'shadow', service: 'files' },
      { name: 'kept', match: { path: '/k' }, mode: 'legacy', service: 'files' },
      { name: 'gone', match: { path: '/g' }, mode: 'retired', service: 'files', retired: { status: 410, message: 'gone' } },
    ],
    3,
    upstreams,
  );
  const at = (path: string, bucket = 0) => decide(t, 'GET', undefined, path, '', {}, () => bucket, 0);

  it('keeps the upstreams it was compiled with, the implicit pair by default', () => {
    expect(t.upstreams).to.deep.equal(upstreams);
    expect(compileTable([], 1).upstreams).to.deep.equal(IMPLICIT_UPSTREAMS);
  });

  it("is the route's service on the new side (app by default), legacy on the legacy side, proxy for retired routes", () => {
    expect(at('/packages/a.whl')).to.deep.include({ target: 'new', service: 'files' });
    expect(at('/simple/')).to.deep.include({ target: 'new', service: 'app' });
    expect(at('/c', 999)).to.deep.include({ target: 'new', service: 'files' });
    expect(at('/c', 1000)).to.deep.include({ target: 'legacy', service: 'legacy' });
    expect(at('/s')).to.deep.include({ target: 'legacy', service: 'legacy' });
    expect(at('/k'), 'a service is kept on a legacy route, not acted on').to.deep.include({ target: 'legacy', service: 'legacy' });
    expect(at('/g')).to.deep.include({ target: 'proxy', service: 'proxy' });
    expect(at('/nowhere')).to.deep.include({ route: 'legacy.unmatched', target: 'legacy', service: 'legacy' });
  });

  it('summarizes a service other than the default, and a fallback elsewhere than legacy', () => {
    expect(summary({ name: 'f', match: { path: '/f' }, mode: 'new', service: 'files', fallback: true })).to.equal('new → files (fallback)');
    expect(summary({ name: 'f', match: { path: '/f' }, mode: 'new', service: 'app', fallback: true })).to.equal('new (fallback)');
    expect(summary({ name: 'f', match: { path: '/f' }, mode: 'canary', percent: 5, service: 'files', fallback: 'app' })).to.equal(
      'canary 5% → files (fallback to app)',
    );
    expect(summary({ name: 'f', match: { path: '/f' }, mode: 'shadow', service: 'files' })).to.equal('shadow → files');
    expect(summary({ name: 'f', match: { path: '/f' }, mode: 'new', service: 'files' }, false)).to.equal('new');
  });
});

describe('route table: upstreams and what routes may say about them', () => {
  const legacy: UpstreamSpec = { name: 'legacy', env: 'LEGACY_URL' };
  const app: UpstreamSpec = { name: 'app', env: 'APP_URL' };
  const files: UpstreamSpec = { name: 'files', env: 'FILES_URL' };
  const problemsOf = (input: unknown, upstreams?: UpstreamSpec[]) => {
    const result = validateTable(input, { upstreams });
    expect(result.ok, JSON.stringify(input)).to.equal(false);
    return (result as { problems: string[] }).problems;
  };
  const withUpstreams = (...upstreams: unknown[]) => problemsOf({ upstreams, routes: [] });

  it('accepts the object form, and a bare list with the upstreams in effect', () => {
    const route: Route = { name: 'files', match: { path: '/packages/*' }, mode: 'new', service: 'files' };
    const full = [
      legacy,
      app,
      files,
      {
        name: 'search',
        endpoints: ['http://10.0.0.5:8081', 'https://10.0.0.6'],
        balance: 'round-robin',
        session: true,
        health: { path: '/_health', intervalMs: 2_000, timeoutMs: 1_000, healthy: 2, unhealthy: 3 },
        outlier: { consecutiveFailures: 5, ejectMs: 10_000 },
        slowStartMs: 0,
      },
      { name: 'docs_v2', dns: 'http://docs.internal:8081', resolveEveryMs: 5_000, outlier: false },
    ] as UpstreamSpec[];
    expect(validateTable({ upstreams: full, routes: [route] })).to.deep.equal({ ok: true, routes: [route], upstreams: full });
    expect(validateTable([route], { upstreams: [legacy, app, files] })).to.deep.equal({
      ok: true,
      routes: [route],
      upstreams: [legacy, app, files],
    });
    expect(
      validateTable({ routes: [route] }, { upstreams: [legacy, app, files] }),
      'an object without upstreams keeps them too',
    ).to.deep.include({ ok: true });
    expect(problemsOf([route]), 'the implicit pair has no files').to.deep.equal([
      'route 1 "files": service: no upstream named "files" (upstreams: legacy, app)',
    ]);
  });

  it('refuses bad endpoints, naming the upstream and the field, without echoing credentials', () => {
    const problems = withUpstreams(
      legacy,
      {
        name: 'files',
        endpoints: ['http://x/a', 'http://u:secret@host:1', 'ftp://x', 'not a url', 'http://x?a=1', 'http://y:1', 'http://y:1/'],
      },
      { name: 'empty', endpoints: [] },
    );
    expect(problems).to.deep.equal([
      'upstream 2 "files": endpoints[0]: "http://x/a" has a path; an endpoint is an origin such as http://10.0.0.5:8081',
      'upstream 2 "files": endpoints[1]: has credentials (user:password@), which do not belong in the route table; an endpoint is an origin such as http://10.0.0.5:8081',
      'upstream 2 "files": endpoints[2]: "ftp://x" is not http or https; an endpoint is an origin such as http://10.0.0.5:8081',
      'upstream 2 "files": endpoints[3]: "not a url" is not a URL; an endpoint is an origin such as http://10.0.0.5:8081',
      'upstream 2 "files": endpoints[4]: "http://x?a=1" has a query; an endpoint is an origin such as http://10.0.0.5:8081',
      'upstream 2 "files": endpoints[6]: "http://y:1/" duplicates endpoints[5]',
      'upstream 3 "empty": endpoints: must be a non-empty list of URLs such as ["http://10.0.0.5:8081", "http://10.0.0.6:8081"]',
    ]);
    expect(problems.join('\n')).to.not.contain('secret');
  });

  it('needs legacy, unique names, and exactly one of endpoints, dns and env', () => {
    expect(withUpstreams(app)).to.deep.equal([
      'upstreams: "legacy" is required: it answers every request no route claims, and what falls back lands there',
    ]);
    expect(withUpstreams(legacy, app, { name: 'app', env: 'OTHER_URL' })).to.deep.equal(['upstream 3 "app": duplicates upstream 2']);
    expect(withUpstreams(legacy, { name: 'files' }, { name: 'both', env: 'A', dns: 'http://a.internal' })).to.deep.equal([
      'upstream 2 "files": needs endpoints, dns or env (exactly one)',
      'upstream 3 "both": needs endpoints, dns or env (exactly one; it has dns and env)',
    ]);
    expect(
      withUpstreams(legacy, { name: 'Files', env: 'A' }, { name: 'a.b', env: 'A' }, { env: 'A' }, { name: 'proxy', env: 'A' }, 'app'),
    ).to.deep.equal([
      'upstream 2 "Files": name: must be a lower-case name such as "files" (letters, digits, _ and -; one word, no dots)',
      'upstream 3 "a.b": name: must be a lower-case name such as "files" (letters, digits, _ and -; one word, no dots)',
      'upstream 4: name: must be a lower-case name such as "files" (letters, digits, _ and -; one word, no dots)',
      'upstream 5 "proxy": name: "proxy" is reserved: it labels the answers the proxy gives itself',
      'upstream 6: must be an object such as {"name": "app", "env": "APP_URL"}',
    ]);
    expect(problemsOf({ upstreams: [], routes: [] })).to.deep.equal([
      'upstreams: must be a list of upstreams such as [{"name": "legacy", "env": "LEGACY_URL"}, {"name": "app", "env": "APP_URL"}]',
    ]);
  });

  it('refuses bad variable names, IP addresses given as dns, unknown fields and balances', () => {
    expect(
      withUpstreams(
        legacy,
        { name: 'a', env: 'app-url' },
        { name: 'b', env: '1URL' },
        { name: 'c', dns: 'http://10.0.0.5:8081' },
        { name: 'd', dns: 'http://[::1]:8081' },
        { name: 'e', env: 'E', colour: 'red', balance: 'random' },
        { name: 'f', env: 'F', session: 'yes' },
      ),
    ).to.deep.equal([
      'upstream 2 "a": env: "app-url" must be an environment variable name such as APP_URL (A-Z, 0-9 and _, not starting with a digit)',
      'upstream 3 "b": env: "1URL" must be an environment variable name such as APP_URL (A-Z, 0-9 and _, not starting with a digit)',
      'upstream 4 "c": dns: "http://10.0.0.5:8081" has an IP address, nothing to resolve; give the addresses as endpoints, or a host name here',
      'upstream 5 "d": dns: "http://[::1]:8081" has an IP address, nothing to resolve; give the addresses as endpoints, or a host name here',
      'upstream 6 "e": colour: unknown field (known: name, endpoints, dns, env, resolveEveryMs, balance, session, health, outlier, slowStartMs)',
      'upstream 6 "e": balance: must be least-request or round-robin',
      'upstream 7 "f": session: must be true or false',
    ]);
  });

  it('refuses health, outlier, slow start and resolve settings out of range', () => {
    expect(
      withUpstreams(
        legacy,
        { name: 'a', env: 'A', health: { path: '_health', intervalMs: 0, timeoutMs: 3_600_001, healthy: 0, unhealthy: 101, every: 1 } },
        { name: 'b', env: 'B', health: '/_health', outlier: true, slowStartMs: -1 },
        { name: 'c', env: 'C', outlier: { consecutiveFailures: 0, ejectMs: 1.5, after: 1 }, resolveEveryMs: 1_000 },
        { name: 'd', dns: 'http://d.internal', resolveEveryMs: 0, slowStartMs: 3_600_001 },
      ),
    ).to.deep.equal([
      'upstream 2 "a": health.every: unknown field (known: path, intervalMs, timeoutMs, healthy, unhealthy)',
      'upstream 2 "a": health.path: must be a path starting with / such as "/_health"',
      'upstream 2 "a": health.intervalMs: must be milliseconds, 1 to 3600000',
      'upstream 2 "a": health.timeoutMs: must be milliseconds, 1 to 3600000',
      'upstream 2 "a": health.healthy: must be a number of checks in a row, 1 to 100',
      'upstream 2 "a": health.unhealthy: must be a number of checks in a row, 1 to 100',
      'upstream 3 "b": health: must be an object such as {"path": "/_health"}',
      'upstream 3 "b": outlier: must be an object such as {"consecutiveFailures": 5, "ejectMs": 10000}, or false to turn passive ejection off',
      'upstream 3 "b": slowStartMs: must be milliseconds, 0 to 3600000',
      'upstream 4 "c": resolveEveryMs: only a dns upstream is resolved again',
      'upstream 4 "c": outlier.after: unknown field (known: consecutiveFailures, ejectMs)',
      'upstream 4 "c": outlier.consecutiveFailures: must be a number of failures in a row, 1 to 100',
      'upstream 4 "c": outlier.ejectMs: must be milliseconds, 1 to 3600000',
      'upstream 5 "d": resolveEveryMs: must be milliseconds, 1 to 3600000',
      'upstream 5 "d": slowStartMs: must be milliseconds, 0 to 3600000',
    ]);
  });

  it("checks each route's service, fallback and shadow service against the table's upstreams", () => {
    const upstreams = [legacy, app, files];
    const r = (name: string, fields: Record<string, unknown>, match: Record<string, unknown> = {}) => ({
      name,
      match: { path: `/${name}`, ...match },
      mode: 'new',
      ...fields,
    });
    expect(
      problemsOf({
        upstreams,
        routes: [
          r('ok', { service: 'files', fallback: 'app' }),
          r('kept', { mode: 'legacy', service: 'files', fallback: true }),
          r('a', {}),
          r('b', {}),
          r('files', { service: 'filez' }),
          r('c', { service: 'legacy' }),
          r('d', { service: 3 }),
          r('e', { service: 'files', fallback: 'files' }),
          r('f', { fallback: 'app' }),
          r('g', { fallback: 'nowhere' }),
          r('h', { fallback: 1 }),
          r('i', { mode: 'shadow', shadow: { service: 'legacy', percent: 101, maxInFlight: 0 } }),
          r('j', { mode: 'shadow', shadow: { service: 'nope', percent: -1, maxInFlight: 1.5 } }),
          r('k', { mode: 'shadow', shadow: { service: 'files', percent: 12.5, maxInFlight: 1025 } }),
        ],
      }),
    ).to.deep.equal([
      'route 5 "files": service: no upstream named "filez" (upstreams: legacy, app, files)',
      'route 6 "c": service: names the upstream that answers on the new side; legacy is the other side (upstreams: legacy, app, files)',
      'route 7 "d": service: must be the name of an upstream (upstreams: legacy, app, files)',
      'route 8 "e": fallback: "files" is the route\'s own service; fall back to legacy (true) or to another upstream',
      'route 9 "f": fallback: "app" is the route\'s own service; fall back to legacy (true) or to another upstream',
      'route 10 "g": fallback: no upstream named "nowhere" (upstreams: legacy, app, files)',
      'route 11 "h": fallback: must be true (fall back to legacy), false, or the name of an upstream (upstreams: legacy, app, files)',
      'route 12 "i": shadow.percent: must be the share of sessions copied, from 0 to 100',
      'route 12 "i": shadow.maxInFlight: must be a whole number of copies from 1 to 1024',
      'route 12 "i": shadow.service: copies go to the new side; legacy already answers the client (upstreams: legacy, app, files)',
      'route 13 "j": shadow.percent: must be the share of sessions copied, from 0 to 100',
      'route 13 "j": shadow.maxInFlight: must be a whole number of copies from 1 to 1024',
      'route 13 "j": shadow.service: no upstream named "nope" (upstreams: legacy, app, files)',
      'route 14 "k": shadow.maxInFlight: must be a whole number of copies from 1 to 1024',
    ]);
  });

  it('needs a service on the new side when the table has no app, the default', () => {
    const upstreams = [legacy, files];
    expect(
      problemsOf({
        upstreams,
        routes: [
          { name: 'n', match: { path: '/n' }, mode: 'new' },
          { name: 'c', match: { path: '/c' }, mode: 'canary', percent: 5 },
          { name: 'l', match: { path: '/l' }, mode: 'legacy' },
          { name: 's', match: { path: '/s' }, mode: 'shadow', shadow: { service: 'files' } },
          { name: 'f', match: { path: '/f' }, mode: 'new', service: 'files' },
        ],
      }),
    ).to.deep.equal([
      'route 1 "n": service: a new route needs one: there is no upstream named "app", the default (upstreams: legacy, files)',
      'route 2 "c": service: a canary route needs one: there is no upstream named "app", the default (upstreams: legacy, files)',
    ]);
  });

  it('refuses bad header and cookie conditions, naming the field', () => {
    const r = (name: string, match: Record<string, unknown>) => ({ name, match: { path: `/${name}`, ...match }, mode: 'legacy' });
    expect(
      problemsOf([
        r('a', { headers: { 'x tenant': 'a', 'x-list': [], 'x-num': 3, 'x-star': ['*', 'a'], 'x-nl': 'a\nb' } }),
        r('b', { headers: { Host: 'a', Cookie: 'b', 'X-A': '1', 'x-a': '2' } }),
        r('c', { headers: {}, cookies: [] }),
        r('d', { cookies: { 'a;b': '1', ok: ['1', 2] } }),
      ]),
    ).to.deep.equal([
      'route 1 "a": match.headers: "x tenant" is not a header name (letters, digits and !#$%&\'*+-.^_`|~)',
      'route 1 "a": match.headers: "x-list" must be a string ("*" for any value) or a non-empty list of strings',
      'route 1 "a": match.headers: "x-num" must be a string ("*" for any value) or a non-empty list of strings',
      'route 1 "a": match.headers: "x-star": "*" means any value, so it cannot be one of a list',
      'route 1 "a": match.headers: "x-nl": a value cannot contain control characters (no request could match it)',
      'route 2 "b": match.headers: "host": use match.host',
      'route 2 "b": match.headers: "cookie": use match.cookies',
      'route 2 "b": match.headers: "x-a" is given twice (header names are not case-sensitive)',
      'route 3 "c": match.headers: must be an object such as {"x-tenant": "acme"} (a value, "*" for any, or a list of values)',
      'route 3 "c": match.cookies: must be an object such as {"beta": "1"} (a value, "*" for any, or a list of values)',
      'route 4 "d": match.cookies: "a;b" is not a cookie name (letters, digits and !#$%&\'*+-.^_`|~)',
      'route 4 "d": match.cookies: "ok" must be a string ("*" for any value) or a non-empty list of strings',
    ]);
    expect(problemsOf([{ name: 'x', match: { path: '/x', header: {} }, mode: 'legacy' }])).to.deep.equal([
      'route 1 "x": match.header: unknown field (known: path, methods, host, query, headers, cookies, strictSlash)',
    ]);
  });

  it('tells routes apart by their header and cookie conditions, whatever the case or order', () => {
    const r = (name: string, match: Record<string, unknown>) => ({ name, match: { path: '/p', ...match }, mode: 'legacy' });
    expect(
      validateTable([
        r('a', {}),
        r('b', { headers: { 'x-a': '1' } }),
        r('c', { headers: { 'x-a': '2' } }),
        r('d', { cookies: { 'x-a': '1' } }),
        r('e', { headers: { 'x-a': '1', 'x-b': ['1', '2'] } }),
      ]).ok,
    ).to.equal(true);
    expect(
      problemsOf([r('a', { headers: { 'x-a': '1', 'x-b': ['1', '2'] } }), r('b', { headers: { 'X-B': ['2', '1'], 'X-A': ['1'] } })]),
    ).to.deep.equal(['route 2 "b": match: is the same as route 1 "a"; one of them could never match']);
    expect(problemsOf([r('a', { cookies: { a: '1', b: '2' } }), r('b', { cookies: { b: '2', a: '1' } })])).to.have.length(1);
    expect(problemsOf([r('a', { query: { a: '1', b: '2' } }), r('b', { query: { b: '2', a: '1' } })])).to.have.length(1);
  });
});

describe('route table: describing upstream changes', () => {
  const before: UpstreamSpec[] = [
    { name: 'legacy', env: 'LEGACY_URL' },
    { name: 'app', env: 'APP_URL' },
    { name: 'search', endpoints: ['http://10.0.0.9:80'] },
  ];
  const after: UpstreamSpec[] = [
    { name: 'legacy', env: 'LEGACY_URL' },
    { name: 'app', dns: 'http://app.internal:8081', slowStartMs: 10_000 },
    { name: 'files', env: 'FILES_URL', health: { path: '/_health' } },
  ];

  it('adds, changes and removes upstreams before routes', () => {
    const route: Route = { name: 'files', match: { path: '/packages/*' }, mode: 'new' };
    expect(describeChange([route], [{ ...route, service: 'files' }], before, after)).to.deep.equal([
      'change  upstream app: env APP_URL → dns http://app.internal:8081; slowStartMs (default) → 10000',
      'add     upstream files: env FILES_URL',
      'remove  upstream search',
      'change  files: new → new → files',
    ]);
    expect(describeChange([], [], [after[1]!], [{ ...after[1]!, health: { path: '/h' } }])).to.deep.equal([
      'change  upstream app: health (default) → {"path":"/h"}',
    ]);
    expect(describeChange([route], [route], before, JSON.parse(JSON.stringify(before)) as UpstreamSpec[]), 'nothing changed').to.deep.equal(
      [],
    );
    expect(describeChange([route], [route]), 'upstreams not given: routes only').to.deep.equal([]);
  });
});
