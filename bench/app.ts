/**
 * npm run bench:app [-- --requests 2000 --connections 8 --rounds 3 --projects 300 --json]
 *
 * The new app's pages side by side, in one run, on a real primary + replica
 * and Redis filled by `banyan seed`'s data set (a long tail of projects and a
 * giant with 10,000 releases and 50,000 files):
 *  - the download page, the simple page and the JSON API of a small project
 *    against the giant's (the download page must stay flat: p50 within 1.5x,
 *    under 100 KB; the simple page and the JSON API list every file, as
 *    PEP 503/691 and Warehouse's API require, so their size is reported);
 *  - a cached simple page against nginx serving the same bytes from a file;
 *  - the giant's simple page uncached, with the SQL plans of its queries
 *    checked for sequential scans on the big tables.
 * Each app is its own process (`banyan app`, compiled), apart from the load.
 * Rounds are interleaved so the machine's noise hits every contestant alike;
 * each figure is the best round.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kysely, PostgresDialect, type CompiledQuery } from 'kysely';
import pg from 'pg';
import { Pool } from 'undici';
import { findProject } from '../app/queries.js';
import { releaseParts } from '../app/file-lists.js';
import { seedIndex } from '../app/seed.js';
import type { IndexDatabase } from '../package-index/schema.js';
import { parseArgs } from 'node:util';
import { printTable, progress } from '../bin/output.js';
import { DbRouter } from '../routing/reads/index.js';
import { startServices } from '../stack/local-stack.js';
import { freePort } from '../stack/ports.js';
import { tempDir } from '../test/support/services.js';
import { startNginx } from './nginx.js';

const { values: flags } = parseArgs({
  options: {
    requests: { type: 'string' },
    connections: { type: 'string' },
    rounds: { type: 'string' },
    projects: { type: 'string' },
    json: { type: 'boolean' },
  },
});
const requests = Number(flags['requests'] ?? 2000);
const connections = Number(flags['connections'] ?? 8);
const rounds = Number(flags['rounds'] ?? 3);
const projects = Number(flags['projects'] ?? 2000);

/**
 * The giant's uncached pages before they streamed (rendered whole from 50,000 rows), p50 over 8
 * connections on this bench's 2-core machine: the baseline the streamed pages are held to.
 */
const BEFORE = { simpleUncachedP50Ms: 2_700, jsonApiP50Ms: 4_100 };

const here = fileURLToPath(new URL('.', import.meta.url));
const dir = tempDir('banyan-bench-app-');
progress('starting PostgreSQL primary + replica and Redis');
const services = await startServices({ dir, redis: 'required', log: progress });
const router = new DbRouter<IndexDatabase>({
  primaryUrl: services.primaryUrl,
  replicaUrls: services.replicaUrls,
  poolSize: 20,
  name: 'banyan-bench-app',
});
const opened: (() => Promise<void>)[] = [];

interface Figure {
  contestant: string;
  p50Ms: number;
  p99Ms: number;
  rps: number;
  bytes: number;
}
const results = new Map<string, Figure[]>();
let plans: { project: string; query: string; seqScans: string[] }[] = [];
let rssGrowth = 0;
let small: string;
let giant: string;
let middle: string;

try {
  await router.start();
  // Each app is its own process (`banyan app`, compiled), as in production: the load generator in this
  // process must not share the app's event loop. The uncached one has no Redis: no page cache (and no fences).
  progress('building dist/ (npm run build), so the app runs compiled');
  if (spawnSync(process.execPath, [join(here, '..', 'scripts', 'build.mjs')], { stdio: ['ignore', 'ignore', 'inherit'] }).status !== 0) {
    throw new Error('npm run build failed: fix the build first');
  }
  const database = {
    DATABASE_URL: services.primaryUrl,
    DATABASE_REPLICA_URLS: services.replicaUrls.join(','),
    BANYAN_STORAGE: join(dir, 'files'),
  };
  const cached = await appProcess({ ...database, REDIS_URL: services.redisUrl ?? '' });
  const uncached = await appProcess(database);

  progress(`seeding ${projects} projects and a giant of 10,000 releases and 50,000 files (banyan seed's data set)`);
  let shown = 0;
  const summary = await seedIndex(router.primary.db, {
    projects,
    giants: 1,
    seed: 1,
    prefix: 'bench',
    onProgress: (done, total) => {
      if (Date.now() - shown > 2_000) {
        shown = Date.now();
        progress(`${done} of ${total} releases`);
      }
    },
  });
  giant = summary.giants[0]!;
  middle = summary.largestOrdinary.name;
  small = (
    await router.primary.db
      .selectFrom('projects')
      .innerJoin('releases', 'releases.project_id', 'projects.id')
      .select('projects.normalized_name')
      .groupBy('projects.normalized_name')
      .having((eb) => eb.fn.countAll(), '=', 10)
      .limit(1)
      .executeTakeFirstOrThrow()
  ).normalized_name;
  await services.cluster.waitForReplay(60_000);
  plans = [...(await explainSimplePage(small)), ...(await explainSimplePage(giant))];

  const simpleJson = { accept: 'application/vnd.pypi.simple.v1+json' };
  const page = await (await fetch(`${cached.url}/simple/${middle}/`, { headers: simpleJson })).text();
  const nginxUrl = await nginxServing(page, 'application/vnd.pypi.simple.v1+json');
  const windows = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36';
  const few = Math.max(20, Math.floor(requests / 100));
  const contestants: [string, string, string, Record<string, string>, number][] = [
    ['download page, 10 releases', uncached.url, `/project/${small}/`, { 'user-agent': windows }, requests],
    ['download page, giant', uncached.url, `/project/${giant}/`, { 'user-agent': windows }, requests],
    ['simple JSON, 10 releases (cache)', cached.url, `/simple/${small}/`, simpleJson, requests],
    ['simple JSON, giant (cache)', cached.url, `/simple/${giant}/`, simpleJson, few],
    ['JSON API, 10 releases', cached.url, `/pypi/${small}/json`, {}, requests],
    ['JSON API, giant', uncached.url, `/pypi/${giant}/json`, {}, few],
    [`simple JSON, ${middle} (cache)`, cached.url, `/simple/${middle}/`, simpleJson, requests],
    ...(nginxUrl
      ? [
          [`nginx, the same bytes from a file`, nginxUrl, '/simple.json', {}, requests] as [
            string,
            string,
            string,
            Record<string, string>,
            number,
          ],
        ]
      : []),
    ['simple JSON, giant (no cache)', uncached.url, `/simple/${giant}/`, simpleJson, few],
  ];
  for (let round = 1; round <= rounds; round++) {
    for (const [name, origin, path, headers, n] of contestants) {
      progress(`round ${round}/${rounds}: ${name}`);
      // The app's memory while it renders the giant's pages uncached: its peak RSS (VmHWM, reset first) over its RSS before.
      const watched = origin === uncached.url && path.includes(giant) && path !== `/project/${giant}/`;
      const before = watched ? resetPeak(uncached.pid) : 0;
      const figure = await load(name, origin, path, headers, n);
      if (watched) rssGrowth = Math.max(rssGrowth, memoryOf(uncached.pid, 'VmHWM') - before);
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
const find = (prefix: string) => rows.find((r) => r.contestant.startsWith(prefix));
const ratio = (a: Figure | undefined, b: Figure | undefined) => (a && b ? a.p50Ms / b.p50Ms : null);
const nginxRow = find('nginx');
const middleRow = find(`simple JSON, ${middle}`);
const ratios = {
  downloadPageP50GiantOverSmall: ratio(find('download page, giant'), find('download page, 10')),
  downloadPageBytesGiant: find('download page, giant')?.bytes ?? null,
  simpleP50GiantOverSmall: ratio(find('simple JSON, giant (cache)'), find('simple JSON, 10')),
  jsonApiP50GiantOverSmall: ratio(find('JSON API, giant'), find('JSON API, 10')),
  cachedSimpleThroughputOverNginx: nginxRow && middleRow ? middleRow.rps / nginxRow.rps : null,
  // Against the figures before pages streamed (the same bench, same data set, 8 connections).
  giantSimpleUncachedP50OverBefore: (find('simple JSON, giant (no cache)')?.p50Ms ?? NaN) / BEFORE.simpleUncachedP50Ms,
  giantJsonApiP50OverBefore: (find('JSON API, giant')?.p50Ms ?? NaN) / BEFORE.jsonApiP50Ms,
  rssGrowthWhileRenderingGiantMb: rssGrowth / 2 ** 20,
};
if (flags.json) {
  process.stdout.write(
    `${JSON.stringify({ requests, connections, rounds, projects: { small, giant, middle }, results: rows, ratios, plans }, null, 2)}\n`,
  );
} else {
  printTable(
    ['contestant', 'p50 ms', 'p99 ms', 'req/s', 'bytes'],
    rows.map((r) => [
      r.contestant,
      r.p50Ms.toFixed(2),
      r.p99Ms.toFixed(2),
      Math.round(r.rps).toLocaleString('en-US'),
      r.bytes.toLocaleString('en-US'),
    ]),
  );
  const x = (v: number | null) => (v === null ? 'n/a' : `${v.toFixed(2)}x`);
  process.stdout.write(
    `\ndownload page p50, giant / 10 releases: ${x(ratios.downloadPageP50GiantOverSmall)} (target <= 1.5x); ` +
      `page size ${((ratios.downloadPageBytesGiant ?? 0) / 1024).toFixed(1)} KB (target < 100 KB)\n` +
      `simple page p50, giant / 10 releases: ${x(ratios.simpleP50GiantOverSmall)}; JSON API: ${x(ratios.jsonApiP50GiantOverSmall)} (both list every file, as their specs require)\n` +
      `cached simple page / nginx serving the same bytes: ${x(ratios.cachedSimpleThroughputOverNginx)} throughput (target >= 0.5x)\n` +
      `giant simple page uncached, p50 against ${BEFORE.simpleUncachedP50Ms} ms before it streamed: ${x(ratios.giantSimpleUncachedP50OverBefore)} (goal <= 0.33x)\n` +
      `giant JSON API, p50 against ${BEFORE.jsonApiP50Ms} ms before it streamed: ${x(ratios.giantJsonApiP50OverBefore)} (goal <= 0.33x)\n` +
      `app RSS growth while rendering the giant's pages uncached: ${ratios.rssGrowthWhileRenderingGiantMb.toFixed(1)} MB (goal < 64 MB)\n` +
      [small, giant]
        .map((name) => {
          const mine = plans.filter((p) => p.project === name);
          const scans = [...new Set(mine.flatMap((p) => p.seqScans))];
          return (
            `the uncached simple page of ${name === giant ? 'the giant' : 'the 10-release project'}: ${mine.length} queries, ` +
            `${scans.length ? `sequential scans of ${scans.join(', ')}` : 'every big table read through an index'}\n`
          );
        })
        .join('') +
      "the giant's page reads most rows of its tables, where a sequential scan is the planner's right choice; a small project's must use the indexes\n",
  );
}
process.exit(0);

/** The SQL the simple page runs for `name`, each EXPLAINed on the primary: which big tables a plan scans sequentially. */
async function explainSimplePage(name: string): Promise<{ project: string; query: string; seqScans: string[] }[]> {
  const pool = new pg.Pool({ connectionString: services.primaryUrl, max: 1 });
  const captured: CompiledQuery[] = [];
  const db = new Kysely<IndexDatabase>({
    dialect: new PostgresDialect({ pool }),
    log: (event) => {
      captured.push(event.query);
    },
  });
  try {
    const project = await findProject(db, name);
    for await (const batch of releaseParts((fn) => fn(db), project!.id, 'simple-json')) void batch;
    const out: { project: string; query: string; seqScans: string[] }[] = [];
    for (const q of captured) {
      const plan = (await pool.query(`EXPLAIN (FORMAT JSON) ${q.sql}`, q.parameters as unknown[])).rows[0]['QUERY PLAN'] as unknown;
      const scans: string[] = [];
      const walk = (node: Record<string, unknown>) => {
        if (node['Node Type'] === 'Seq Scan' && ['projects', 'releases', 'files'].includes(String(node['Relation Name'])))
          scans.push(String(node['Relation Name']));
        for (const child of (node['Plans'] as Record<string, unknown>[] | undefined) ?? []) walk(child);
      };
      walk((plan as { Plan: Record<string, unknown> }[])[0]!.Plan);
      out.push({ project: name, query: q.sql.replace(/\s+/g, ' ').slice(0, 120), seqScans: scans });
    }
    return out;
  } finally {
    await db.destroy();
  }
}

/** `banyan app` on a free port with `env`, stopped with the benchmark. */
async function appProcess(env: Record<string, string>): Promise<{ url: string; pid: number }> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(process.execPath, [join(here, '..', 'bin', 'banyan.js'), 'app'], {
    env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1', BANYAN_LOG: 'off' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  opened.push(async () => {
    child.kill('SIGTERM');
    if (child.exitCode === null) await new Promise((resolve) => child.once('exit', resolve));
  });
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`banyan app exited with ${child.exitCode}`);
    if (
      await fetch(`${url}/_health`).then(
        (r) => r.ok,
        () => false,
      )
    )
      return { url, pid: child.pid! };
    if (Date.now() > deadline) throw new Error('banyan app was not ready after 30 s');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** A process's memory figure from /proc (VmRSS, VmHWM), in bytes. */
function memoryOf(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const kb = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kb ?? 0) * 1024;
}

/** Resets a process's peak RSS (clear_refs 5) and returns its RSS now. */
function resetPeak(pid: number): number {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
  return memoryOf(pid, 'VmRSS');
}

/** nginx (when installed) serving `body` as one file, stopped with the benchmark; undefined when there is no nginx. */
async function nginxServing(body: string, type: string): Promise<string | undefined> {
  const www = join(dir, 'www');
  mkdirSync(www, { recursive: true });
  writeFileSync(join(www, 'simple.json'), body);
  const server = await startNginx(() => `SERVER { root ${www}; default_type ${type}; }`);
  if (!server) return undefined;
  opened.push(async () => server.stop());
  return server.url;
}
/** `requests` GETs over `connections` keep-alive connections; latency percentiles and throughput. */
async function load(contestant: string, origin: string, path: string, headers: Record<string, string>, requests: number): Promise<Figure> {
  const pool = new Pool(origin, { connections });
  const latencies: number[] = [];
  let bytes = 0;
  let next = 0;
  // Warm up: first requests compile queries and fill the cache.
  for (let i = 0; i < Math.min(20, Math.ceil(requests / 10)); i++) await (await pool.request({ path, method: 'GET', headers })).body.text();
  const started = performance.now();
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (next++ < requests) {
        const t0 = performance.now();
        const res = await pool.request({ path, method: 'GET', headers });
        const body = await res.body.text();
        latencies.push(performance.now() - t0);
        if (res.statusCode !== 200) throw new Error(`${contestant}: ${path} answered ${res.statusCode}: ${body.slice(0, 200)}`);
        bytes = Buffer.byteLength(body);
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  await pool.close();
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))]!;
  return { contestant, p50Ms: pct(0.5), p99Ms: pct(0.99), rps: latencies.length / elapsed, bytes };
}
