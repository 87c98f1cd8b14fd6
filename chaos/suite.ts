import { connect as connectSocket } from 'node:net';
import pg from 'pg';
import { childrenOf, freeze, kill } from './faults.js';
import { ReadLoad, UploadLoad, type ReadEvent, type ReadTarget, type WriteLog } from './load.js';
import type { StartedStack } from './stack.js';

/** One line of the chaos table. */
export interface ChaosRow {
  readonly scenario: string;
  /** Reads sent through the proxy during the scenario (or attack requests, for the attacks). */
  readonly requests: number;
  /** Reads that got no answer or a 5xx (for the attacks: requests that got through). */
  readonly failures: number;
  /** Reads on a fallback route that legacy answered after the new app failed (the proxy's own count; null when a crashed worker took its counts with it). */
  readonly fallbacks: number | null;
  /** From the fault to the first fallback answer, when the fault was the new app's. */
  readonly firstFallbackMs: number | null;
  /** Uploads sent (never retried). */
  readonly writesSent: number;
  /** Uploads answered 200. */
  readonly writesAcknowledged: number;
  /** Uploads whose file is in the index afterwards (acknowledged or not). */
  readonly stored: number;
  /** Acknowledged uploads that are not in the index. */
  readonly lost: number;
  /** Files recorded more than once (a replayed upload). */
  readonly duplicated: number;
  /** The proxy process served throughout: same process id, never reported dead. */
  readonly proxyAlive: boolean;
  /** Broken invariants, in words; empty when the scenario held. */
  readonly broken: readonly string[];
  readonly notes: string;
  /** Why the scenario did not run here (network namespaces cannot be made, say); its invariants were not checked. */
  readonly skipped?: string;
  /** For a failover: milliseconds from the kill to each step (promotion, first accepted write, …). */
  readonly timeline?: Readonly<Record<string, number>>;
}

/** What every scenario needs: the running stack, and an account that owns the chaos project. */
export interface ChaosContext {
  readonly stack: StartedStack;
  readonly uploadToken: string;
  readonly project: string;
  /** How long a freeze lasts, and the load runs before and after a fault (ms). */
  readonly faultMs: number;
  readonly settleMs: number;
  readonly log: (line: string) => void;
}

export interface Scenario {
  readonly name: string;
  run(ctx: ChaosContext): Promise<ChaosRow>;
}

/**
 * Routes on the new app with fallback, whose reads must keep succeeding when the new app dies (legacy answers
 * them), and must keep being answered by the new app when one of its instances dies (another instance does).
 */
export const FALLBACK_ROUTES = new Set(['simple.detail', 'json.project']);

/**
 * A fault done to one component under read and write load. `appFault`: every instance of the new app
 * fails (reads on fallback routes must reach legacy within a second); `instanceFault`: one instance fails
 * (no read on the new app's routes may fail or fall back: the other instances answer).
 */
function underLoad(
  name: string,
  fault: (ctx: ChaosContext) => Promise<string | void>,
  options: { appFault?: boolean; instanceFault?: boolean } = {},
): Scenario {
  return {
    name,
    run: async (ctx) => {
      await healthy(ctx);
      const before = ctx.stack.current();
      const outputFrom = ctx.stack.output().length;
      const fallbacksBefore = await fallbackCount(ctx);
      const reads = new ReadLoad(before.proxy, readTargets(ctx.project));
      const writes = new UploadLoad(before.proxy, ctx.project, ctx.uploadToken);
      reads.start();
      writes.start();
      let t0: number;
      let note: string | void;
      try {
        await sleep(ctx.settleMs);
        t0 = Date.now();
        note = await fault(ctx);
        await healthy(ctx);
        await sleep(ctx.settleMs);
      } finally {
        await Promise.all([reads.stop(), writes.stop()]);
      }
      const verdict = await checkWrites(ctx, writes.log);
      const counted = (await fallbackCount(ctx)) - fallbacksBefore;
      const fallbacks = counted < 0 ? null : counted;
      const proxyAlive = proxyServed(ctx, before.pids['proxy'], outputFrom);
      const failures = reads.events.filter(failed).length;
      const firstFallbackMs = options.appFault ? firstFallback(reads.events, t0) : null;
      const broken = invariants({ ...verdict, proxyAlive });
      if (options.appFault) {
        const dropped = reads.events.filter((e) => FALLBACK_ROUTES.has(e.route) && failed(e)).length;
        if (dropped > 0)
          broken.push(
            `${dropped} reads on fallback routes failed: ${describeFailures(
              reads.events.filter((e) => FALLBACK_ROUTES.has(e.route)),
              t0,
            )}`,
          );
        if (firstFallbackMs === null || firstFallbackMs > 1_000)
          broken.push(`first fallback after ${firstFallbackMs ?? 'never'} ms (limit 1,000)`);
      }
      if (options.instanceFault) {
        const onNew = reads.events.filter((e) => FALLBACK_ROUTES.has(e.route));
        const dropped = onNew.filter(failed).length;
        const toLegacy = onNew.filter((e) => !failed(e) && e.fromLegacy).length;
        if (dropped > 0)
          broken.push(`${dropped} reads on the new app's routes failed while another instance was up: ${describeFailures(onNew, t0)}`);
        if (toLegacy > 0) broken.push(`${toLegacy} reads on the new app's routes fell back to legacy while another instance was up`);
      }
      const failuresNote = failures > 0 ? `failed reads: ${describeFailures(reads.events, t0)}` : '';
      return {
        scenario: name,
        requests: reads.events.length,
        failures,
        fallbacks,
        firstFallbackMs,
        writesSent: writes.log.sent,
        writesAcknowledged: writes.log.acknowledged.size,
        ...verdict,
        proxyAlive,
        broken,
        notes: [note || '', failuresNote].filter(Boolean).join('; '),
      };
    },
  };
}

/** What the read load asks for: two fallback routes on the new app, a legacy page with fallback, legacy's home. */
export function readTargets(project: string): ReadTarget[] {
  return [
    { route: 'simple.detail', path: `/simple/${project}/` },
    { route: 'json.project', path: `/pypi/${project}/json` },
    { route: 'project.page', path: `/project/${project}/` },
    { route: 'legacy.home', path: '/' },
  ];
}

/** The faults of `npm run chaos`, in order, and the first attacks (ATTACKS follow them); `workers` > 1 adds the worker crash. */
export function scenarios(workers: number): Scenario[] {
  const pid = (ctx: ChaosContext, name: string) => {
    const id = ctx.stack.current().pids[name];
    if (!id) throw new Error(`${name} has no process id in stack.json`);
    return id;
  };
  /** The new app's instances, by their supervisor names: app-1, app-2, … */
  const apps = (ctx: ChaosContext) =>
    Object.keys(ctx.stack.current().pids)
      .filter((n) => /^app-\d+$/.test(n))
      .sort();
  /** SIGKILL to each component named (all at once), then wait until every one of them was restarted. */
  const killedAll = (names: (ctx: ChaosContext) => string[]) => async (ctx: ChaosContext) => {
    const ids = new Map(names(ctx).map((name) => [name, pid(ctx, name)]));
    for (const id of ids.values()) kill(id);
    await waitFor(
      `${[...ids.keys()].join(', ')} to be restarted`,
      async () => {
        const now = ctx.stack.current().pids;
        return [...ids].every(([name, id]) => !!now[name] && now[name] !== id);
      },
      60_000,
    );
  };
  const killed = (name: string) => killedAll(() => [name]);
  const frozenAll = (names: (ctx: ChaosContext) => string[]) => async (ctx: ChaosContext) => {
    const ids = names(ctx).map((name) => pid(ctx, name));
    await Promise.all(ids.map((id) => freeze(id, ctx.faultMs)));
  };
  const frozen = (name: string) => frozenAll(() => [name]);
  const list: Scenario[] = [
    underLoad(
      'kill the new app',
      async (ctx) => {
        await killedAll(apps)(ctx);
        return `every instance killed: ${apps(ctx).join(', ')}`;
      },
      { appFault: true },
    ),
    underLoad('freeze the new app', async (ctx) => {
      await frozenAll(apps)(ctx);
      return `every instance frozen: ${apps(ctx).join(', ')}`;
    }),
    underLoad(
      'kill one app instance',
      async (ctx) => {
        const others = apps(ctx).filter((n) => n !== 'app-1');
        if (others.length === 0) throw new Error('one app instance only: start the stack with --app-instances 2 or more');
        await killed('app-1')(ctx);
        return `app-1 killed and restarted; ${others.join(', ')} stayed up`;
      },
      { instanceFault: true },
    ),
    underLoad('kill legacy', killed('legacy')),
    underLoad('freeze legacy', frozen('legacy')),
    underLoad('kill the replica', killed('postgresReplica')),
    underLoad('freeze the replica', frozen('postgresReplica')),
    underLoad('kill the primary', killed('postgresPrimary')),
    underLoad('freeze the primary', frozen('postgresPrimary')),
    underLoad('kill Redis', killed('redis')),
    underLoad('freeze Redis', frozen('redis')),
  ];
  if (workers > 1) {
    list.push(
      underLoad('crash a proxy worker', async (ctx) => {
        const workerPids = childrenOf(pid(ctx, 'proxy'));
        if (workerPids.length < 2) throw new Error(`expected ${workers} proxy workers, found ${workerPids.length}`);
        process.kill(workerPids[0]!, 'SIGKILL');
        await waitFor('the worker to be replaced', async () => childrenOf(pid(ctx, 'proxy')).length >= workerPids.length, 30_000);
        return `worker ${workerPids[0]} killed and replaced`;
      }),
    );
  }
  list.push(
    underLoad('flip a route 50 times', async (ctx) => {
      for (let i = 0; i < 50; i++) {
        await setMode(ctx, 'project.page', i % 2 === 0 ? 'new' : 'legacy', `chaos flip ${i + 1}`);
        await sleep(40);
      }
      return '50 versions: legacy ↔ new with fallback';
    }),
    underLoad('shadow to a dead app', async (ctx) => {
      await setMode(ctx, 'project.page', 'shadow', 'chaos: shadow to a dead app');
      try {
        await sleep(ctx.settleMs);
        await killedAll(apps)(ctx);
      } finally {
        await setMode(ctx, 'project.page', 'legacy', 'chaos: shadow over');
      }
      return 'project.page shadowed while the app was killed';
    }),
    { name: 'attacks: path tricks on a retired route', run: pathTricks },
    { name: 'attacks: usage poisoning', run: poisoning },
  );
  return list;
}

/** Runs the scenarios one after another (stopping at none), logging each row as it comes. */
export async function runScenarios(ctx: ChaosContext, list: readonly Scenario[]): Promise<ChaosRow[]> {
  const rows: ChaosRow[] = [];
  for (const [i, scenario] of list.entries()) {
    ctx.log(`[${i + 1}/${list.length}] ${scenario.name}…`);
    const started = Date.now();
    let row: ChaosRow;
    try {
      row = await scenario.run(ctx);
    } catch (err) {
      row = {
        scenario: scenario.name,
        requests: 0,
        failures: 0,
        fallbacks: 0,
        firstFallbackMs: null,
        writesSent: 0,
        writesAcknowledged: 0,
        stored: 0,
        lost: 0,
        duplicated: 0,
        proxyAlive: false,
        broken: [`the scenario could not run: ${(err as Error).message}`],
        notes: '',
      };
    }
    ctx.log(`      ${row.broken.length ? `BROKEN: ${row.broken.join('; ')}` : 'held'} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    rows.push(row);
  }
  return rows;
}

/** Lost and duplicated writes: what the index holds for the chaos project, against what the writer was told. */
export async function checkWrites(ctx: ChaosContext, log: WriteLog): Promise<Pick<ChaosRow, 'stored' | 'lost' | 'duplicated'>> {
  const project = ctx.project;
  const { files, journal } = await withPrimary(ctx, async (c) => ({
    files: (
      await c.query<{ filename: string }>(
        `SELECT f.filename FROM files f JOIN releases r ON r.id = f.release_id
      JOIN projects p ON p.id = r.project_id WHERE p.normalized_name = $1`,
        [project],
      )
    ).rows.map((r) => r.filename),
    journal: (
      await c.query<{ action: string }>("SELECT action FROM journal WHERE project_name = $1 AND action LIKE 'add % file %'", [project])
    ).rows.map((r) => r.action.replace(/^add \S+ file /, '')),
  }));
  const stored = new Set(files);
  const ours = (f: string) => log.acknowledged.has(f) || log.refused.has(f) || log.unknown.has(f);
  const perFile = new Map<string, number>();
  for (const f of journal) perFile.set(f, (perFile.get(f) ?? 0) + 1);
  let duplicated = files.length - stored.size;
  for (const n of perFile.values()) if (n > 1) duplicated += n - 1;
  return {
    stored: [...stored].filter(ours).length,
    lost: [...log.acknowledged].filter((f) => !stored.has(f)).length,
    duplicated,
  };
}

export function invariants(r: { lost: number; duplicated: number; proxyAlive: boolean }): string[] {
  const broken: string[] = [];
  if (r.lost > 0) broken.push(`${r.lost} acknowledged writes lost`);
  if (r.duplicated > 0) broken.push(`${r.duplicated} writes duplicated`);
  if (!r.proxyAlive) broken.push('the proxy process exited');
  return broken;
}

export function failed(e: ReadEvent): boolean {
  return e.status === 0 || e.status >= 500;
}

/**
 * The failed reads among `events`, grouped by what went wrong, for the broken invariant's message:
 * `json.project 503 "503 Service Unavailable: …" after 3 ms ×2, sent 40 ms after the fault`.
 */
export function describeFailures(events: readonly ReadEvent[], t0: number): string {
  const groups = new Map<string, { n: number; first: number }>();
  for (const e of events.filter(failed)) {
    const key = `${e.route} ${e.status === 0 ? 'no answer' : e.status}${e.detail ? ` "${e.detail}"` : ''} after ${e.ms} ms`;
    const g = groups.get(key) ?? { n: 0, first: e.at - t0 };
    g.n++;
    groups.set(key, g);
  }
  return [...groups]
    .slice(0, 4)
    .map(([key, g]) => `${key}${g.n > 1 ? ` ×${g.n}` : ''}, sent ${g.first} ms after the fault`)
    .join('; ');
}

/** Milliseconds from the fault to the first answer legacy gave on a fallback route. */
function firstFallback(events: readonly ReadEvent[], t0: number): number | null {
  const first = events
    .filter((e) => e.at >= t0 && e.fromLegacy && FALLBACK_ROUTES.has(e.route) && e.status === 200)
    .reduce<number | null>((min, e) => (min === null || e.at < min ? e.at : min), null);
  return first === null ? null : first - t0;
}

export function proxyServed(ctx: ChaosContext, pidBefore: number | null | undefined, outputFrom: number): boolean {
  const now = ctx.stack.current().pids['proxy'];
  return !!pidBefore && now === pidBefore && !/\bproxy \(pid \d+\) died/.test(ctx.stack.output().slice(outputFrom));
}

/** Every process of the stack is up, the proxy is ready, and the primary takes queries. */
export async function healthy(ctx: ChaosContext): Promise<void> {
  await waitFor(
    'the whole stack to be up',
    async () => {
      const s = ctx.stack.current();
      if (Object.values(s.pids).some((p) => !p)) return false;
      const ready = await fetch(`${s.admin}/readyz`, { signal: AbortSignal.timeout(2_000) }).then(
        (r) => r.status === 200,
        () => false,
      );
      return (
        ready &&
        (await everyEndpointTaking(ctx)) &&
        withPrimary(ctx, async (c) => (await c.query('SELECT 1')).rowCount === 1).catch(() => false)
      );
    },
    90_000,
  );
}

/** Whether the proxy takes requests to every endpoint of every service again: one scenario's ejections must not bleed into the next. */
async function everyEndpointTaking(ctx: ChaosContext): Promise<boolean> {
  const s = ctx.stack.current();
  const res = await fetch(`${s.admin}/api/upstreams`, {
    headers: { authorization: `Bearer ${s.adminToken}` },
    signal: AbortSignal.timeout(2_000),
  }).catch(() => undefined);
  if (res?.status !== 200) return false;
  const { upstreams } = (await res.json()) as { upstreams: { endpoints: { state: string }[] }[] };
  return upstreams.every((u) => u.endpoints.every((e) => e.state === 'healthy' || e.state === 'slow-start'));
}

async function fallbackCount(ctx: ChaosContext): Promise<number> {
  const text = await (await fetch(`${ctx.stack.current().admin}/metrics`)).text();
  return [...text.matchAll(/^banyan_proxy_fallbacks_total\{[^}]*\} (\d+)/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
}

/** Sets a route's mode (and a canary's percent) through the admin API, as an operator would. */
export async function setMode(ctx: ChaosContext, route: string, mode: string, reason: string, percent?: number): Promise<void> {
  const s = ctx.stack.current();
  const res = await fetch(`${s.admin}/api/routes/${route}/mode`, {
    method: 'POST',
    headers: { authorization: `Bearer ${s.adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ mode, reason, actor: 'chaos', ...(percent === undefined ? {} : { percent }) }),
  });
  if (res.status !== 200) throw new Error(`setting ${route} to ${mode}: ${res.status} ${await res.text()}`);
}

/** Retires the old project pages, then sends targets that would reach them through a lax normalizer. */
async function pathTricks(ctx: ChaosContext): Promise<ChaosRow> {
  const p = ctx.project;
  const tricks = [
    `/a/../pypi/${p}`,
    `/pypi/./${p}`,
    `/a/%2e%2e/pypi/${p}`,
    `/a/%2E%2E/pypi/${p}`,
    `//pypi/${p}`,
    `/pypi//${p}`,
    `/%70ypi/${p}`,
    `/pypi/x/../${p}`,
    `/pypi\\${p}`,
    `/pypi%2f${p}`,
    `/pypi%5c${p}`,
    `/pypi/${p}%00`,
    `/pypi/%zz${p}`,
    `http://x/pypi/${p}`,
    `/./pypi/${p}`,
    `/pypi/%2e/${p}`,
  ];
  const outputFrom = ctx.stack.output().length;
  const pidBefore = ctx.stack.current().pids['proxy'];
  await setMode(ctx, 'legacy.project', 'retired', 'chaos: path tricks');
  const through: string[] = [];
  try {
    await sleep(500);
    for (const target of tricks) {
      const status = await rawStatus(ctx.stack.current().proxy, `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      if (status !== 410 && status !== 400) through.push(`${target} → ${status}`);
    }
  } finally {
    await setMode(ctx, 'legacy.project', 'legacy', 'chaos: path tricks over');
  }
  const proxyAlive = proxyServed(ctx, pidBefore, outputFrom);
  const broken = through.map((t) => `reached legacy: ${t}`);
  if (!proxyAlive) broken.push('the proxy process exited');
  return {
    scenario: 'attacks: path tricks on a retired route',
    requests: tricks.length,
    failures: through.length,
    fallbacks: 0,
    firstFallbackMs: null,
    writesSent: 0,
    writesAcknowledged: 0,
    stored: 0,
    lost: 0,
    duplicated: 0,
    proxyAlive,
    broken,
    notes: 'each got 410 (retired) or 400 (ambiguous)',
  };
}

/** 1,000 anonymous XML-RPC calls with junk method names, then real ones: the real ones must keep their names. */
async function poisoning(ctx: ChaosContext): Promise<ChaosRow> {
  const s = ctx.stack.current();
  const outputFrom = ctx.stack.output().length;
  const call = (method: string) =>
    fetch(`${s.proxy}/pypi`, {
      method: 'POST',
      headers: { 'content-type': 'text/xml' },
      body: `<?xml version="1.0"?><methodCall><methodName>${method}</methodName><params></params></methodCall>`,
    }).then((r) => r.arrayBuffer());
  const count = async () => {
    const text = await (await fetch(`${s.admin}/metrics`)).text();
    return Number(/^banyan_legacy_feature_requests_total\{[^}]*feature="xmlrpc\.list_packages"[^}]*\} (\d+)/m.exec(text)?.[1] ?? 0);
  };
  const before = await count();
  for (let i = 0; i < 1_000; i += 50) await Promise.all(Array.from({ length: 50 }, (_, j) => call(`junk_${process.pid}_${i + j}`)));
  for (let i = 0; i < 20; i++) await call('list_packages');
  const seen = (await count()) - before;
  const proxyAlive = proxyServed(ctx, s.pids['proxy'], outputFrom);
  const broken = seen === 20 ? [] : [`20 real list_packages calls, ${seen} counted under their name`];
  if (!proxyAlive) broken.push('the proxy process exited');
  return {
    scenario: 'attacks: usage poisoning',
    requests: 1_020,
    failures: 20 - seen,
    fallbacks: 0,
    firstFallbackMs: null,
    writesSent: 0,
    writesAcknowledged: 0,
    stored: 0,
    lost: 0,
    duplicated: 0,
    proxyAlive,
    broken,
    notes: `1,000 junk method names, then 20 real calls: ${seen} counted as xmlrpc.list_packages`,
  };
}

/** Sends raw bytes (no client library normalizes them) and returns the status code (0: no answer). */
function rawStatus(url: string, request: string): Promise<number> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connectSocket({ host: hostname, port: Number(port) });
    let data = '';
    socket.setTimeout(5_000, () => {
      socket.destroy();
      resolve(0);
    });
    socket.on('data', (d) => {
      data += d;
      if (data.includes('\r\n')) {
        socket.destroy();
        resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0));
      }
    });
    socket.on('error', () => resolve(0));
    socket.on('end', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0)));
    socket.write(request);
  });
}

export async function withPrimary<T>(ctx: ChaosContext, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: ctx.stack.current().primary, connectionTimeoutMillis: 2_000, statement_timeout: 5_000 });
  client.on('error', () => {});
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(100);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
