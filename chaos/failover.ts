import pg from 'pg';
import { CURRENT_POSITION_SQL, parseLsn, parseTimeline } from '../lib/lsn.js';
import { parseTimelineHistory } from '../routing/reads/timelines.js';
import { kill } from './faults.js';
import { ReadLoad, UploadLoad, uploadForm, type WriteLog } from './load.js';
import {
  checkWrites,
  failed,
  healthy,
  invariants,
  proxyServed,
  sleep,
  waitFor,
  withPrimary,
  type ChaosContext,
  type Scenario,
} from './suite.js';

/** The bound this scenario states: uploads are accepted through the proxy again within this long of the primary's death. */
export const WRITES_BACK_WITHIN_MS = 10_000;

/**
 * How the app names the server that was the primary: the first entry of DATABASE_URL. After the failover
 * the new replica is built on its address, so reads from `db-1` are reads from the new replica.
 */
const NEW_REPLICA = 'db-1';

/**
 * `npm start -- --failover` under read and upload load: SIGKILL to the primary; the stack promotes the
 * replica and builds a new one; the proxy, the app and legacy are not restarted. Every acknowledged
 * upload must be stored, except those the replica never received (their pin's LSN is past the point
 * where the old timeline ended): those are lost by asynchronous replication, counted and reported.
 * An upload made right after the promotion must show at once on the simple page and the JSON API (what
 * pip and other clients read), from a client without the uploader's pin.
 */
export const failOverThePrimary: Scenario = {
  name: 'fail over the primary',
  run: async (ctx) => {
    await healthy(ctx);
    const before = ctx.stack.current();
    const outputFrom = ctx.stack.output().length;
    const components = componentPids(before.pids);
    const reads = new ReadLoad(before.proxy, [
      { route: 'json.project', path: `/pypi/${ctx.project}/json` },
      { route: 'simple.detail', path: `/simple/${ctx.project}/` },
      { route: 'legacy.home', path: '/' },
    ]);
    const writes = new UploadLoad(before.proxy, ctx.project, ctx.uploadToken);
    const broken: string[] = [];
    const timeline: Record<string, number> = {};
    reads.start();
    writes.start();
    try {
      await sleep(ctx.settleMs);
      const t0 = Date.now();
      kill(before.pids['postgresPrimary']!);
      await waitFor('the replica to be promoted', () => acceptsWrites(before.replicas[0]!), 60_000);
      timeline['promoted'] = Date.now() - t0;
      await waitFor('an upload accepted through the proxy', async () => firstAckAfter(writes.log, t0) !== undefined, 60_000);
      timeline['firstAcceptedWrite'] = firstAckAfter(writes.log, t0)! - t0;
      if (timeline['firstAcceptedWrite'] > WRITES_BACK_WITHIN_MS)
        broken.push(`uploads accepted again ${timeline['firstAcceptedWrite']} ms after the kill (bound ${WRITES_BACK_WITHIN_MS})`);
      const seenAtOnce = await uploadThenRead(ctx, before.proxy);
      if (seenAtOnce) broken.push(seenAtOnce);
      await waitFor(
        'the new replica to be in stack.json',
        async () => {
          const now = ctx.stack.current();
          return now.primary === before.replicas[0] && now.replicas[0] === before.primary && !!now.pids['postgresReplica'];
        },
        120_000,
      );
      timeline['newReplicaStreaming'] = Date.now() - t0;
      await waitFor('a read from the new replica', async () => reads.events.some((e) => e.at > t0 && e.readFrom === NEW_REPLICA), 30_000);
      timeline['firstReadFromNewReplica'] =
        Math.min(...reads.events.filter((e) => e.at > t0 && e.readFrom === NEW_REPLICA).map((e) => e.at)) - t0;
      await sleep(ctx.settleMs);
    } finally {
      await Promise.all([reads.stop(), writes.stop()]);
    }
    const verdict = await checkWrites(ctx, writes.log);
    const unexplained = await lostButReplicated(ctx, writes.log);
    const proxyAlive = proxyServed(ctx, before.pids['proxy'], outputFrom);
    // Lost writes are allowed here only when the replica never received them; every other invariant holds.
    broken.push(...invariants({ ...verdict, lost: unexplained.length, proxyAlive }));
    const restarted = Object.entries(componentPids(ctx.stack.current().pids))
      .filter(([name, id]) => components[name] !== id)
      .map(([name]) => name);
    if (restarted.length) broken.push(`restarted: ${restarted.join(', ')}`);
    return {
      scenario: 'fail over the primary',
      requests: reads.events.length,
      failures: reads.events.filter(failed).length,
      fallbacks: null,
      firstFallbackMs: null,
      writesSent: writes.log.sent,
      writesAcknowledged: writes.log.acknowledged.size,
      ...verdict,
      proxyAlive,
      broken,
      timeline,
      notes:
        `kill → promoted ${timeline['promoted']} ms, first accepted upload ${timeline['firstAcceptedWrite']} ms, new replica streaming ${timeline['newReplicaStreaming']} ms, ` +
        `first read from it ${timeline['firstReadFromNewReplica']} ms; ${verdict.lost} acknowledged uploads lost, none the replica had received`,
    };
  },
};

/** The process ids of the components that must ride through a failover: the proxy, every app instance, files and legacy. */
function componentPids(pids: Readonly<Record<string, number | null>>): Record<string, number | null> {
  return Object.fromEntries(
    Object.entries(pids).filter(([name]) => name === 'proxy' || name === 'legacy' || name === 'files' || /^app-\d+$/.test(name)),
  );
}

async function acceptsWrites(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1_000 });
  client.on('error', () => {});
  try {
    await client.connect();
    return (await client.query<{ standby: boolean }>('SELECT pg_is_in_recovery() AS standby')).rows[0]!.standby === false;
  } finally {
    await client.end().catch(() => {});
  }
}

/** When the first upload sent after `t0` was acknowledged (one in flight at the kill may be answered after it). */
function firstAckAfter(log: WriteLog, t0: number): number | undefined {
  const times = [...log.acks.values()].filter((a) => a.sentAt > t0).map((a) => a.at);
  return times.length ? Math.min(...times) : undefined;
}

/** One more upload, then at once the simple page and the JSON API from a client with no pin: '' when both show it, else what was wrong. */
async function uploadThenRead(ctx: ChaosContext, proxy: string): Promise<string> {
  const { form, filename } = uploadForm(ctx.project, `9.${Date.now()}`);
  const auth = `Basic ${Buffer.from(`__token__:${ctx.uploadToken}`).toString('base64')}`;
  const res = await fetch(`${proxy}/legacy/`, {
    method: 'POST',
    body: form,
    headers: { authorization: auth },
    signal: AbortSignal.timeout(30_000),
  });
  if (res.status !== 200) return `the upload right after the failover got ${res.status}: ${(await res.text()).slice(0, 200)}`;
  await res.text();
  const simple = await (await fetch(`${proxy}/simple/${ctx.project}/`)).text();
  const json = await (await fetch(`${proxy}/pypi/${ctx.project}/json`)).text();
  if (!simple.includes(filename)) return `the simple page did not list ${filename} right after its upload`;
  if (!json.includes(filename)) return `the JSON API did not list ${filename} right after its upload`;
  return '';
}

/**
 * Acknowledged uploads missing from the index that the replica had received: a pin at or before the
 * point where the old timeline ended (in the new primary's timeline history), or no pin to tell.
 */
async function lostButReplicated(ctx: ChaosContext, log: WriteLog): Promise<string[]> {
  const { stored, switches } = await withPrimary(ctx, async (c) => {
    const files = await c.query<{ filename: string }>(
      `SELECT f.filename FROM files f JOIN releases r ON r.id = f.release_id
      JOIN projects p ON p.id = r.project_id WHERE p.normalized_name = $1`,
      [ctx.project],
    );
    const timeline = (await c.query<{ timeline: number }>(CURRENT_POSITION_SQL)).rows[0]!.timeline;
    const file = `pg_wal/${timeline.toString(16).toUpperCase().padStart(8, '0')}.history`;
    const history = timeline > 1 ? (await c.query<{ text: string }>('SELECT pg_read_file($1) AS text', [file])).rows[0]!.text : '';
    return { stored: new Set(files.rows.map((r) => r.filename)), switches: parseTimelineHistory(history, parseLsn) };
  });
  return [...log.acknowledged].filter((f) => {
    if (stored.has(f)) return false;
    const parts = log.acks.get(f)?.pin?.split('.') ?? [];
    const lsn = parts[0] === 'v2' ? parseLsn(parts[2] ?? '') : undefined;
    const tli = parts[0] === 'v2' ? parseTimeline(parts[3]) : undefined;
    const ended = switches.find((s) => s.timeline === tli);
    return lsn === undefined || ended === undefined || lsn <= ended.switchLsn;
  });
}
