import { expect } from 'chai';
import { signPin } from '../proxy/pin.js';
import { DEFAULT_ROUTES_FILE, readRoutesFile, type TableSpec } from '../routing/table/index.js';
import { startBackends, type Backends } from '../stack/local-stack.js';
import { setRoutes, TEST_SECRET } from './support/proxy.js';
import { freePort } from '../stack/ports.js';
import { basicAuth, newUploader } from './support/packages.js';
import { services, waitForReplay } from './support/services.js';

const DELAY_MS = 2_000;

describe('read-your-writes through the proxy, with a replica 2 s behind', () => {
  let backends: Backends;
  let proxy: string;
  let n = 0;
  let auth: string;

  before(async () => {
    const s = await services();
    const uploader = await newUploader(s.primaryUrl);
    auth = basicAuth('__token__', uploader.token);
    await setRoutes(s, readRoutesFile(DEFAULT_ROUTES_FILE) as TableSpec, 'read-your-writes: shipped routes');
    // Hundreds of projects from one account: the per-account limit on new projects is raised for this test.
    // Debug headers: which database server answered (X-Banyan-Read-From) is what these tests read.
    backends = await startBackends(s, {
      adminToken: 'test-token',
      secret: TEST_SECRET,
      redisUrl: s.redisUrl,
      projectsPerHour: 100_000,
      debugHeaders: true,
    });
    proxy = backends.urls.proxy;
    await s.cluster.setReplicaDelay(DELAY_MS);
  });

  after(async () => {
    const s = await services();
    await s.cluster.setReplicaDelay(0);
    await waitForReplay(s, 10_000);
    await backends?.stop();
  });

  /** Registers a project through `via`; returns its name and the pin cookie the proxy set. */
  async function write(via: 'app' | 'legacy', cookie?: string): Promise<{ name: string; cookie: string }> {
    const name = `ryw-${process.pid}-${++n}`;
    const res =
      via === 'app'
        ? await fetch(`${proxy}/manage/projects`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', authorization: auth, ...(cookie ? { cookie } : {}) },
            body: JSON.stringify({ name }),
          })
        : await fetch(`${proxy}/pypi`, {
            method: 'POST',
            headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: auth, ...(cookie ? { cookie } : {}) },
            body: `:action=submit&name=${name}`,
          });
    expect(res.status, await res.text()).to.be.within(200, 299);
    expect(res.headers.get('x-banyan-write-lsn'), 'the write LSN never reaches the client').to.equal(null);
    const set = res.headers.get('set-cookie') ?? '';
    expect(set).to.match(/^banyan_pin=v2\.[^;]+; Path=\/; Max-Age=30; HttpOnly; SameSite=Lax$/);
    return { name, cookie: set.split(';')[0]! };
  }

  async function read(via: 'app' | 'legacy', name: string, headers: Record<string, string> = {}) {
    // The JSON API: the simple pages may come from the Redis page cache, which reports no DB server.
    const res = await fetch(via === 'app' ? `${proxy}/pypi/${name}/json` : `${proxy}/pypi/${name}`, { headers });
    await res.text();
    return { status: res.status, from: res.headers.get(via === 'app' ? 'x-banyan-read-from' : 'x-legacy-read-from') };
  }

  for (const writer of ['app', 'legacy'] as const) {
    for (const reader of ['app', 'legacy'] as const) {
      it(`a write through ${writer} is seen by the next read through ${reader}, 100 out of 100`, async function () {
        this.timeout(120_000);
        let seen = 0;
        let cookie: string | undefined;
        for (let i = 0; i < 100; i++) {
          const w = await write(writer, cookie);
          cookie = w.cookie;
          const r = await read(reader, w.name, { cookie });
          if (r.status === 200) seen++;
        }
        expect(seen).to.equal(100);
      });
    }
  }

  it('another session, without a pin, sees a legacy write too: legacy honours the project fence', async () => {
    const w = await write('legacy');
    const mine = await read('legacy', w.name, { cookie: w.cookie });
    const theirs = await read('legacy', w.name);
    expect(mine).to.deep.equal({ status: 200, from: 'primary' });
    expect(theirs).to.deep.equal({ status: 200, from: 'primary' });
  });

  it('an anonymous caller cannot register a project through legacy', async () => {
    const name = `anon-${process.pid}`;
    const res = await fetch(`${proxy}/pypi`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `:action=submit&name=${name}`,
    });
    expect(res.status).to.equal(401);
    expect((await fetch(`${backends.urls.legacy}/pypi/${name}`)).status).to.equal(404);
  });

  it("a project's fence makes every client's read of it see the write (twine in one process, pip in another)", async () => {
    const w = await write('app');
    const other = await read('app', w.name);
    expect(other.status, 'a client with no pin sees the new project').to.equal(200);
    expect(other.from).to.equal('primary');
    const index = await fetch(`${proxy}/simple/`);
    expect(await index.text(), 'the project list declares its own fence').to.contain(w.name);
    const unrelated = await fetch(`${proxy}/pypi/unrelated-${process.pid}/json`);
    expect(unrelated.headers.get('x-banyan-read-from'), 'reads of other projects stay on the replica').to.equal('replica-1');
  });

  it('the pinned session goes back to the replica once it has replayed the write (within lag + 200 ms)', async function () {
    this.timeout(20_000);
    const t0 = Date.now();
    const w = await write('legacy');
    let r = await read('app', w.name, { cookie: w.cookie });
    while (r.from !== 'replica-1') {
      if (Date.now() - t0 > 10_000) throw new Error('the pinned session never went back to the replica');
      await new Promise((res) => setTimeout(res, 10));
      r = await read('app', w.name, { cookie: w.cookie });
    }
    const elapsed = Date.now() - t0;
    expect(r.status, 'and the replica has the write').to.equal(200);
    expect(elapsed).to.be.within(DELAY_MS, DELAY_MS + 200 + 150);
  });

  it('ignores tampered and expired cookies and client-sent fences', async () => {
    const w = await write('app');
    const [name, value] = w.cookie.split('=') as [string, string];
    const parts = value.split('.');
    parts[2] = '0/1';
    // An unrelated project has no fence, so only the pin could route its reads to the primary.
    const other = `unrelated-${process.pid}`;
    const tampered = await read('legacy', other, { cookie: `${name}=${parts.join('.')}` });
    expect(tampered).to.deep.equal({ status: 404, from: 'replica-1' });
    const expired = signPin({ id: 'abcdefgh12345678', lsn: 0xffffffffffn, expires: Date.now() - 1 }, TEST_SECRET);
    expect(await read('legacy', other, { cookie: `banyan_pin=${expired}` })).to.deep.equal({ status: 404, from: 'replica-1' });
    const forgedFence = await fetch(`${proxy}/pypi/unrelated-${process.pid}/json`, { headers: { 'x-banyan-min-lsn': 'primary' } });
    expect(forgedFence.headers.get('x-banyan-read-from')).to.equal('replica-1');
    expect(await read('legacy', other, { 'x-banyan-min-lsn': 'FFFF/FFFFFFFF' })).to.deep.equal({ status: 404, from: 'replica-1' });
    const metrics = await (await fetch(`${backends.urls.admin}/metrics`)).text();
    expect(metrics).to.match(/banyan_proxy_pins_total\{event="rejected_forged"\} [1-9]/);
    expect(metrics).to.match(/banyan_proxy_pins_total\{event="rejected_expired"\} [1-9]/);
    expect(metrics).to.match(/banyan_proxy_pins_total\{event="set"\} [1-9]/);
  });

  for (const whenDown of ['skip', 'primary'] as const) {
    it(`with Redis down, fences are skipped, and reads of the resource ${whenDown === 'skip' ? 'stay on the replica' : 'go to the primary'} (BANYAN_FENCES_REDIS_DOWN=${whenDown})`, async () => {
      const s = await services();
      const deaf = await startBackends(s, {
        adminToken: 't',
        secret: TEST_SECRET,
        redisUrl: `redis://127.0.0.1:${await freePort()}`,
        fencesWhenDown: whenDown,
        projectsPerHour: 100_000,
        debugHeaders: true,
      });
      try {
        const name = `fence-down-${whenDown}-${process.pid}`;
        const w = await fetch(`${deaf.urls.proxy}/manage/projects`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: auth },
          body: JSON.stringify({ name }),
        });
        expect(w.status, 'Redis down never fails a write').to.equal(201);
        const r = await fetch(`${deaf.urls.proxy}/simple/${name}/`);
        await r.text();
        expect({ status: r.status, from: r.headers.get('x-banyan-read-from') }).to.deep.equal(
          whenDown === 'skip' ? { status: 404, from: 'replica-1' } : { status: 200, from: 'primary' },
        );
        const metrics = await (await fetch(`${deaf.urls.app}/metrics`)).text();
        expect(metrics, 'operators see the skipped fences').to.match(/^banyan_fences_skipped_total [1-9]/m);
      } finally {
        await deaf.stop();
      }
    });
  }

  it('a client that keeps no cookies gets read-your-writes by sending back the Banyan-Pin header', async () => {
    const s = await services();
    // No fences (Redis unreachable, skipped): the pin is the only thing that makes the read see the write.
    const deaf = await startBackends(s, {
      adminToken: 't',
      secret: TEST_SECRET,
      redisUrl: `redis://127.0.0.1:${await freePort()}`,
      fencesWhenDown: 'skip',
      projectsPerHour: 100_000,
      debugHeaders: true,
    });
    try {
      const name = `header-pin-${process.pid}`;
      const w = await fetch(`${deaf.urls.proxy}/manage/projects`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: auth },
        body: JSON.stringify({ name }),
      });
      expect(w.status).to.equal(201);
      const pin = w.headers.get('banyan-pin');
      expect(pin, 'the pin comes as a header too').to.match(/^v2\./);
      expect(w.headers.get('set-cookie')).to.contain(`banyan_pin=${pin}`);
      const read = async (headers: Record<string, string>) => {
        const r = await fetch(`${deaf.urls.proxy}/pypi/${name}/json`, { headers });
        await r.text();
        return r.status;
      };
      expect(await read({}), 'without it, the replica 2 s behind has not seen the write').to.equal(404);
      expect(await read({ 'banyan-pin': pin! }), 'with it, the read sees the write').to.equal(200);
      expect(await read({ 'banyan-pin': `${pin!.slice(0, -2)}xx` }), 'a tampered one is ignored').to.equal(404);
    } finally {
      await deaf.stop();
    }
  });
});
