import { expect } from 'chai';
import { rmSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { CompiledQuery } from 'kysely';
import { loadSettings } from '../lib/config.js';
import { logQueries, queryObserver, type QueryLogEntry } from '../lib/query-telemetry.js';
import { startServerProcess } from './support/proxy-process.js';
import { services, tempDir } from './support/services.js';
import { waitUntil } from './support/wait.js';

/** The query log lines (pino JSON, `msg: "query"`) a process wrote. */
function queryLines(output: string): (QueryLogEntry & { msg: string; time: string })[] {
  return output
    .split('\n')
    .filter((l) => l.startsWith('{') && l.includes('"msg":"query"'))
    .map((l) => JSON.parse(l));
}

describe('the query log (BANYAN_QUERY_LOG)', () => {
  it('all: each backend logs every query of a request with its request id, handler, server, role and duration', async function () {
    this.timeout(90_000);
    const s = await services();
    const storage = tempDir('banyan-qlog-');
    const data = {
      DATABASE_URL: s.primaryUrl,
      DATABASE_REPLICA_URLS: s.replicaUrls.join(','),
      REDIS_URL: s.redisUrl!,
      BANYAN_STORAGE: storage,
      BANYAN_QUERY_LOG: 'all',
    };
    const [app, legacy] = await Promise.all([startServerProcess('app', data), startServerProcess('legacy', data)]);
    try {
      expect((await fetch(`${app.url}/simple/no-such-project-qlog/`, { headers: { 'x-request-id': 'qlog-app' } })).status).to.equal(404);
      expect((await fetch(`${legacy.url}/simple/no-such-project-qlog/`, { headers: { 'x-request-id': 'qlog-legacy' } })).status).to.equal(
        404,
      );
      await waitUntil(
        'both logged their queries',
        async () =>
          queryLines(app.output()).some((l) => l.reqId === 'qlog-app') &&
          queryLines(legacy.output()).some((l) => l.reqId === 'qlog-legacy'),
        10_000,
      );
      const [fromApp] = queryLines(app.output()).filter((l) => l.reqId === 'qlog-app');
      expect(fromApp).to.include({ route: 'simple.detail', role: 'replica', server: 'replica-1', reason: 'no_fence' });
      expect(fromApp!.ms).to.be.a('number').and.at.least(0);
      expect(fromApp!.sql, 'placeholders, never the values').to.match(/\$1/).and.not.include('no-such-project-qlog');
      const [fromLegacy] = queryLines(legacy.output()).filter((l) => l.reqId === 'qlog-legacy');
      expect(fromLegacy).to.include({ route: 'legacy.simple.detail', role: 'replica', server: 'replica-1' });
    } finally {
      app.child.kill('SIGTERM');
      legacy.child.kill('SIGTERM');
      await Promise.all([app.exited, legacy.exited]);
      rmSync(storage, { recursive: true, force: true });
    }
  });

  it('slow: only queries at or over BANYAN_QUERY_LOG_SLOW_MS (and failed ones) are written', () => {
    const out = new PassThrough();
    let written = '';
    out.on('data', (d) => {
      written += String(d);
    });
    logQueries({ mode: 'slow', slowMs: 50 }, out);
    try {
      const observe = queryObserver({ name: 'replica-1', url: 'postgres://u@127.0.0.1:5432/index', isReplica: () => true })!;
      const query = CompiledQuery.raw('SELECT * FROM projects WHERE normalized_name = $1', ['x']);
      observe({ level: 'query', query, queryDurationMillis: 49.9 });
      observe({ level: 'query', query, queryDurationMillis: 50 });
      observe({ level: 'error', query, queryDurationMillis: 1, error: new Error('canceling statement due to statement timeout') });
    } finally {
      logQueries({ mode: 'off', slowMs: 0 });
    }
    const lines = queryLines(written);
    expect(lines.map((l) => [l.ms, l.error])).to.deep.equal([
      [50, undefined],
      [1, 'canceling statement due to statement timeout'],
    ]);
    expect(lines[0]).to.include({ server: 'replica-1', role: 'replica', sql: 'SELECT * FROM projects WHERE normalized_name = $1' });
  });

  it('a bad setting names the variable', () => {
    expect(() => loadSettings({ BANYAN_QUERY_LOG: 'some' }, undefined)).to.throw('BANYAN_QUERY_LOG must be off or all or slow, not "some"');
    expect(() => loadSettings({ BANYAN_QUERY_LOG_SLOW_MS: '1s' }, undefined)).to.throw(
      'BANYAN_QUERY_LOG_SLOW_MS must be a whole number, not "1s"',
    );
    expect(loadSettings({ BANYAN_QUERY_LOG: 'slow' }, undefined).queryLog).to.deep.equal({ mode: 'slow', slowMs: 100 });
  });
});
