import { expect } from 'chai';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildWheel } from '../chaos/wheel.js';
import type { StackFile } from '../lib/config.js';
import { isAlive } from '../lib/processes.js';
import { newSession, SESSION_COOKIE } from '../proxy/canary-session.js';
import { shadowSampled } from '../proxy/shadow.js';
import type { EndpointSnapshot, UpstreamSnapshot } from '../proxy/upstreams/index.js';
import { runBanyan, runBanyanAsync, startStack, stopStack, type StartedStack } from './support/cli.js';
import { basicAuth } from './support/packages.js';
import { tempDir, withClient } from './support/services.js';
import { waitUntil } from './support/wait.js';

/** What `Banyan-Route` (BANYAN_DEBUG_HEADERS=on) says about an answer. */
interface RouteHeader {
  route: string;
  mode: string;
  backend: string;
  service: string;
}

/** One answer as a user sees it: its status, who answered (Banyan-Route), and the body; status 0 for a network error or a hang. */
interface Answer {
  status: number;
  route: RouteHeader | undefined;
  body: string;
  error?: string;
}

/** How long the supervisor waits before restarting a dead component (BANYAN_RESTART_DELAY): enough to watch it down. */
const RESTART_DELAY_MS = 2_000;
/** No single request of this file may take longer than this: a hang is a failure, not a wait. */
const REQUEST_TIMEOUT_MS = 10_000;

function parseRoute(value: string | null): RouteHeader | undefined {
  if (!value) return undefined;
  const [route, ...rest] = value.split(';').map((s) => s.trim());
  const fields = Object.fromEntries(rest.map((kv) => kv.split('=') as [string, string]));
  return { route: route!, mode: fields['mode'] ?? '', backend: fields['backend'] ?? '', service: fields['service'] ?? '' };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The services of the proxy as an operator meets them on `npm start`: two
 * app instances behind the proxy, one SIGKILLed under load (safe requests
 * retried on the other, writes never replayed), its return in slow start,
 * every instance dead (fallback to legacy, writes refused naming the
 * service), routes by header and to the files service, and a sampled shadow.
 */
describe('services on npm start: two app instances, retries, slow start, fallback, header routes, files, sampled shadow', function () {
  this.timeout(60_000);
  let cwd: string;
  let stack: StartedStack;
  let proxy: string;
  let admin: string;
  let adminToken: string;
  let token: string;
  const project = `svc-journey-${process.pid}`;

  const banyan = (...args: string[]) => runBanyanAsync(args, { cwd });

  before(async function () {
    this.timeout(120_000);
    cwd = tempDir('banyan-services-');
    stack = await startStack(cwd, ['--app-instances', '2'], {
      BANYAN_DEBUG_HEADERS: 'on',
      BANYAN_RESTART_DELAY: `${RESTART_DELAY_MS}ms`,
      BANYAN_USAGE_FLUSH: '1h',
    });
    proxy = stack.stack.proxy;
    admin = stack.stack['admin'] as string;
    adminToken = stack.stack['adminToken'] as string;
    const user = runBanyan(['users', 'add', 'svc', '--email', 'svc@example.org'], { cwd, input: 'a long services password\n' });
    expect(user.status, user.stderr).to.equal(0);
    const created = runBanyan(['tokens', 'create', 'svc'], { cwd });
    expect(created.status, created.stderr).to.equal(0);
    token = created.stdout.trim().split('\n').pop()!.trim();
    expect(token).to.match(/^banyan-/);
    // One release to read and download all along.
    const first = await upload('1.0');
    expect(first.status, first.body).to.equal(200);
    await waitUntil('the release is readable through the proxy', async () => (await get(`/pypi/${project}/json`)).status === 200, 10_000);
  });

  after(async function () {
    this.timeout(60_000);
    await stopStack(stack, cwd);
  });

  // ---- helpers: requests as a user sends them, and what the admin API says ----

  async function get(path: string, headers: Record<string, string> = {}): Promise<Answer> {
    try {
      const res = await fetch(`${proxy}${path}`, { headers, redirect: 'manual', signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      const body = await res.text();
      return { status: res.status, route: parseRoute(res.headers.get('banyan-route')), body };
    } catch (err) {
      return { status: 0, route: undefined, body: '', error: (err as Error).message };
    }
  }

  /** The multipart body twine sends for a small wheel of `project` `version`. */
  async function uploadBody(version: string): Promise<{ bytes: Buffer; contentType: string; sha256: string; filename: string }> {
    const wheel = buildWheel(project, version, randomBytes(512));
    const sha256 = createHash('sha256').update(wheel.bytes).digest('hex');
    const form = new FormData();
    for (const [k, v] of Object.entries({
      ':action': 'file_upload',
      protocol_version: '1',
      name: project,
      version,
      filetype: 'bdist_wheel',
      pyversion: 'py3',
      metadata_version: '2.1',
      summary: 'services journey',
      sha256_digest: sha256,
    }))
      form.append(k, v);
    form.append('content', new Blob([wheel.bytes]), wheel.filename);
    const encoded = new Request('http://x/', { method: 'POST', body: form });
    return {
      bytes: Buffer.from(await encoded.arrayBuffer()),
      contentType: encoded.headers.get('content-type')!,
      sha256,
      filename: wheel.filename,
    };
  }

  /** An upload through the proxy, sent at once. */
  async function upload(version: string): Promise<Answer> {
    const { bytes, contentType } = await uploadBody(version);
    try {
      const res = await fetch(`${proxy}/legacy/`, {
        method: 'POST',
        body: bytes,
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        headers: { 'content-type': contentType, authorization: basicAuth('__token__', token) },
      });
      return { status: res.status, route: parseRoute(res.headers.get('banyan-route')), body: await res.text() };
    } catch (err) {
      return { status: 0, route: undefined, body: '', error: (err as Error).message };
    }
  }

  /** An upload whose body goes out in `pieces` over `pieces × gapMs`, so it is in flight when something dies. */
  async function slowUpload(version: string, pieces: number, gapMs: number): Promise<Answer> {
    const { bytes, contentType } = await uploadBody(version);
    return new Promise((resolve) => {
      let settled = false;
      const done = (a: Answer) => {
        if (!settled) {
          settled = true;
          clearTimeout(timer);
          resolve(a);
        }
      };
      const req = httpRequest(
        `${proxy}/legacy/`,
        {
          method: 'POST',
          headers: { 'content-type': contentType, 'content-length': bytes.length, authorization: basicAuth('__token__', token) },
        },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d) => {
            body += d;
          });
          res.on('end', () =>
            done({ status: res.statusCode ?? 0, route: parseRoute((res.headers['banyan-route'] as string | undefined) ?? null), body }),
          );
          res.on('error', (err) => done({ status: 0, route: undefined, body, error: err.message }));
        },
      );
      const timer = setTimeout(() => {
        req.destroy();
        done({ status: 0, route: undefined, body: '', error: 'hang' });
      }, REQUEST_TIMEOUT_MS);
      req.on('error', (err) => done({ status: 0, route: undefined, body: '', error: err.message }));
      const size = Math.ceil(bytes.length / pieces);
      void (async () => {
        for (let i = 0; i < pieces && !settled; i++) {
          req.write(bytes.subarray(i * size, (i + 1) * size));
          if (i < pieces - 1) await sleep(gapMs);
        }
        if (!settled) req.end();
      })();
    });
  }

  async function adminGet<T>(path: string): Promise<T> {
    const res = await fetch(`${admin}${path}`, {
      headers: { authorization: `Bearer ${adminToken}` },
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    expect(res.status, `${path}`).to.equal(200);
    return (await res.json()) as T;
  }

  async function service(name: string): Promise<UpstreamSnapshot> {
    const { upstreams } = await adminGet<{ upstreams: UpstreamSnapshot[] }>('/api/upstreams');
    const found = upstreams.find((u) => u.name === name);
    expect(found, `the proxy has a ${name} service`).to.not.equal(undefined);
    return found!;
  }

  async function endpointOf(name: string, url: string): Promise<EndpointSnapshot> {
    const found = (await service(name)).endpoints.find((e) => e.url === url);
    expect(found, `${name} has the endpoint ${url}`).to.not.equal(undefined);
    return found!;
  }

  /** The sum of a counter's samples on the admin /metrics whose labels include `labels`. */
  async function counter(name: string, labels: Record<string, string>): Promise<number> {
    const text = await (await fetch(`${admin}/metrics`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })).text();
    let sum = 0;
    for (const m of text.matchAll(new RegExp(`^${name}\\{([^}]*)\\} (\\S+)$`, 'gm'))) {
      if (Object.entries(labels).every(([k, v]) => m[1]!.includes(`${k}="${v}"`))) sum += Number(m[2]);
    }
    return sum;
  }

  /** stack.json as it is now (the README's `jq -r '.services.app[]'`). */
  function stackFile(): StackFile {
    return JSON.parse(readFileSync(join(cwd, '.banyan', 'stack.json'), 'utf8')) as StackFile;
  }

  /** `concurrency` loops GETting `paths` in turn until `ms` have passed; every answer is kept. */
  async function load(paths: string[], concurrency: number, ms: number): Promise<(Answer & { path: string; at: number })[]> {
    const answers: (Answer & { path: string; at: number })[] = [];
    const end = Date.now() + ms;
    await Promise.all(
      Array.from({ length: concurrency }, async (_, loop) => {
        for (let i = loop; Date.now() < end; i++) {
          const path = paths[i % paths.length]!;
          answers.push({ ...(await get(path)), path, at: Date.now() });
        }
      }),
    );
    return answers;
  }

  /** Applies a table with `banyan routes apply FILE --reason R`, as an operator does. */
  async function applyTable(table: unknown, reason: string): Promise<void> {
    const file = join(cwd, `table-${Date.now()}.json`);
    writeFileSync(file, JSON.stringify(table, null, 2));
    const r = await banyan('routes', 'apply', file, '--reason', reason);
    expect(r.status, `${r.stdout}\n${r.stderr}`).to.equal(0);
  }

  async function exportedTable(): Promise<{ version: number; upstreams: unknown[]; routes: Record<string, unknown>[] }> {
    const r = await banyan('routes', 'list', '--json');
    expect(r.status, r.stderr).to.equal(0);
    return JSON.parse(r.stdout);
  }

  const appUrls = () => stackFile().services!['app']!.map((e) => e.url);

  // ---- the walk ----

  /** `n` calls of `fn`, `concurrency` at a time. */
  async function times<T>(n: number, concurrency: number, fn: (i: number) => Promise<T>): Promise<T[]> {
    const out: T[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < n) {
          const i = next++;
          out[i] = await fn(i);
        }
      }),
    );
    return out;
  }

  const requestsOf = (u: UpstreamSnapshot, url: string) => u.endpoints.find((e) => e.url === url)?.requests ?? 0;
  const show = (a: Answer & { path?: string }) =>
    `${a.path ?? ''} ${a.status} ${a.route ? `${a.route.route} backend=${a.route.backend} service=${a.route.service}` : '(no Banyan-Route)'} ${a.error ?? a.body.slice(0, 160)}`;

  it('1. both app instances get traffic: 400 GETs of /simple/ are split between app-1 and app-2', async () => {
    const urls = appUrls();
    expect(urls, 'two app instances in stack.json').to.have.length(2);
    const before = await service('app');
    expect(before.endpoints.map((e) => e.url).sort(), '/api/upstreams lists both').to.deep.equal([...urls].sort());
    for (const e of before.endpoints) expect(e.state, e.url).to.equal('healthy');
    const answers = await times(400, 8, () => get('/simple/'));
    expect(
      answers.filter((a) => a.status !== 200 || a.route?.service !== 'app' || a.route.backend !== 'new').map(show),
      'answered by the app',
    ).to.deep.equal([]);
    const after = await service('app');
    const split = urls.map((u) => requestsOf(after, u) - requestsOf(before, u));
    console.log(`      split: ${split.map((n, i) => `app-${i + 1} ${n}`).join(', ')}`);
    expect(split[0]! + split[1]!, 'each GET reached exactly one endpoint').to.equal(400);
    for (const [i, n] of split.entries()) expect(n, `app-${i + 1} gets at least a quarter`).to.be.at.least(100);
    // The command line shows the same counters.
    const cli = await banyan('upstreams', 'show', 'app', '--json');
    expect(cli.status, cli.stderr).to.equal(0);
    const shown = JSON.parse(cli.stdout) as UpstreamSnapshot;
    for (const u of urls) expect(requestsOf(shown, u), `banyan upstreams show app: ${u}`).to.be.at.least(requestsOf(after, u));
  });

  let killed: { url: string; pid: number; at: number };

  it('2. SIGKILL of one app instance under load: no GET fails or falls back, uploads get 200 or a clean 503, none replayed', async function () {
    this.timeout(60_000);
    const first = stackFile().services!['app']![0]!;
    expect(first.pid, 'app-1 runs').to.be.a('number');
    const before = await endpointOf('app', first.url);
    const retriesBefore = await counter('banyan_proxy_retries_total', { service: 'app' });
    const gets = load(['/simple/', `/pypi/${project}/json`], 8, 4_000);
    const uploaded: { version: string; answer: Answer; slow: boolean }[] = [];
    const quick = Promise.all(
      [0, 1].map(async (loop) => {
        const end = Date.now() + 4_000;
        for (let i = 0; Date.now() < end; i++) {
          const version = `2.${loop}.${i}`;
          uploaded.push({ version, answer: await upload(version), slow: false });
          await sleep(50);
        }
      }),
    );
    await sleep(500);
    // Four uploads whose bodies are still arriving when the instance dies: some of them go to it.
    const slow = Promise.all(
      [0, 1, 2, 3].map(async (i) => {
        const version = `3.${i}`;
        uploaded.push({ version, answer: await slowUpload(version, 10, 150), slow: true });
      }),
    );
    await sleep(400);
    process.kill(first.pid!, 'SIGKILL');
    killed = { url: first.url, pid: first.pid!, at: Date.now() };
    const answers = await gets;
    await Promise.all([quick, slow]);
    const after = await endpointOf('app', first.url);
    const retries = (await counter('banyan_proxy_retries_total', { service: 'app' })) - retriesBefore;
    const lastRequest = after.lastRequestAt ? Date.parse(after.lastRequestAt) - killed.at : undefined;
    const afterKill = answers.filter((a) => a.at >= killed.at).length;
    const ok = uploaded.filter((u) => u.answer.status === 200);
    const refused = uploaded.filter((u) => u.answer.status === 503);
    console.log(
      `      ${answers.length} GETs (${afterKill} after the kill), ${answers.filter((a) => a.status !== 200).length} failed; ` +
        `the killed endpoint got requests until ${lastRequest} ms after SIGKILL, ${after.failures - before.failures} of them failed, ` +
        `state ${after.state} (ejections ${before.ejections} → ${after.ejections}); retries ${retries}; ` +
        `uploads: ${ok.length} × 200, ${refused.length} × 503 (slow ones: ${uploaded
          .filter((u) => u.slow)
          .map((u) => u.answer.status)
          .join(', ')})`,
    );

    expect(answers.length, 'the load ran').to.be.above(100);
    expect(afterKill, 'GETs were sent after the kill').to.be.above(50);
    expect(
      answers.filter((a) => a.status !== 200 || a.route?.service !== 'app').map(show),
      'every GET answered by the app, none by legacy',
    ).to.deep.equal([]);
    expect(retries, 'GETs that met the dead instance were retried on the other').to.be.at.least(1);
    expect(lastRequest, 'the dead endpoint was taken out within a second').to.be.a('number').and.below(1_000);
    expect(after.state, 'the dead endpoint is out').to.be.oneOf(['ejected', 'unhealthy', 'breaker-open']);
    expect(isAlive(killed.pid)).to.equal(false);

    // Every upload was answered: 200, or 503 saying it was not retried, naming the service.
    const unclean = uploaded.filter(
      (u) => u.answer.status !== 200 && !(u.answer.status === 503 && /app/.test(u.answer.body) && /not retried/.test(u.answer.body)),
    );
    expect(
      unclean.map((u) => `${u.version}: ${show(u.answer)}`),
      'no upload hung, was cut off or got anything else',
    ).to.deep.equal([]);
    expect(ok.length, 'uploads went on succeeding on the other instance').to.be.above(5);
    // Each acknowledged file is stored exactly once. A refused one is in doubt: the instance may have committed it
    // and died before answering, which no proxy can know; but it was sent once, so it is stored at most once.
    const stored = await withClient(
      stack.stack.primary,
      async (c) =>
        (
          await c.query(
            `SELECT r.version, f.filename FROM files f JOIN releases r ON r.id = f.release_id JOIN projects p ON p.id = r.project_id
       WHERE p.normalized_name = $1 AND r.version <> '1.0'`,
            [project],
          )
        ).rows as { version: string; filename: string }[],
    );
    const storedVersions = stored.map((s) => s.version);
    expect(
      ok.map((u) => u.version).filter((v) => !storedVersions.includes(v)),
      'no acknowledged upload is missing',
    ).to.deep.equal([]);
    expect(
      storedVersions.filter((v) => !ok.some((u) => u.version === v) && !refused.some((u) => u.version === v)),
      'nothing stored that was not sent',
    ).to.deep.equal([]);
    expect(storedVersions.length, 'no file stored twice').to.equal(new Set(storedVersions).size);
    // And the JSON API (what pip and users read) lists each acknowledged version with its one file.
    let releases: Record<string, unknown[]> = {};
    await waitUntil(
      'the JSON API shows every acknowledged upload',
      async () => {
        const a = await get(`/pypi/${project}/json`);
        if (a.status !== 200) return false;
        releases = (JSON.parse(a.body) as { releases: Record<string, unknown[]> }).releases;
        return ok.every((u) => releases[u.version] !== undefined);
      },
      15_000,
    );
    for (const u of ok) expect(releases[u.version], u.version).to.have.length(1);
    for (const u of refused)
      expect(releases[u.version]?.length ?? 0, `refused ${u.version} is listed at most once`).to.be.at.most(
        storedVersions.includes(u.version) ? 1 : 0,
      );
  });

  it('3. the restarted instance gets traffic again, gradually (slow start)', async function () {
    this.timeout(60_000);
    await waitUntil(
      'npm start restarts the killed instance',
      async () => {
        const pid = stackFile().services!['app']![0]!.pid;
        return typeof pid === 'number' && pid !== killed.pid;
      },
      RESTART_DELAY_MS + 30_000,
    );
    expect(stackFile().services!['app']![0]!.url, 'it keeps its URL').to.equal(killed.url);
    let back!: EndpointSnapshot;
    await waitUntil(
      'the proxy takes it back',
      async () => {
        back = await endpointOf('app', killed.url);
        return back.state === 'healthy' || back.state === 'slow-start';
      },
      30_000,
    );
    const returned = Date.now() - killed.at;
    const other = appUrls().find((u) => u !== killed.url)!;
    const shares: { killed: number; other: number; weight: number }[] = [];
    let previous = await service('app');
    const sampling = (async () => {
      for (let s = 0; s < 7; s++) {
        await sleep(1_000);
        const now = await service('app');
        shares.push({
          killed: requestsOf(now, killed.url) - requestsOf(previous, killed.url),
          other: requestsOf(now, other) - requestsOf(previous, other),
          weight: now.endpoints.find((e) => e.url === killed.url)!.weight,
        });
        previous = now;
      }
    })();
    const answers = await load(['/simple/'], 8, 7_200);
    await sampling;
    const pct = shares.map((s) => (s.killed + s.other ? Math.round((100 * s.killed) / (s.killed + s.other)) : 0));
    console.log(
      `      back ${(returned / 1000).toFixed(1)} s after SIGKILL in state ${back.state} (weight ${back.weight}); ` +
        `its share per second: ${pct.map((p, i) => `${p} % (w ${shares[i]!.weight})`).join(', ')}`,
    );
    expect(answers.filter((a) => a.status !== 200 || a.route?.service !== 'app').map(show)).to.deep.equal([]);
    expect(
      shares.reduce((n, s) => n + s.killed, 0),
      'it gets traffic again',
    ).to.be.above(0);
    expect(pct[0]!, 'its share in the first second is below a later one').to.be.below(Math.max(...pct.slice(2)));
    expect(pct[0]!, 'it starts well below an even share').to.be.below(40);
  });

  it('4. every app instance dead: safe GETs fall back to legacy, an upload gets 503 naming the app', async function () {
    this.timeout(90_000);
    const pids = stackFile().services!['app']!.map((e) => e.pid);
    for (const pid of pids) expect(pid).to.be.a('number');
    for (const pid of pids) process.kill(pid!, 'SIGKILL');
    const at = Date.now();
    const answers: Answer[] = [];
    for (let i = 0; i < 10; i++) answers.push(await get('/simple/'));
    const refused = await upload('4.0');
    const took = Date.now() - at;
    console.log(
      `      within ${took} ms of SIGKILL: ${answers.filter((a) => a.route?.backend === 'legacy').length}/10 GETs from legacy; upload ${refused.status}: ${refused.body.split('\n')[0]}`,
    );
    expect(took, 'measured before the supervisor could restart anything').to.be.below(RESTART_DELAY_MS);
    expect(
      answers.filter((a) => a.status !== 200 || a.route?.backend !== 'legacy' || a.route.route !== 'simple.index').map(show),
      'legacy answers',
    ).to.deep.equal([]);
    expect(refused.status, show(refused)).to.equal(503);
    expect(refused.body)
      .to.match(/\bapp\b/)
      .and.match(/not retried/);
    // Both come back.
    await waitUntil(
      'npm start restarts both instances',
      async () => stackFile().services!['app']!.every((e) => typeof e.pid === 'number' && !pids.includes(e.pid)),
      40_000,
    );
    await waitUntil(
      'the proxy takes both back',
      async () => (await service('app')).endpoints.every((e) => e.state === 'healthy' || e.state === 'slow-start'),
      40_000,
    );
    console.log(`      both back ${((Date.now() - at) / 1000).toFixed(1)} s after SIGKILL`);
    const again = await get('/simple/');
    expect([again.status, again.route?.service]).to.deep.equal([200, 'app']);
  });

  it('5. a route matched by a header goes to its service; /packages/* moves to the files service', async () => {
    const table = await exportedTable();
    const at = table.routes.findIndex((r) => r['name'] === 'project.page');
    expect(at, 'the shipped table has project.page').to.be.at.least(0);
    // Listed before project.page: with as many conditions (a header here, methods there), the first listed wins.
    table.routes.splice(at, 0, {
      name: 'beta.page',
      match: { path: '/project/:project/', headers: { 'x-beta': '1' } },
      mode: 'new',
      service: 'app',
      fallback: true,
    });
    await applyTable(table, 'beta testers see the new project page');
    await waitUntil(
      'the proxy follows the new table',
      async () => (await get(`/project/${project}/`, { 'x-beta': '1' })).route?.route === 'beta.page',
      5_000,
    );
    for (let i = 0; i < 5; i++) {
      const beta = await get(`/project/${project}/`, { 'x-beta': '1' });
      expect([beta.status, beta.route], show(beta)).to.deep.equal([
        200,
        { route: 'beta.page', mode: 'new', backend: 'new', service: 'app' },
      ]);
      const plain = await get(`/project/${project}/`);
      expect([plain.status, plain.route], show(plain)).to.deep.equal([
        200,
        { route: 'project.page', mode: 'legacy', backend: 'legacy', service: 'legacy' },
      ]);
      const other = await get(`/project/${project}/`, { 'x-beta': '2' });
      expect(other.route?.route, 'another value of the header does not match').to.equal('project.page');
    }

    const set = await banyan('routes', 'set', 'files', '--service', 'files', '--reason', 'downloads from the files service');
    expect(set.status, `${set.stdout}\n${set.stderr}`).to.equal(0);
    const release = JSON.parse((await get(`/pypi/${project}/1.0/json`)).body) as { urls: { url: string; digests: { sha256: string } }[] };
    const file = release.urls[0]!;
    const path = new URL(file.url).pathname;
    expect(path).to.match(/^\/packages\//);
    await waitUntil('the proxy sends downloads to files', async () => (await get(path)).route?.service === 'files', 5_000);
    const res = await fetch(`${proxy}${path}`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    const bytes = Buffer.from(await res.arrayBuffer());
    expect([res.status, parseRoute(res.headers.get('banyan-route'))]).to.deep.equal([
      200,
      { route: 'files', mode: 'new', backend: 'new', service: 'files' },
    ]);
    expect(createHash('sha256').update(bytes).digest('hex'), 'the file as uploaded').to.equal(file.digests.sha256);
    const files = await service('files');
    expect(
      files.endpoints.reduce((n, e) => n + e.requests, 0),
      '/api/upstreams counts it on files',
    ).to.be.at.least(1);
  });

  it('6. shadow.percent 10 copies about 10 % of sessions, always the same ones', async () => {
    const table = await exportedTable();
    table.routes = table.routes.map((r) =>
      r['name'] === 'project.page' ? { ...r, mode: 'shadow', service: 'app', shadow: { percent: 10 } } : r,
    );
    await applyTable(table, 'compare a tenth of sessions');
    await waitUntil('the proxy follows the new table', async () => (await get(`/project/${project}/`)).route?.mode === 'shadow', 5_000);
    await sleep(500);
    type Report = { counts: Record<'match' | 'mismatch' | 'noise' | 'error' | 'skipped', number>; inFlight: number };
    const compared = (c: Report['counts']) => c.match + c.mismatch + c.noise + c.error;
    /** Waits until every copy sent is compared (none in flight: a copy to a slow instance can take the shadow timeout), then returns the counts. */
    const settled = async () => {
      let last: Report | undefined;
      await waitUntil(
        'the shadow copies are compared',
        async () => {
          last = await adminGet<Report>('/api/shadow/project.page');
          if (last.inFlight > 0) await sleep(100);
          return last.inFlight === 0;
        },
        15_000,
      );
      return last!.counts;
    };
    const base = await settled();
    // Sessions the proxy minted would be signed with the stack's secret: hand-made ones are not sessions of its own.
    const secret = readFileSync(join(cwd, '.banyan', 'secret'), 'utf8').trim();
    const sessions = Array.from({ length: 400 }, () => newSession(randomInt(10_000), secret));
    const answers = await times(400, 4, (i) => get(`/project/${project}/`, { cookie: `${SESSION_COOKIE}=${sessions[i]}` }));
    expect(
      answers.filter((a) => a.status !== 200 || a.route?.backend !== 'legacy').map(show),
      'legacy answers every session',
    ).to.deep.equal([]);
    const after = await settled();
    const n = compared(after) - compared(base);
    const expected = sessions.filter((s) => shadowSampled(10, s)).length;
    console.log(
      `      shadow: ${n} of 400 sessions compared (${(n / 4).toFixed(1)} %; ${expected} sampled by their cookie), skipped ${after.skipped - base.skipped}`,
    );
    expect(after.skipped - base.skipped, 'no copy skipped for load').to.equal(0);
    expect(n, 'between 5 % and 15 % of 400').to.be.within(20, 60);
    expect(n, 'exactly the sessions their cookie samples').to.equal(expected);

    // The same session, asked again five times: compared each time, or never.
    const sampled = sessions.filter((s) => shadowSampled(10, s)).slice(0, 3);
    const unsampled = sessions.filter((s) => !shadowSampled(10, s)).slice(0, 3);
    const seen: string[] = [];
    let start = compared(after);
    for (const sid of [...sampled, ...unsampled]) {
      for (let i = 0; i < 5; i++) expect((await get(`/project/${project}/`, { cookie: `${SESSION_COOKIE}=${sid}` })).status).to.equal(200);
      const end = compared(await settled());
      const delta = end - start;
      start = end;
      seen.push(`${sid.split('.')[0]}…:${delta}`);
      expect(delta, `session ${sid}`).to.equal(sampled.includes(sid) ? 5 : 0);
    }
    console.log(`      the same session 5 times, compared: ${seen.join(', ')}`);
  });
});
