import { expect } from 'chai';
import { sql } from 'kysely';
import { connect, STATEMENT_TIMEOUT_MS } from '../lib/database.js';
import { services } from './support/services.js';

describe('database pools: no statement runs for ever', () => {
  it('cancels a statement on a serving pool after STATEMENT_TIMEOUT_MS, and lets migrations run', async () => {
    const s = await services();
    const serving = connect(s.primaryUrl, { max: 1, name: 'banyan-test' });
    const migrating = connect(s.primaryUrl, { max: 1, name: 'banyan-test', statementTimeoutMs: 0 });
    const short = connect(s.primaryUrl, { max: 1, name: 'banyan-test', statementTimeoutMs: 200 });
    try {
      const shown = (db: typeof serving) =>
        sql<{ statement_timeout: string }>`SHOW statement_timeout`.execute(db).then((r) => r.rows[0]!.statement_timeout);
      expect(await shown(serving)).to.equal(`${STATEMENT_TIMEOUT_MS / 1000}s`);
      expect(await shown(migrating)).to.equal('0');
      const err = await sql`SELECT pg_sleep(2)`.execute(short).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(err?.message).to.contain('canceling statement due to statement timeout');
    } finally {
      await Promise.all([serving.destroy(), migrating.destroy(), short.destroy()]);
    }
  });

  it('lets migrations run on a comma list of servers too (whichever is the primary)', async () => {
    const s = await services();
    const list = [s.primaryUrl, ...s.replicaUrls].join(',');
    const migrating = connect(list, { max: 1, name: 'banyan-test', statementTimeoutMs: 0 });
    const serving = connect(list, { max: 1, name: 'banyan-test' });
    try {
      const shown = (db: typeof serving) =>
        sql<{ statement_timeout: string }>`SHOW statement_timeout`.execute(db).then((r) => r.rows[0]!.statement_timeout);
      expect(await shown(migrating)).to.equal('0');
      expect(await shown(serving)).to.equal(`${STATEMENT_TIMEOUT_MS / 1000}s`);
    } finally {
      await Promise.all([serving.destroy(), migrating.destroy()]);
    }
  });
});
