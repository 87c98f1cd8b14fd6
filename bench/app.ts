/**
 * npm run bench:app [-- --requests 2000 --connections 8 --rounds 3 --json]
 *
 * The new app's pages side by side, in one run, on a real primary + replica
 * and Redis:
 *  - the download page of a project with 10 releases against one with
 *    10,000 releases (its cost must not grow with the number of releases:
 *    p50 within 1.5x, page under 100 KB);
 *  - the simple detail page (PEP 691 JSON, 300 files) served from the Redis
 *    page cache against the same app with no cache.
 * Rounds are interleaved so the machine's noise hits every contestant alike;
 * each figure is the best round.
 */
import { rmSync } from 'node:fs';
import { sql } from 'kysely';
import { Pool } from 'undici';
import { PageCache } from '../app/page-cache.js';
import { parseVersion, sortKey } from '../lib/pep440.js';
import { createApp } from '../app/server.js';
import { FileStore } from '../lib/file-store.js';
import { parseArgs } from 'node:util';
import { printTable, progress } from '../bin/output.js';
import { listen, type Listening } from '../lib/http-server.js';
import { DbRouter } from '../routing/db-router.js';
import { FenceStore } from '../routing/fences.js';
import { startServices } from '../stack/local-stack.js';
import { tempDir } from '../test/support/services.js';

const { values: flags } = parseArgs({ options: { 'requests': { type: 'string' }, 'connections': { type: 'string' }, 'rounds': { type: 'string' }, json: { type: 'boolean' } } });
const requests = Number(flags['requests'] ?? 2000);
const connections = Number(flags['connections'] ?? 8);
const rounds = Number(flags['rounds'] ?? 3);

const dir = tempDir('banyan-bench-app-');
progress('starting PostgreSQL primary + replica and Redis');
const services = await startServices({ dir, redis: 'required', log: progress });
const router = new DbRouter({ primaryUrl: services.primaryUrl, replicaUrls: services.replicaUrls, poolSize: 20, name: 'banyan-bench-app' });
const opened: (() => Promise<void>)[] = [];

interface Figure { contestant: string; p50Ms: number; p99Ms: number; rps: number; bytes: number }
const results = new Map<string, Figure[]>();

try {
  await router.start();
  const store = new FileStore(`${dir}/files`);
  await store.init();
  const fences = new FenceStore({ redisUrl: services.redisUrl ?? undefined });
  const cache = new PageCache(services.redisUrl ?? undefined);
  opened.push(async () => { fences.close(); cache.close(); });
  const cached = await listen(createApp({ router, fences, store, cache }).callback(), 0, '127.0.0.1', 'bench');
  const uncached = await listen(createApp({ router, fences, store }).callback(), 0, '127.0.0.1', 'bench');
  opened.push(() => cached.close(), () => uncached.close());

  progress('seeding: a project with 10 releases, one with 10,000, one with 300 files');
  await seed('bench-small', 10, 3);
  await seed('bench-large', 10_000, 3);
  await seed('bench-files', 100, 3);
  await services.cluster.waitForReplay(60_000);

  const windows = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36';
  const contestants: [string, Listening, string, Record<string, string>][] = [
    ['download page, 10 releases', uncached, '/project/bench-small/', { 'user-agent': windows }],
    ['download page, 10,000 releases', uncached, '/project/bench-large/', { 'user-agent': windows }],
    ['simple detail JSON, Redis cache', cached, '/simple/bench-files/', { accept: 'application/vnd.pypi.simple.v1+json' }],
    ['simple detail JSON, no cache', uncached, '/simple/bench-files/', { accept: 'application/vnd.pypi.simple.v1+json' }],
  ];
  for (let round = 1; round <= rounds; round++) {
    for (const [name, server, path, headers] of contestants) {
      progress(`round ${round}/${rounds}: ${name}`);
      const figure = await load(name, server.url, path, headers);
      results.set(name, [...(results.get(name) ?? []), figure]);
    }
  }
} finally {
  for (const close of opened.reverse()) await close();
  await router.close();
  await services.stop();
  rmSync(dir, { recursive: true, force: true });
}

const best = (name: string) => results.get(name)!.reduce((a, b) => (b.p50Ms < a.p50Ms ? b : a));
const rows = [...results.keys()].map(best);
const small = best('download page, 10 releases');
const large = best('download page, 10,000 releases');
const hit = best('simple detail JSON, Redis cache');
const miss = best('simple detail JSON, no cache');
const ratios = {
  downloadPageP50LargeOverSmall: large.p50Ms / small.p50Ms,
  downloadPageBytesLarge: large.bytes,
  simpleCachedThroughputOverUncached: hit.rps / miss.rps,
  simpleCachedP50OverUncached: hit.p50Ms / miss.p50Ms,
};
if (flags.json) {
  process.stdout.write(`${JSON.stringify({ requests, connections, rounds, results: rows, ratios }, null, 2)}\n`);
} else {
  printTable(['contestant', 'p50 ms', 'p99 ms', 'req/s', 'bytes'], rows.map((r) => [
    r.contestant, r.p50Ms.toFixed(2), r.p99Ms.toFixed(2), Math.round(r.rps).toLocaleString('en-US'), r.bytes.toLocaleString('en-US'),
  ]));
  process.stdout.write(`\ndownload page p50, 10,000 releases / 10 releases: ${ratios.downloadPageP50LargeOverSmall.toFixed(2)}x (target <= 1.5x); ` +
    `page size ${(large.bytes / 1024).toFixed(1)} KB (target < 100 KB)\n` +
    `simple detail, Redis cache / no cache: ${ratios.simpleCachedThroughputOverUncached.toFixed(2)}x throughput, ${ratios.simpleCachedP50OverUncached.toFixed(2)}x p50\n`);
}

/** Inserts a project with `releases` releases of `filesEach` files each, straight into the primary. */
async function seed(name: string, releases: number, filesEach: number): Promise<void> {
  const db = router.primary.db;
  const project = await db.insertInto('projects').values({ name, normalized_name: name }).returning('id').executeTakeFirstOrThrow();
  for (let start = 0; start < releases; start += 1000) {
    const versions = Array.from({ length: Math.min(1000, releases - start) }, (_, i) => `${Math.floor((start + i) / 100)}.${(start + i) % 100}`);
    const rows = await db.insertInto('releases').values(versions.map((v) => ({
      project_id: project.id, version: v, canonical_version: v, sort_key: sortKey(parseVersion(v)!), is_prerelease: false, summary: `${name} ${v}`, requires_python: '>=3.8',
    }))).returning(['id', 'version']).execute();
    const tags = ['cp311-cp311-win_amd64', 'cp311-cp311-macosx_11_0_universal2', 'sdist'].slice(0, filesEach);
    await db.insertInto('files').values(rows.flatMap((r) => tags.map((tag, t) => {
      const filename = tag === 'sdist' ? `${name.replace(/-/g, '_')}-${r.version}.tar.gz` : `${name.replace(/-/g, '_')}-${r.version}-${tag}.whl`;
      const digest = (BigInt(r.id) * 7n + BigInt(t)).toString(16).padStart(64, '0');
      return {
        release_id: r.id, filename, packagetype: tag === 'sdist' ? 'sdist' as const : 'bdist_wheel' as const, python_version: tag === 'sdist' ? 'source' : 'cp311',
        requires_python: '>=3.8', size: '123456', sha256_digest: digest, path: `${digest.slice(0, 2)}/${digest.slice(2, 4)}/${digest.slice(4)}/${filename}`,
      };
    }))).execute();
  }
  await sql`ANALYZE releases`.execute(db);
  await sql`ANALYZE files`.execute(db);
}

/** `requests` GETs over `connections` keep-alive connections; latency percentiles and throughput. */
async function load(contestant: string, origin: string, path: string, headers: Record<string, string>): Promise<Figure> {
  const pool = new Pool(origin, { connections });
  const latencies: number[] = [];
  let bytes = 0;
  let next = 0;
  // Warm up: first requests compile queries and fill the cache.
  for (let i = 0; i < 20; i++) await (await pool.request({ path, method: 'GET', headers })).body.text();
  const started = performance.now();
  await Promise.all(Array.from({ length: connections }, async () => {
    while (next++ < requests) {
      const t0 = performance.now();
      const res = await pool.request({ path, method: 'GET', headers });
      const body = await res.body.text();
      latencies.push(performance.now() - t0);
      if (res.statusCode !== 200) throw new Error(`${contestant}: ${path} answered ${res.statusCode}: ${body.slice(0, 200)}`);
      bytes = Buffer.byteLength(body);
    }
  }));
  const elapsed = (performance.now() - started) / 1000;
  await pool.close();
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))]!;
  return { contestant, p50Ms: pct(0.5), p99Ms: pct(0.99), rps: latencies.length / elapsed, bytes };
}
