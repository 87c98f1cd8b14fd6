import { expect } from 'chai';
import type { ServerResponse } from 'node:http';
import { UpstreamSet, type Endpoint } from '../proxy/upstreams/index.js';
import type { UpstreamSpec } from '../routing/table/upstreams.js';
import { fakeBackend, type FakeBackend } from './support/upstreams.js';
import { recorder } from './support/upstream-events.js';
import { waitUntil } from './support/wait.js';

/** One request through `endpoint` as the proxy makes it: begin, send, end with the status. */
async function send(endpoint: Endpoint, path = '/'): Promise<number> {
  expect(endpoint.begin()).to.equal(true);
  const res = await endpoint.pool.request({ method: 'GET', path });
  await res.body.dump();
  endpoint.end({ ok: true, status: res.statusCode });
  return res.statusCode;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('upstream set', function () {
  this.timeout(10_000);
  let b1: FakeBackend;
  let b2: FakeBackend;
  let b3: FakeBackend;
  let set: UpstreamSet | undefined;
  let seen: string[];
  let logged: string[];

  beforeEach(async () => {
    [b1, b2, b3] = [await fakeBackend('b1'), await fakeBackend('b2'), await fakeBackend('b3')];
    const recorded = recorder();
    seen = recorded.seen;
    logged = [];
    set = new UpstreamSet({ environment: () => undefined, log: (line) => logged.push(line), events: recorded.events });
  });

  afterEach(async () => {
    // Together: a pool waits for its requests, which a failed test may have left hanging on a backend.
    await Promise.all([set?.close(), b1.close(), b2.close(), b3.close()]);
    set = undefined;
  });

  const app = (endpoints: string[], more: Partial<UpstreamSpec> = {}): UpstreamSpec => ({
    name: 'app',
    endpoints,
    slowStartMs: 5_000,
    outlier: { consecutiveFailures: 1, ejectMs: 60_000 },
    ...more,
  });

  it('keeps the endpoints that stay as they are, adds new ones in slow start, and drains the removed one once its request ends', async () => {
    let release: (() => void) | undefined;
    b2.answer('/slow', (_req, res: ServerResponse) => {
      release = () => res.end('late');
    });
    b1.answer('/fail', (_req, res) => {
      res.writeHead(502).end();
    });
    set!.apply([app([b1.url, b2.url]), { name: 'legacy', endpoints: [b3.url] }]);
    const upstream = set!.get('app')!;
    const [e1, e2] = upstream.endpoints as [Endpoint, Endpoint];
    expect(await send(e1)).to.equal(200);
    expect(await send(e1, '/fail')).to.equal(502);
    expect(upstream.snapshot().endpoints[0]!.state).to.equal('ejected');
    const slow = send(e2, '/slow');
    await waitUntil('the slow request arrived', async () => release !== undefined);

    set!.apply([app([b1.url, b3.url]), { name: 'legacy', endpoints: [b3.url] }]);
    expect(set!.get('app'), 'the same upstream, changed in place').to.equal(upstream);
    expect(upstream.endpoints[0], 'the endpoint that stays').to.equal(e1);
    const [kept, added, draining] = upstream.snapshot().endpoints;
    expect(kept).to.include({ url: b1.url, state: 'ejected', requests: 2, failures: 1, ejections: 1 });
    expect(added).to.include({ url: b3.url, state: 'slow-start', requests: 0 });
    expect(draining).to.include({ url: b2.url, state: 'draining', inFlight: 1 });
    expect(e2.available(Date.now())).to.equal(false);
    expect(e2.begin(), 'a draining endpoint takes no new request').to.equal(false);
    for (let i = 0; i < 20; i++) expect(upstream.pick(undefined)!.url).to.equal(b3.url);

    let closed = false;
    void e2.closed.then(() => {
      closed = true;
    });
    await sleep(100);
    expect(closed, 'its pool stays open while its request is in flight').to.equal(false);
    release!();
    expect(await slow).to.equal(200);
    await e2.closed;
    await sleep(0);
    expect(
      upstream.snapshot().endpoints.map((e) => e.url),
      'gone once drained',
    ).to.deep.equal([b1.url, b3.url]);
    expect(seen).to.include(`app ${b2.url} removed`);
    expect(seen, 'the upstream left unchanged told nothing').to.not.include(`legacy ${b3.url} removed`);
  });

  it("keeps a drained endpoint's pool open for a request begun and not yet sent (or a tunnel), and close() waits for it", async () => {
    let release: (() => void) | undefined;
    b2.answer('/slow', (_req, res: ServerResponse) => {
      release = () => res.end('late');
    });
    set!.apply([app([b1.url, b2.url])]);
    const [e1, e2] = set!.get('app')!.endpoints as [Endpoint, Endpoint];
    expect(e1.begin()).to.equal(true);
    const slow = send(e2, '/slow');
    await waitUntil('the slow request arrived', async () => release !== undefined);
    set!.apply([app([b3.url])]);
    let closed1 = false;
    let closed2 = false;
    void e1.closed.then(() => {
      closed1 = true;
    });
    void e2.closed.then(() => {
      closed2 = true;
    });
    await sleep(50);
    expect([closed1, closed2]).to.deep.equal([false, false]);
    e1.end({ ok: true, status: 101 });
    await e1.closed;
    setTimeout(() => release!(), 100);
    await set!.close();
    await sleep(0);
    expect(closed2, 'close() waited for the draining pool').to.equal(true);
    expect(await slow).to.equal(200);
  });

  it('keeps an unchanged upstream as it is, even from a spec written in another order', async () => {
    set!.apply([{ name: 'app', endpoints: [b1.url, b2.url], health: { path: '/', intervalMs: 60_000 }, balance: 'round-robin' }]);
    const upstream = set!.get('app')!;
    const endpoints = upstream.endpoints;
    const [events, lines] = [seen.length, logged.length];
    set!.apply([{ balance: 'round-robin', health: { intervalMs: 60_000, path: '/' }, endpoints: [b1.url, b2.url], name: 'app' }]);
    expect(set!.get('app')).to.equal(upstream);
    expect(upstream.endpoints).to.equal(endpoints);
    expect(seen.length).to.equal(events);
    expect(logged.length).to.equal(lines);
  });

  it('takes changed settings on the endpoints it keeps: here the balance', async () => {
    set!.apply([app([b1.url, b2.url])]);
    const upstream = set!.get('app')!;
    const [e1, e2] = upstream.endpoints;
    expect(await send(e1!)).to.equal(200);
    set!.apply([app([b1.url, b2.url], { balance: 'round-robin' })]);
    expect(upstream.endpoints).to.deep.equal([e1, e2]);
    expect(upstream.snapshot()).to.deep.include({ balance: 'round-robin' });
    expect(upstream.snapshot().endpoints[0]!.requests).to.equal(1);
    expect([1, 2, 3, 4].map(() => upstream.pick(undefined))).to.deep.equal([e1, e2, e1, e2]);
  });

  it('keeps a session on its endpoint only for an upstream that keeps sessions', () => {
    set!.apply([
      app([b1.url, b2.url, b3.url], { balance: 'round-robin', session: true }),
      { ...app([b1.url, b2.url, b3.url], { balance: 'round-robin' }), name: 'other' },
    ]);
    const sticky = set!.get('app')!;
    const home = sticky.pick('session-1');
    for (let i = 0; i < 10; i++) expect(sticky.pick('session-1')).to.equal(home);
    expect(sticky.pick('session-1', home), 'a retry goes elsewhere').to.not.equal(home);
    expect(sticky.pick(undefined), 'no key: balanced').to.not.equal(undefined);
    const other = set!.get('other')!;
    expect(new Set([1, 2, 3].map(() => other.pick('session-1'))).size, 'the key is ignored').to.equal(3);
    expect(sticky.snapshot()).to.deep.include({ session: true });
  });

  it('drains an upstream no longer in the specs, and forgets it', async () => {
    set!.apply([app([b1.url, b2.url]), { name: 'legacy', endpoints: [b3.url] }]);
    const gone = set!.get('app')!.endpoints;
    set!.apply([{ name: 'legacy', endpoints: [b3.url] }]);
    expect(set!.get('app')).to.equal(undefined);
    expect(set!.names()).to.deep.equal(['legacy']);
    expect(set!.snapshot().map((u) => u.name)).to.deep.equal(['legacy']);
    await Promise.all(gone.map((e) => e.closed));
    expect(seen).to.include.members([`app ${b1.url} removed`, `app ${b2.url} removed`]);
  });

  it('close() stops every check and resolution and closes every pool', async () => {
    let checks = 0;
    b1.answer('/healthz', (_req, res) => {
      checks++;
      res.end('ok');
    });
    let lookups = 0;
    await set!.close();
    set = new UpstreamSet({
      environment: () => undefined,
      log: () => {},
      lookup: async () => {
        lookups++;
        return [{ address: '127.0.0.1', family: 4 }];
      },
    });
    set.apply([
      { name: 'app', endpoints: [b1.url], health: { path: '/healthz', intervalMs: 50 } },
      { name: 'dns', dns: 'http://localhost:9', resolveEveryMs: 50 },
    ]);
    const endpoints = [...set.get('app')!.endpoints];
    await waitUntil('checks and lookups run', async () => checks >= 2 && lookups >= 2);
    endpoints.push(...set.get('dns')!.endpoints);
    await set.close();
    await Promise.all(endpoints.map((e) => e.closed));
    const [c, l] = [checks, lookups];
    const lastCheck = endpoints[0]!.snapshot(Date.now()).lastCheck;
    await sleep(200);
    expect([checks, lookups]).to.deep.equal([c, l]);
    expect(endpoints[0]!.snapshot(Date.now()).lastCheck, 'no check was even tried').to.deep.equal(lastCheck);
  });
});
