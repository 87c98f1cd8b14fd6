import { expect } from 'chai';
import type { ReadSettings } from '../lib/config.js';
import { DEFAULT_ROUTES_FILE, readRoutesFile, type TableSpec } from '../routing/table/index.js';
import { startBackends, type Backends } from '../stack/local-stack.js';
import type { ExtraReplica } from '../stack/postgres-cluster.js';
import { freePort } from '../stack/ports.js';
import { basicAuth, newUploader } from './support/packages.js';
import { setRoutes, TEST_SECRET } from './support/proxy.js';
import { services, waitForReplay, withClient } from './support/services.js';
import { waitUntil } from './support/wait.js';

/** Reads round-robin over both replicas; a paused one is far behind in time, so lag limits must not hide it. */
const READS: ReadSettings = {
  monitorIntervalMs: 50,
  fenceWaitMs: 0,
  maxLagSeconds: 3_600,
  maxLagBytes: 1024 * 1024 * 1024,
  maxPrimaryReads: undefined,
  choice: 'round-robin',
  resolveEveryMs: 0,
};

describe('monotonic reads (BANYAN_READ_CONSISTENCY=monotonic) across two replicas with different lag', () => {
  let second: ExtraReplica;
  let backends: Backends;
  let project: string;

  before(async function () {
    this.timeout(120_000);
    const s = await services();
    await setRoutes(s, readRoutesFile(DEFAULT_ROUTES_FILE) as TableSpec, 'monotonic reads: shipped routes');
    second = await s.cluster.addReplica(`mono-${process.pid}`);
    // No resource fences (Redis unreachable, skipped): the session's pin is all that orders its reads.
    backends = await startBackends(
      { primaryUrl: s.primaryUrl, replicaUrls: [s.replicaUrls[0]!, second.url] },
      {
        adminToken: 't',
        secret: TEST_SECRET,
        redisUrl: `redis://127.0.0.1:${await freePort()}`,
        fencesWhenDown: 'skip',
        projectsPerHour: 100_000,
        debugHeaders: true,
        readConsistency: 'monotonic',
        reads: READS,
      },
    );
    await waitUntil(
      'the second replica streams',
      async () => (await withClient(second.url, (c) => c.query('SELECT pg_last_wal_replay_lsn() IS NOT NULL AS ok'))).rows[0].ok as boolean,
      30_000,
    );
    // The second replica stops replaying: it keeps answering, with the state from before the write below.
    await withClient(second.url, (c) => c.query('SELECT pg_wal_replay_pause()'));
    const uploader = await newUploader(s.primaryUrl);
    project = `mono-${process.pid}`;
    const w = await fetch(`${backends.urls.proxy}/manage/projects`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: basicAuth('__token__', uploader.token) },
      body: JSON.stringify({ name: project }),
    });
    expect(w.status, await w.text()).to.equal(201);
    await waitForReplay(s);
    // Until the router's monitor has seen replica-1 replay the write, a read there could be sent to the primary.
    await waitUntil('replica-1 serves the project', async () => (await read(`/pypi/${project}/json`, {})).from === 'replica-1', 30_000);
  });

  after(async () => {
    await backends?.stop();
    await second?.stop();
  });

  async function read(path: string, headers: Record<string, string>) {
    const res = await fetch(`${backends.urls.proxy}${path}`, { headers });
    await res.text();
    for (const internal of ['x-banyan-read-lsn', 'x-banyan-read-timeline', 'x-banyan-write-lsn'])
      expect(res.headers.get(internal), internal).to.equal(null);
    return {
      status: res.status,
      from: res.headers.get('x-banyan-read-from') ?? res.headers.get('x-legacy-read-from'),
      pin: res.headers.get('set-cookie')?.split(';')[0],
    };
  }

  it('without a pin kept, reads flip between the new state (replica-1) and the old one (paused replica-2)', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 20 && seen.size < 2; i++) {
      const r = await read(`/pypi/${project}/json`, {});
      seen.add(`${r.from}: ${r.status}`);
    }
    expect([...seen].sort()).to.deep.equal(['replica-1: 200', 'replica-2: 404']);
  });

  it('a session that keeps its pin never reads older than it has read, through the new app and legacy alike', async () => {
    let cookie: string | undefined;
    const statuses: number[] = [];
    const servers = new Set<string>();
    for (let i = 0; i < 40; i++) {
      // The new app's JSON API and legacy's old page, turn about: both report where they read.
      const r = await read(i % 2 ? `/pypi/${project}` : `/pypi/${project}/json`, cookie ? { cookie } : {});
      if (r.pin) cookie = r.pin;
      statuses.push(r.status);
      servers.add(r.from ?? 'none');
    }
    const first = statuses.indexOf(200);
    // Until a read lands on replica-1 the session may see the old state; from then on, never again.
    expect(first, `statuses: ${statuses.join(' ')}`).to.be.within(0, 20);
    expect(statuses.slice(first), `once the project is seen, it is always seen: ${statuses.join(' ')}`).to.not.include(404);
    expect(servers, 'replica-1 has the project and serves the session').to.include('replica-1');
    expect(cookie, 'the pin stays small').to.have.length.below(120);
  });

  it('a read that saw only the old state raises the pin no further than that: the next read may be on either replica', async () => {
    let r = await read(`/pypi/${project}/json`, {});
    while (r.from !== 'replica-2') r = await read(`/pypi/${project}/json`, {});
    expect(r.status).to.equal(404);
    expect(r.pin, "a pin at the paused replica's position").to.match(/^banyan_pin=v1\./);
    const next = new Set<string>();
    for (let i = 0; i < 6; i++) next.add(`${(await read(`/pypi/${project}/json`, { cookie: r.pin! })).from}`);
    expect([...next].sort()).to.deep.equal(['replica-1', 'replica-2']);
  });
});
