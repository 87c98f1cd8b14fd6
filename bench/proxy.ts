/**
 * npm run bench:proxy [-- --seconds 4 --rounds 3 --connections 50 --json]
 * npm run bench:proxy -- --stack [--workers 1,2]
 * npm run bench:proxy -- --tracing
 *
 * Side by side, in one run on this machine: a bare http-proxy-3 server,
 * nginx (when installed), the bare undici engine, Fastify with
 * @fastify/http-proxy, and Banyan as users run it: the `banyan proxy`
 * command with its default settings (the access log on, to /dev/null), on a
 * routes file of 1,000 routes (BANYAN_CLIENT_SHARE=100 only, since the load
 * comes from one address), and on a PostgreSQL route table with pins
 * checked on every request, the usage ledger and the autopilot's evidence;
 * the file form again with BANYAN_LOG=off for what the log costs. Banyan's
 * proxy built inside a process of the bench (10 and 1,000 routes, three
 * endpoints per service) stays as a diagnostic of the per-request path.
 * Everything is compiled (dist/ is built first); each contestant is its own
 * process; load comes from wrk when installed, else from bench/load.ts.
 *
 * Then overload: the routes-file proxy under open-loop load (bench/open-loop.ts) at half and twice the
 * capacity its rounds measured, with load shedding on (the default) and off.
 *
 * With --stack: the real `banyan start` stack (one per --workers count, each
 * component its own process), against a bare http-proxy-3 in front of the
 * same legacy, on a route legacy answers; CPU is the proxy's, workers included.
 *
 * With --tracing: `banyan proxy` (routes file, access log off) with tracing off, and exporting OTLP to a
 * sink on loopback with 1 % and 100 % of requests sampled: what a span per request costs.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { printTable, progress } from '../bin/output.js';
import { freePort } from '../stack/ports.js';
import { startNginx } from './nginx.js';
import { startStack } from '../chaos/stack.js';
import { signPin } from '../proxy/pin.js';
import { BENCH_PATH, BENCH_SECRET, benchRoutes } from './routes.js';
import { download, idleConnections, upload, websocketEcho } from './transfers.js';
import { newSession } from '../proxy/canary-session.js';
import { connect } from '../lib/database.js';
import { startServices, type Services } from '../stack/local-stack.js';
import { IMPLICIT_UPSTREAMS, saveTable } from '../routing/table/index.js';

const { values: flags } = parseArgs({
  options: {
    seconds: { type: 'string' },
    connections: { type: 'string' },
    rounds: { type: 'string' },
    json: { type: 'boolean' },
    stack: { type: 'boolean' },
    workers: { type: 'string' },
    'no-transfers': { type: 'boolean' },
    idle: { type: 'string' },
    'no-overload': { type: 'boolean' },
    tracing: { type: 'boolean' },
  },
});
const seconds = Number(flags['seconds'] ?? 4);
const rounds = Number(flags['rounds'] ?? 3);
const connections = Number(flags['connections'] ?? 50);
const here = fileURLToPath(new URL('.', import.meta.url));
// A valid pin on every request: Banyan verifies it and forwards the fence, as for a user who just wrote.
// A canary session far from any small percent: the route under a plan stays on legacy, and no cookie is minted per request.
const SESSION = newSession(9_999);
const pinCookie = (secret: string) =>
  `banyan_pin=${signPin({ id: 'benchsession01', lsn: 0x1000000n, expires: Date.now() + 3_600_000 }, secret)}; banyan_sid=${SESSION}`;
let COOKIE = pinCookie(BENCH_SECRET);
/** The path asked for: a parameterized legacy route (in --stack, legacy.project of the shipped routes). */
let path = BENCH_PATH;
const children: ChildProcess[] = [];
const cleanups: (() => void)[] = [];
/** Stopped before the bench exits: the PostgreSQL and Redis of the table-backed contestant. */
const teardowns: (() => Promise<void>)[] = [];
process.on('exit', () => {
  for (const f of cleanups) f();
  for (const c of children) c.kill('SIGKILL');
});
process.on('SIGINT', () => process.exit(130));

interface Result {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  cpuUsPerRequest: number;
}

/** CPU seconds (user + system) used so far by `pid` and its children (nginx's workers). */
function cpuSeconds(pid: number): number {
  const tick = 100;
  const of = (p: number) => {
    try {
      const fields = readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]!.split(' ');
      return (Number(fields[11]) + Number(fields[12])) / tick;
    } catch {
      return 0;
    }
  };
  const children = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
    .stdout.split('\n')
    .filter(Boolean)
    .map(Number);
  return of(pid) + children.reduce((sum, c) => sum + of(c), 0);
}

function has(program: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${program}`]).status === 0;
}

const pids = new Map<string, number>();

async function contestant(kind: string, ...rest: string[]): Promise<string> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', join(here, 'contestants.ts'), kind, String(port), ...rest], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`${kind} exited with ${code}`)));
  });
  pids.set(`http://127.0.0.1:${port}`, child.pid!);
  return `http://127.0.0.1:${port}`;
}

const BANYAN_CLI = join(here, '..', 'bin', 'banyan.js');

/**
 * `banyan proxy` as a user starts it: the command, compiled, in a folder of its own (so no stack.json is
 * picked up), with `env` on top of the defaults; its access log (stdout) goes to /dev/null.
 */
async function banyanProxy(env: Record<string, string>): Promise<string> {
  const [port, adminPort] = [await freePort(), await freePort()];
  const cwd = mkdtempSync(join(tmpdir(), 'banyan-bench-proxy-'));
  cleanups.push(() => rmSync(cwd, { recursive: true, force: true }));
  const quiet = openSync('/dev/null', 'w');
  const child = spawn(process.execPath, [BANYAN_CLI, 'proxy'], {
    cwd,
    stdio: ['ignore', quiet, 'pipe'],
    // The load generator is one address that stands for every client: no per-client share (BANYAN_CLIENT_SHARE).
    env: {
      PATH: process.env['PATH'] ?? '',
      HOME: process.env['HOME'] ?? '',
      PORT: String(port),
      ADMIN_PORT: String(adminPort),
      BANYAN_CLIENT_SHARE: '100',
      ...env,
    },
  });
  children.push(child);
  let said = '';
  child.stderr!.on('data', (d) => {
    said += d;
  });
  const deadline = Date.now() + 60_000;
  while (
    !(await fetch(`http://127.0.0.1:${adminPort}/healthz`).then(
      (r) => r.ok,
      () => false,
    ))
  ) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`banyan proxy did not start:\n${said}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  pids.set(`http://127.0.0.1:${port}`, child.pid!);
  return `http://127.0.0.1:${port}`;
}

/** A routes file of `count` bench routes (the upstreams from LEGACY_URL and APP_URL). */
function routesFile(count: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'banyan-bench-routes-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'routes.json');
  writeFileSync(file, JSON.stringify(benchRoutes(count)));
  return file;
}

/**
 * A PostgreSQL primary and replica and Redis (the local stack's services, in a temporary folder) holding
 * the bench's 1,000 routes, with the benchmarked route under a promotion plan so every proxy counts its
 * evidence: what a production `banyan proxy` runs with.
 */
async function tableServices(): Promise<Services> {
  const dir = mkdtempSync(join(tmpdir(), 'banyan-bench-db-'));
  progress(`starting PostgreSQL and Redis for the table-backed proxy in ${dir}`);
  const services = await startServices({ dir, redis: 'auto' });
  teardowns.push(async () => {
    await services.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const db = connect(services.primaryUrl, { max: 1, name: 'banyan-bench', schema: 'banyan' });
  try {
    await saveTable(db, { routes: { upstreams: IMPLICIT_UPSTREAMS, routes: benchRoutes(1000) }, actor: 'bench', reason: 'bench table' });
  } finally {
    await db.destroy();
  }
  const plan = join(dir, 'plan.json');
  writeFileSync(
    plan,
    JSON.stringify({
      steps: [
        { mode: 'canary', percent: 1, hold: '1h', minRequests: 1 },
        { mode: 'new', hold: '1h', minRequests: 1 },
      ],
    }),
  );
  const promoted = spawnSync(process.execPath, [BANYAN_CLI, 'routes', 'promote', 'legacy.project_json', '--plan', plan], {
    cwd: dir,
    encoding: 'utf8',
    env: {
      PATH: process.env['PATH'] ?? '',
      DATABASE_URL: services.primaryUrl,
      ...(services.redisUrl ? { REDIS_URL: services.redisUrl } : {}),
    },
  });
  if (promoted.status !== 0) throw new Error(`routes promote failed: ${promoted.stderr}`);
  return services;
}

async function nginx(target: string): Promise<string | undefined> {
  const server = await startNginx(
    () => `upstream backend { server ${new URL(target).host}; keepalive 64; }
  SERVER {
    client_max_body_size 0;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }`,
  );
  if (!server) return undefined;
  cleanups.unshift(() => server.stop());
  pids.set(server.url, server.pid);
  return server.url;
}

function measure(name: string, base: string, duration: number): Result {
  const pid = pids.get(base)!;
  const cpuBefore = cpuSeconds(pid);
  const result = load(name, `${base}${path}`, duration);
  const cpu = cpuSeconds(pid) - cpuBefore;
  return { ...result, cpuUsPerRequest: (cpu * 1e6) / Math.max(1, result.rps * duration) };
}

function load(name: string, url: string, duration: number): Omit<Result, 'cpuUsPerRequest'> {
  if (has('wrk')) {
    const out = spawnSync('wrk', ['-t1', `-c${connections}`, `-d${duration}s`, '--latency', '-H', `Cookie: ${COOKIE}`, url], {
      encoding: 'utf8',
    }).stdout;
    const ms = (label: string) => {
      const m = new RegExp(`\\s${label}%\\s+([\\d.]+)(us|ms|s)`).exec(out);
      if (!m) return NaN;
      return Number(m[1]) * (m[2] === 'us' ? 0.001 : m[2] === 's' ? 1000 : 1);
    };
    const errors = /Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? '0';
    return { name, rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0), p50: ms('50'), p99: ms('99'), errors: Number(errors) };
  }
  const out = spawnSync(process.execPath, ['--import', 'tsx', join(here, 'load.ts'), url, String(connections), String(duration), COOKIE], {
    encoding: 'utf8',
  }).stdout;
  return { name, ...(JSON.parse(out) as Omit<Result, 'name' | 'cpuUsPerRequest'>) };
}

// Banyan runs compiled, as an installed package (or a built checkout: npm start) runs it; tsx, which runs the
// sources, adds a helper call to some constructs on every request.
progress('building dist/ (npm run build), so Banyan runs compiled');
if (spawnSync(process.execPath, [join(here, '..', 'scripts', 'build.mjs')], { stdio: ['ignore', 'ignore', 'inherit'] }).status !== 0) {
  throw new Error('npm run build failed: fix the build first');
}

/** The local contestants' backend and routes file, for proxies started after the rounds (overload). */
let BACKEND: string | undefined;
let ROUTES_FILE: string | undefined;
const contestants: [string, string | undefined][] = flags.stack
  ? await stackContestants()
  : flags.tracing
    ? await tracingContestants()
    : await localContestants();

/** The routes file form, BANYAN_LOG=off, without tracing and with it at 1 % and 100 %, exporting to a sink that answers 200. */
async function tracingContestants(): Promise<[string, string | undefined][]> {
  const backend = await contestant('backend');
  const collector = await contestant('backend');
  progress(
    `backend on ${backend}, OTLP sink on ${collector}; load: ${has('wrk') ? 'wrk' : 'bench/load.ts'}, ${connections} connections, ${seconds} s each`,
  );
  // The load generator is one address that stands for every client: no per-client share (it would answer 503s).
  const plain = {
    LEGACY_URL: backend,
    APP_URL: backend,
    BANYAN_ROUTES_FILE: routesFile(1000),
    BANYAN_LOG: 'off',
    BANYAN_CLIENT_SHARE: '100',
  };
  const traced = (ratio: string) => ({
    ...plain,
    OTEL_EXPORTER_OTLP_ENDPOINT: collector,
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
    OTEL_TRACES_SAMPLER: 'traceidratio',
    OTEL_TRACES_SAMPLER_ARG: ratio,
  });
  return [
    ['banyan proxy, routes file, BANYAN_LOG=off (tracing off)', await banyanProxy(plain)],
    ['banyan proxy, tracing, 1 % sampled', await banyanProxy(traced('0.01'))],
    ['banyan proxy, tracing, 100 % sampled', await banyanProxy(traced('1'))],
  ];
}

async function localContestants(): Promise<[string, string | undefined][]> {
  const backend = await contestant('backend');
  BACKEND = backend;
  progress(
    `backend on ${backend}; load: ${has('wrk') ? 'wrk' : 'bench/load.ts (install wrk for steadier figures)'}, ${connections} connections, ${seconds} s each`,
  );
  const file = routesFile(1000);
  ROUTES_FILE = file;
  const services = await tableServices();
  const table = {
    DATABASE_URL: services.primaryUrl,
    DATABASE_REPLICA_URLS: services.replicaUrls.join(','),
    ...(services.redisUrl ? { REDIS_URL: services.redisUrl } : {}),
    BANYAN_SECRET: BENCH_SECRET,
    BANYAN_ADMIN_TOKEN: 'bench-admin-token-0123456789',
    LEGACY_URL: backend,
    APP_URL: backend,
  };
  return [
    ['banyan proxy, PostgreSQL table: pins, usage ledger, autopilot (defaults)', await banyanProxy(table)],
    [
      'banyan proxy, routes file (defaults, access log on)',
      await banyanProxy({ LEGACY_URL: backend, APP_URL: backend, BANYAN_ROUTES_FILE: file }),
    ],
    [
      'banyan proxy, routes file, BANYAN_LOG=off',
      await banyanProxy({ LEGACY_URL: backend, APP_URL: backend, BANYAN_ROUTES_FILE: file, BANYAN_LOG: 'off' }),
    ],
    ['http-proxy-3 (bare, keep-alive agent)', await contestant('http-proxy-3', backend)],
    ['nginx', await nginx(backend)],
    ['undici Pool.stream (bare engine)', await contestant('undici', backend)],
    ['fastify + @fastify/http-proxy', await contestant('fastify', backend)],
    ['in-process banyan, 10 routes', await contestant('banyan', backend, '10')],
    ['in-process banyan, 1,000 routes', await contestant('banyan', backend, '1000')],
    // The same, with each service on three endpoints (three backend processes) and their health checks running.
    [
      'in-process banyan, 3 endpoints per service, health checks, 1,000 routes',
      await contestant('banyan', backend, '1000', await contestant('backend'), await contestant('backend')),
    ],
  ];
}

/** One `banyan start` per --workers count, and a bare http-proxy-3 in front of the first one's legacy. */
async function stackContestants(): Promise<[string, string | undefined][]> {
  const counts = String(flags.workers ?? '1')
    .split(',')
    .map(Number);
  if (counts.some((n) => !Number.isInteger(n) || n < 1 || n > 8))
    throw new Error(`--workers must list counts from 1 to 8, such as 1,2; not "${flags.workers}"`);
  // No such project: legacy answers 404 at once, so the machine's cores go to the proxies, not to legacy's pages.
  path = '/pypi/bench-project';
  const out: [string, string | undefined][] = [];
  for (const workers of counts) {
    const dir = mkdtempSync(join(tmpdir(), 'banyan-bench-stack-'));
    progress(`starting the stack with ${workers} proxy worker${workers > 1 ? 's' : ''} in ${dir}`);
    // The load generator is one address that stands for every client: no per-client share.
    const started = await startStack(dir, ['--workers', String(workers), '--no-restart'], {
      BANYAN_CLIENT_SHARE: '100',
      BANYAN_DEBUG_HEADERS: 'off',
    });
    cleanups.unshift(() => {
      try {
        process.kill(-started.child.pid!, 'SIGINT');
      } catch {
        /* gone */
      }
      const deadline = Date.now() + 20_000;
      while (existsSync(join(dir, '.banyan', 'stack.json')) && Date.now() < deadline) spawnSync('sleep', ['0.1']);
      rmSync(dir, { recursive: true, force: true });
    });
    COOKIE = pinCookie(readFileSync(join(dir, '.banyan', 'secret'), 'utf8').trim());
    pids.set(started.stack.proxy, started.stack.pids['proxy']!);
    if (out.length === 0) out.push(['http-proxy-3 in front of the same legacy', await contestant('http-proxy-3', started.stack.legacy)]);
    out.push([`banyan, npm start stack, ${workers} worker${workers > 1 ? 's' : ''}`, started.stack.proxy]);
  }
  return out;
}
// Rounds are interleaved and each contestant keeps its best round: on a shared machine the
// best round is the one least disturbed by others, and interleaving spreads the disturbance.
const best = new Map<string, Result>();
for (const [name, base] of contestants) {
  if (!base) progress(`${name}: not installed, skipped`);
  else measure(name, base, 1);
}
for (let round = 1; round <= rounds; round++) {
  for (const [name, base] of contestants) {
    if (!base) continue;
    progress(`round ${round}/${rounds}: ${name}`);
    const r = measure(name, base, seconds);
    const previous = best.get(name);
    best.set(
      name,
      previous
        ? {
            ...(r.rps > previous.rps ? r : previous),
            cpuUsPerRequest: Math.min(r.cpuUsPerRequest, previous.cpuUsPerRequest),
          }
        : r,
    );
  }
}
const results = [...best.values()];

const by = (prefix: string) => results.find((r) => r.name.startsWith(prefix));
// The figure: `banyan proxy` on a routes file of 1,000 routes, default settings, access log on.
const banyan = flags.stack
  ? by('banyan, npm start')
  : flags.tracing
    ? by('banyan proxy, routes file, BANYAN_LOG=off')
    : by('banyan proxy, routes file (defaults');
const table = by('banyan proxy, PostgreSQL');
const ratios: Record<string, { throughput: number; cpuEfficiency: number }> = {};
/** `a` against `b`: throughput, and requests per CPU second (higher is better for `a`). */
const ratio = (label: string, a: Result | undefined, b: Result | undefined) => {
  if (a && b) ratios[label] = { throughput: a.rps / b.rps, cpuEfficiency: b.cpuUsPerRequest / a.cpuUsPerRequest };
};
for (const [label, other] of [
  ['vs http-proxy-3', by('http-proxy-3')],
  ['vs fastify + @fastify/http-proxy', by('fastify')],
  ['vs nginx', by('nginx')],
  ['vs bare undici engine', by('undici')],
] as const)
  ratio(label, banyan, other);
ratio('PostgreSQL table (pins, ledger, autopilot) vs http-proxy-3', table, by('http-proxy-3'));
ratio('PostgreSQL table vs bare undici engine', table, by('undici'));
ratio('routes file vs PostgreSQL table', by('banyan proxy, routes file (defaults'), table);
ratio('tracing at 1 % vs off', by('banyan proxy, tracing, 1 %'), by('banyan proxy, routes file, BANYAN_LOG=off'));
ratio('tracing at 100 % vs off', by('banyan proxy, tracing, 100 %'), by('banyan proxy, routes file, BANYAN_LOG=off'));
ratio('access log on vs off (routes file)', by('banyan proxy, routes file (defaults'), by('banyan proxy, routes file, BANYAN_LOG=off'));
ratio('in-process: 1,000 vs 10 routes', by('in-process banyan, 1,000'), by('in-process banyan, 10 '));
ratio('in-process: 3 endpoints per service vs 1', by('in-process banyan, 3 endpoints'), by('in-process banyan, 1,000'));
// With --workers 1,2: what a second worker adds (the load generator shares this machine's cores).
const two = results.find((r) => r.name.endsWith(' 2 workers'));
if (flags.stack && two && two !== banyan) ratio('2 workers vs 1', two, banyan);
const transfers = !flags.stack && !flags.tracing && !flags['no-transfers'] ? await measureTransfers() : undefined;
const overload = !flags.stack && !flags.tracing && !flags['no-overload'] ? await measureOverload() : undefined;

/**
 * Overload: `banyan proxy` (routes file, defaults) under open-loop load at half and at twice the
 * capacity its closed-loop round measured, and the same proxy with load shedding off, for contrast.
 * Latency is of admitted (2xx) answers, from the moment each request was due.
 */
async function measureOverload(): Promise<{ rows: string[][]; figures: Record<string, unknown> }> {
  const defaults = by('banyan proxy, routes file (defaults');
  const base = contestants.find(([n]) => n.startsWith('banyan proxy, routes file (defaults'))?.[1];
  if (!defaults || !base) return { rows: [], figures: {} };
  const capacity = defaults.rps;
  const unshed = await banyanProxy({ LEGACY_URL: BACKEND!, APP_URL: BACKEND!, BANYAN_ROUTES_FILE: ROUTES_FILE!, BANYAN_SHED_LAG: 'off' });
  const figures: Record<string, OpenLoop> = {};
  for (const [who, url] of [
    ['shedding', base],
    ['no shedding', unshed],
  ] as const) {
    for (const factor of [0.5, 2]) {
      progress(`overload: ${who}, ${factor}× capacity (${Math.round(capacity * factor)} requests/s, open loop, ${seconds} s)`);
      figures[`${who} ${factor}x`] = openLoop(`${url}${path}`, capacity * factor, seconds);
    }
  }
  const row = (who: string, goal: string) => {
    const [half, twice] = [figures[`${who} 0.5x`]!, figures[`${who} 2x`]!];
    return [
      `p99 of admitted requests, 2× vs 0.5× capacity (${who})`,
      `${twice.p99.toFixed(1)} ms vs ${half.p99.toFixed(1)} ms; at 2×: ${pct(twice.ok, twice.sent)} served, ${pct(twice.shed, twice.sent)} shed, ${pct(twice.errors, twice.sent)} failed`,
      `${(twice.p99 / half.p99).toFixed(2)}×`,
      goal,
    ];
  };
  return {
    rows: [row('shedding', '≤ 3×'), row('no shedding', 'report')],
    figures: { capacityRps: capacity, ...figures },
  };
}

interface OpenLoop {
  offered: number;
  sent: number;
  ok: number;
  shed: number;
  errors: number;
  p50: number;
  p99: number;
}

function openLoop(url: string, rate: number, duration: number): OpenLoop {
  const out = spawnSync(
    process.execPath,
    ['--import', 'tsx', join(here, 'open-loop.ts'), url, String(Math.round(rate)), String(duration), '512', COOKIE],
    { encoding: 'utf8' },
  );
  if (out.status !== 0) throw new Error(`open-loop load failed: ${out.stderr}`);
  return JSON.parse(out.stdout) as OpenLoop;
}

function pct(part: number, whole: number): string {
  return `${((100 * part) / Math.max(1, whole)).toFixed(0)} %`;
}

/**
 * Big bodies, WebSocket tunnels and idle connections: `banyan proxy` (the routes file form, defaults)
 * against bare http-proxy-3 and nginx, each row with its goal.
 */
async function measureTransfers(): Promise<{ rows: string[][]; figures: Record<string, unknown> }> {
  const named = (prefix: string) => contestants.find(([n]) => n.startsWith(prefix))?.[1];
  const sides = [
    ['banyan', named('banyan proxy, routes file (defaults')],
    ['http-proxy-3', named('http-proxy-3')],
    ['nginx', named('nginx')],
  ] as const;
  const figures: Record<string, Record<string, number>> = {};
  for (const [who, base] of sides) {
    if (!base) continue;
    const pid = pids.get(base)!;
    progress(`transfers: ${who}: 256 MiB down, 256 MiB up${who === 'nginx' ? '' : ', a WebSocket echo'}, idle connections`);
    const down = await download(base, pid, 256);
    const up = await upload(base, pid, 256);
    const ws = who === 'nginx' ? undefined : await websocketEcho(base);
    const idle = await idleConnections(base, pid, Number(flags.idle ?? 10_000));
    figures[who] = {
      downloadMBps: down.mbPerSecond,
      downloadRssGrowthMB: down.rssGrowth / 1048576,
      uploadMBps: up.mbPerSecond,
      uploadRssGrowthMB: up.rssGrowth / 1048576,
      ...(ws ? { wsRoundTripUs: ws.roundTripUs, wsMBps: ws.mbPerSecond } : {}),
      idleBytesPerConnection: idle.bytesPerConnection,
      idleOpened: idle.opened,
    };
  }
  const b = figures['banyan'];
  const h = figures['http-proxy-3'];
  const n = figures['nginx'];
  const x = (a: number | undefined, c: number | undefined) => (a !== undefined && c ? `${(a / c).toFixed(2)}×` : 'n/a');
  const mb = (v: number | undefined) => (v === undefined ? 'n/a' : `${v.toFixed(0)} MB/s`);
  const rows = b
    ? [
        [
          '256 MiB download vs http-proxy-3',
          `${mb(b['downloadMBps'])} vs ${mb(h?.['downloadMBps'])} (nginx ${mb(n?.['downloadMBps'])})`,
          x(b['downloadMBps'], h?.['downloadMBps']),
          '≥ 1.2×',
        ],
        [
          '256 MiB upload vs http-proxy-3',
          `${mb(b['uploadMBps'])} vs ${mb(h?.['uploadMBps'])} (nginx ${mb(n?.['uploadMBps'])})`,
          x(b['uploadMBps'], h?.['uploadMBps']),
          '≥ 1.2×',
        ],
        [
          'proxy RSS growth during the transfers',
          `${b['downloadRssGrowthMB']!.toFixed(1)} MB down, ${b['uploadRssGrowthMB']!.toFixed(1)} MB up`,
          '',
          'flat',
        ],
        [
          'idle connection memory vs nginx',
          `${(b['idleBytesPerConnection']! / 1024).toFixed(1)} KiB vs ${n ? (n['idleBytesPerConnection']! / 1024).toFixed(1) : 'n/a'} KiB (${b['idleOpened']} open)`,
          x(b['idleBytesPerConnection'], n?.['idleBytesPerConnection']),
          '≤ 4×',
        ],
        [
          'WebSocket echo throughput vs http-proxy-3',
          `${mb(b['wsMBps'])} vs ${mb(h?.['wsMBps'])}`,
          x(b['wsMBps'], h?.['wsMBps']),
          '≥ 1.0×',
        ],
        [
          'WebSocket round trip (64 B)',
          `${b['wsRoundTripUs']!.toFixed(0)} µs vs ${h?.['wsRoundTripUs']?.toFixed(0) ?? 'n/a'} µs`,
          x(h?.['wsRoundTripUs'], b['wsRoundTripUs']),
          'report',
        ],
      ]
    : [];
  return { rows, figures };
}

/** Each ratio's goal, in requests per CPU second. */
const GOALS: Record<string, string> = {
  'vs http-proxy-3': '≥ 1.5×',
  'vs bare undici engine': '≥ 0.9×',
  'vs nginx': 'report',
  'access log on vs off (routes file)': '≥ 0.9×',
};

if (flags.json) {
  process.stdout.write(
    `${JSON.stringify({ seconds, rounds, connections, path, results, ratios, transfers: transfers?.figures, overload: overload?.figures }, null, 2)}\n`,
  );
} else {
  process.stdout.write(
    `\nGET ${path}${flags.stack ? ' (legacy answers 404, through the npm start stack)' : ', 1 KB answers'}, ${connections} connections, best of ${rounds} interleaved rounds of ${seconds} s\n\n`,
  );
  printTable(
    ['contestant', 'req/s', 'p50 ms', 'p99 ms', 'CPU µs/req', 'non-2xx'],
    results.map((r) => [r.name, r.rps.toFixed(0), r.p50.toFixed(2), r.p99.toFixed(2), r.cpuUsPerRequest.toFixed(0), String(r.errors)]),
  );
  process.stdout.write(
    `\nBanyan (${flags.stack ? 'the npm start stack, 1 worker' : flags.tracing ? 'banyan proxy, routes file, tracing off' : 'banyan proxy on a routes file of 1,000 routes, defaults, access log on'}) against the others, and Banyan's forms against each other (above 1× is better for the first):\n`,
  );
  printTable(
    ['against', 'throughput', 'requests per CPU second', 'goal (per CPU second)'],
    Object.entries(ratios).map(([k, v]) => [k, `${v.throughput.toFixed(2)}×`, `${v.cpuEfficiency.toFixed(2)}×`, GOALS[k] ?? '']),
  );
  if (overload?.rows.length) {
    process.stdout.write(
      `\nOverload (banyan proxy, routes file; capacity ${Math.round(Number(overload.figures['capacityRps']))} requests/s from its closed-loop round; open-loop load, 512 connections):\n`,
    );
    printTable(['figure', 'measured', 'ratio', 'goal'], overload.rows);
  }
  if (transfers?.rows.length) {
    process.stdout.write('\nBig bodies, WebSocket tunnels and idle keep-alive connections (banyan proxy, routes file, defaults):\n');
    printTable(['figure', 'measured', 'ratio', 'goal'], transfers.rows);
  }
  process.stdout.write('\nThe machine is shared: throughput moves with its load; CPU per request is the steadier figure.\n');
}
for (const teardown of teardowns) await teardown();
process.exit(0);
