/**
 * npm run bench:db [-- --sessions 40 --writers 0.25 --write-every 3s --seconds 8 --delays 500ms,2s --json]
 *
 * Read-your-writes policies side by side against a real primary and streaming
 * replica whose apply delay makes lag real. Simulated sessions read every
 * 50 ms; a share of them also write every few seconds. Every read checks the
 * session's own latest write; a read that misses it is stale. Policies: Banyan's LSN pins (the DB router with a fence at the
 * write's LSN), timed pins of 15 s (django-multidb-router) and 2 s (Rails),
 * and no pinning at all.
 */
import { rmSync } from 'node:fs';
import { sql, type Kysely } from 'kysely';
import { parseArgs } from 'node:util';
import { printTable, progress } from '../bin/output.js';
import { parseDuration } from '../lib/duration.js';
import type { IndexDatabase } from '../package-index/schema.js';
import { DbRouter } from '../routing/reads/index.js';
import { startServices } from '../stack/local-stack.js';
import { tempDir } from '../test/support/services.js';

const { values: flags } = parseArgs({
  options: {
    sessions: { type: 'string' },
    seconds: { type: 'string' },
    writers: { type: 'string' },
    'write-every': { type: 'string' },
    delays: { type: 'string' },
    json: { type: 'boolean' },
  },
});
const sessions = Number(flags['sessions'] ?? 40);
const seconds = Number(flags['seconds'] ?? 8);
const writers = Number(flags['writers'] ?? 0.25);
const writeEveryMs = parseDuration(String(flags['write-every'] ?? '3s'), '--write-every');
const delays = String(flags['delays'] ?? '500ms,2s')
  .split(',')
  .map((d) => parseDuration(d, '--delays'));
const POLICIES = ['banyan LSN pin', 'timed pin 15 s', 'timed pin 2 s', 'no pinning'] as const;
type Policy = (typeof POLICIES)[number];

interface Row {
  delayMs: number;
  policy: Policy;
  reads: number;
  stale: number;
  primaryShare: number;
}

const dir = tempDir('banyan-bench-db-');
progress('starting a PostgreSQL primary and streaming replica');
const services = await startServices({ dir, redis: 'off', log: progress });
const router = new DbRouter<IndexDatabase>({
  primaryUrl: services.primaryUrl,
  replicaUrls: services.replicaUrls,
  poolSize: sessions + 5,
  name: 'banyan-bench',
});
await router.start();
const primary = router.primary.db;
const replica = router.replicas[0]!.db;
await sql`CREATE TABLE IF NOT EXISTS bench_writes (session int, seq int, PRIMARY KEY (session, seq))`.execute(primary);
const rows: Row[] = [];

try {
  for (const delayMs of delays) {
    await services.cluster.setReplicaDelay(delayMs);
    for (const policy of POLICIES) {
      await sql`TRUNCATE bench_writes`.execute(primary);
      await services.cluster.waitForReplay(delayMs + 10_000);
      progress(`replica delay ${delayMs} ms: ${policy}`);
      rows.push(await run(delayMs, policy));
    }
  }
} finally {
  await services.cluster.setReplicaDelay(0);
  await router.close();
  await services.stop();
  rmSync(dir, { recursive: true, force: true });
}

async function run(delayMs: number, policy: Policy): Promise<Row> {
  let reads = 0;
  let stale = 0;
  let onPrimary = 0;
  const until = Date.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: sessions }, async (_, session) => {
      const writes = session < Math.round(sessions * writers);
      let seq = 0;
      let lastWriteAt = -Infinity;
      // Writers start at different moments, so their pins do not all line up.
      let nextWriteAt = Date.now() + Math.random() * writeEveryMs;
      let pinLsn: bigint | undefined;
      while (Date.now() < until) {
        if (writes && Date.now() >= nextWriteAt) {
          nextWriteAt += writeEveryMs;
          seq++;
          await sql`INSERT INTO bench_writes (session, seq) VALUES (${session}, ${seq})`.execute(primary);
          lastWriteAt = Date.now();
          // What the proxy does after a write that reports no LSN: the primary's position now.
          if (policy === 'banyan LSN pin') pinLsn = await router.currentLsn();
        } else {
          const reader = await choose(policy, lastWriteAt, pinLsn);
          const r = await sql<{ seen: number | null }>`SELECT max(seq) AS seen FROM bench_writes WHERE session = ${session}`.execute(
            reader,
          );
          reads++;
          if (reader === primary) onPrimary++;
          if ((r.rows[0]?.seen ?? 0) < seq) stale++;
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }),
  );
  return { delayMs, policy, reads, stale, primaryShare: onPrimary / Math.max(1, reads) };
}

async function choose(policy: Policy, lastWriteAt: number, pinLsn: bigint | undefined): Promise<Kysely<IndexDatabase>> {
  const since = Date.now() - lastWriteAt;
  switch (policy) {
    case 'banyan LSN pin':
      return (await router.forRequest(pinLsn !== undefined && since < 30_000 ? { minLsn: pinLsn } : {})).reader;
    case 'timed pin 15 s':
      return since < 15_000 ? primary : replica;
    case 'timed pin 2 s':
      return since < 2_000 ? primary : replica;
    case 'no pinning':
      return replica;
  }
}

if (flags.json) {
  process.stdout.write(`${JSON.stringify({ sessions, seconds, writers, writeEveryMs, rows }, null, 2)}\n`);
} else {
  process.stdout.write(
    `\n${sessions} sessions reading every 50 ms, ${(writers * 100).toFixed(0)} % of them writing every ${writeEveryMs} ms, ` +
      `${seconds} s per policy; a stale read misses the session's own latest write\n\n`,
  );
  printTable(
    ['replica delay', 'policy', 'reads', 'stale reads', 'read from primary'],
    rows.map((r) => [`${r.delayMs} ms`, r.policy, String(r.reads), String(r.stale), `${(r.primaryShare * 100).toFixed(1)} %`]),
  );
  process.stdout.write("\nBanyan's primary read share against the 15 s timed pin's:\n");
  for (const delayMs of delays) {
    const banyan = rows.find((r) => r.delayMs === delayMs && r.policy === 'banyan LSN pin')!;
    const timed = rows.find((r) => r.delayMs === delayMs && r.policy === 'timed pin 15 s')!;
    process.stdout.write(
      `  delay ${delayMs} ms: ${(banyan.primaryShare / timed.primaryShare).toFixed(2)}× (${banyan.stale} stale reads for Banyan)\n`,
    );
  }
}
process.exit(0);
