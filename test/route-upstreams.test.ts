import { expect } from 'chai';
import type { Kysely } from 'kysely';
import { connect } from '../lib/database.js';
import { BanyanError } from '../lib/errors.js';
import type { BanyanDatabase } from '../lib/schema.js';
import {
  auditLog,
  IMPLICIT_UPSTREAMS,
  latestTable,
  latestVersionNumber,
  rollbackTable,
  type Route,
  saveTable,
  seedTable,
  tableAt,
  type TableVersion,
  type UpstreamSpec,
} from '../routing/table/index.js';
import { services } from './support/services.js';

const base: Route[] = [
  { name: 'simple.index', match: { path: '/simple/' }, mode: 'new' },
  { name: 'files', match: { path: '/packages/*' }, mode: 'legacy' },
];
const files: UpstreamSpec = { name: 'files', env: 'FILES_URL', health: { path: '/_health' }, slowStartMs: 10_000 };
const withFiles: UpstreamSpec[] = [...IMPLICIT_UPSTREAMS, files];

describe('route store: upstreams are versioned, audited and rolled back with the routes', () => {
  let db: Kysely<BanyanDatabase>;
  let first: TableVersion;
  const save = (routes: unknown, reason: string) => saveTable(db, { routes, actor: 'test', reason });
  const refusal = async (routes: unknown): Promise<string> => {
    const err = await save(routes, 'should be refused').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(BanyanError);
    expect((err as BanyanError).code).to.equal('invalid-table');
    return (err as Error).message;
  };

  before(async () => {
    const s = await services();
    db = connect(s.primaryUrl, { max: 1, schema: 'banyan' });
  });

  after(async () => {
    // Leave the shared table with the implicit upstreams, as other tests expect of a bare list of routes.
    await save({ upstreams: IMPLICIT_UPSTREAMS, routes: base }, 'route-upstreams tests done');
    await db.destroy();
  });

  it('stores a table with its upstreams; a bare list of routes keeps the upstreams in effect', async () => {
    first = await save(
      { upstreams: withFiles, routes: [...base.slice(0, 1), { ...base[1]!, mode: 'new', service: 'files', fallback: true }] },
      'files service',
    );
    expect(first.upstreams).to.deep.equal(withFiles);
    expect((await tableAt(db, first.version)).upstreams, 'as read back from jsonb').to.deep.equal(withFiles);
    const bare = await save(base, 'routes only');
    expect(bare.version).to.equal(first.version + 1);
    expect(bare.upstreams).to.deep.equal(withFiles);
    expect((await latestTable(db))!.upstreams).to.deep.equal(withFiles);
    expect(
      await seedTable(db, { upstreams: IMPLICIT_UPSTREAMS, routes: [] }, 'routes file'),
      'a seed never replaces a stored table',
    ).to.deep.include({ version: bare.version });
  });

  it('refuses a route whose service is not an upstream of the table it would be part of, and stores nothing', async () => {
    const before = await latestVersionNumber(db);
    expect(await refusal([...base, { name: 'search', match: { path: '/search' }, mode: 'new', service: 'search' }])).to.contain(
      'route 3 "search": service: no upstream named "search" (upstreams: legacy, app, files)',
    );
    expect(
      await refusal({ upstreams: IMPLICIT_UPSTREAMS, routes: [base[0], { ...base[1]!, service: 'files' }] }),
      'files removed while a route names it',
    ).to.contain('route 2 "files": service: no upstream named "files" (upstreams: legacy, app)');
    expect(await refusal({ upstreams: [...withFiles, { name: 'files', endpoints: ['http://u:p@10.0.0.5:81/x'] }], routes: base }))
      .to.contain('upstream 4 "files": duplicates upstream 3')
      .and.contain('upstream 4 "files": endpoints[0]: has credentials');
    expect(await latestVersionNumber(db)).to.equal(before);
  });

  it('audits upstream changes beside route changes', async () => {
    const moved = await save(
      { upstreams: [IMPLICIT_UPSTREAMS[0], { name: 'app', dns: 'http://app.internal:8081' }], routes: base },
      'app by DNS, no files',
    );
    const [entry] = await auditLog(db, 1);
    expect(entry).to.deep.include({ version: moved.version, reason: 'app by DNS, no files' });
    expect(entry!.changes).to.deep.equal(['change  upstream app: env APP_URL → dns http://app.internal:8081', 'remove  upstream files']);
  });

  it('rolls the upstreams back together with the routes', async () => {
    const back = await rollbackTable(db, first.version, 'test', 'files again');
    expect(back.upstreams).to.deep.equal(withFiles);
    expect(back.routes).to.deep.equal(first.routes);
    const [entry] = await auditLog(db, 1);
    expect(entry!.action).to.equal(`rollback to ${first.version}`);
    expect(entry!.changes).to.deep.equal([
      'change  upstream app: dns http://app.internal:8081 → env APP_URL',
      'add     upstream files: env FILES_URL',
      'change  files: legacy → new → files (fallback)',
    ]);
  });

  it('reads a version stored before upstreams were named as the implicit pair, and stores them explicitly from then on', async () => {
    const version = (await latestVersionNumber(db)) + 1;
    await db
      .insertInto('route_table_versions')
      .values({ version, routes: JSON.stringify(base), upstreams: null, actor: 'old banyan', reason: 'before upstreams' })
      .execute();
    await db
      .insertInto('route_audit')
      .values({
        version,
        action: 'set',
        actor: 'old banyan',
        reason: 'before upstreams',
        before: JSON.stringify(base),
        after: JSON.stringify(base),
        before_upstreams: null,
        after_upstreams: null,
      })
      .execute();
    expect((await tableAt(db, version)).upstreams).to.deep.equal(IMPLICIT_UPSTREAMS);
    expect((await auditLog(db, 1))[0]!.changes, 'no upstream changed').to.deep.equal([]);
    const next = await save(base, 'after upstreams');
    const row = await db
      .selectFrom('route_table_versions')
      .select('upstreams')
      .where('version', '=', next.version)
      .executeTakeFirstOrThrow();
    expect(row.upstreams).to.deep.equal(IMPLICIT_UPSTREAMS);
    const rolled = await rollbackTable(db, version, 'test', 'to the old version');
    expect(rolled.upstreams).to.deep.equal(IMPLICIT_UPSTREAMS);
  });
});
