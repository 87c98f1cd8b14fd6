import { expect } from 'chai';
import { createServer } from 'node:http';
import { listen } from '../lib/http-server.js';
import { UpstreamSet, type Endpoint, type UpstreamSetOptions } from '../proxy/upstreams/index.js';
import type { UpstreamSpec } from '../routing/table/upstreams.js';
import { freePort } from '../stack/ports.js';
import { fakeBackend, type FakeBackend } from './support/upstreams.js';
import { recorder } from './support/upstream-events.js';
import { waitUntil } from './support/wait.js';

/** One request through `endpoint` as the proxy makes it: begin, send, end with its outcome. */
async function send(endpoint: Endpoint, path = '/'): Promise<number | string> {
  expect(endpoint.begin(), 'the endpoint admits the request').to.equal(true);
  try {
    const res = await endpoint.pool.request({ method: 'GET', path });
    await res.body.dump();
    endpoint.end({ ok: true, status: res.statusCode });
    return res.statusCode;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    endpoint.end({ ok: false, kind: code === 'ECONNREFUSED' ? 'refused' : 'error' });
    return code;
  }
}

describe('upstream health', function () {
  this.timeout(10_000);
  const backends: FakeBackend[] = [];
  let set: UpstreamSet | undefined;

  function start(spec: Omit<UpstreamSpec, 'name'>, options: Partial<UpstreamSetOptions> = {}): UpstreamSet {
    set = new UpstreamSet({ environment: () => undefined, log: () => {}, ...options });
    set.apply([{ name: 'app', ...spec }]);
    return set;
  }

  afterEach(async () => {
    await set?.close();
    set = undefined;
    await Promise.all(backends.splice(0).map((b) => b.close()));
  });

  async function backend(name: string): Promise<FakeBackend> {
    const b = await fakeBackend(name);
    backends.push(b);
    return b;
  }

  describe('active checks', () => {
    it('takes an endpoint out after `unhealthy` failed checks in a row and back after `healthy` passes, in slow start', async () => {
      const b = await backend('app-1');
      let failing = false;
      let checks = 0;
      b.answer('/healthz', (_req, res) => {
        checks++;
        res.writeHead(failing ? 503 : 204).end();
      });
      let checksAtChange = 0;
      const { events, seen } = recorder(() => {
        checksAtChange = checks;
      });
      const app = start(
        {
          endpoints: [b.url],
          health: { path: '/healthz', intervalMs: 50, timeoutMs: 500, unhealthy: 3, healthy: 2 },
          slowStartMs: 1_000,
        },
        { events },
      ).get('app')!;
      const endpoint = app.endpoints[0]!;
      expect(app.snapshot().endpoints[0]!.state, 'endpoints start healthy, before any check').to.equal('healthy');
      expect(app.pick(undefined)).to.equal(endpoint);

      await waitUntil('two checks passed', async () => checks >= 2);
      expect(app.snapshot().endpoints[0]!.lastCheck).to.include({ ok: true, detail: 'GET /healthz answered 204' });
      const before = checks;
      failing = true;
      await waitUntil('it is unhealthy', async () => app.snapshot().endpoints[0]!.state === 'unhealthy');
      expect(checksAtChange - before, 'failed checks that took it out').to.equal(3);
      expect(app.pick(undefined)).to.equal(undefined);
      expect(endpoint.begin(), 'the proxy may still hold it, but it is not picked').to.equal(true);
      endpoint.end({ ok: true, status: 200 });
      const out = app.snapshot().endpoints[0]!;
      expect(out.lastCheck).to.include({ ok: false, detail: 'GET /healthz answered 503' });
      expect(out.ejections).to.equal(1);

      const failed = checks;
      failing = false;
      await waitUntil('it takes requests again', async () => seen.length === 5);
      expect(checksAtChange - failed, 'passes that brought it back').to.equal(2);
      const back = app.snapshot().endpoints[0]!;
      expect(back.state).to.equal('slow-start');
      expect(back.weight).to.be.lessThan(0.5);
      expect(app.pick(undefined)).to.equal(endpoint);
      await waitUntil('slow start is over', async () => app.snapshot().endpoints[0]!.state === 'healthy', 4_000);
      expect(app.snapshot().endpoints[0]!.weight).to.equal(1);
      expect(seen).to.deep.equal([
        `app ${b.url} up`,
        `app ${b.url} breaker closed`,
        `app ${b.url} ejected health`,
        `app ${b.url} down`,
        `app ${b.url} up`,
      ]);
    });

    it('checks each endpoint first at a random point of the first interval, then every interval', async () => {
      const started = Date.now();
      const times: number[][] = [[], [], []];
      const all = await Promise.all(
        [0, 1, 2].map(async (i) => {
          const b = await backend(`app-${i}`);
          b.answer('/healthz', (_req, res) => {
            times[i]!.push(Date.now() - started);
            res.end('ok');
          });
          return b.url;
        }),
      );
      start({ endpoints: all, health: { path: '/healthz', intervalMs: 300 } });
      await waitUntil('each was checked twice', async () => times.every((t) => t.length >= 2));
      for (const [first, second] of times) {
        expect(first, 'the first check').to.be.lessThan(450);
        expect(second! - first!, 'the next, one interval later').to.be.within(280, 450);
      }
    });

    it('fails a check that gets no answer in time or no connection, saying which', async () => {
      const hanging = await backend('hanging');
      hanging.answer('/healthz', () => {});
      const closed = `http://127.0.0.1:${await freePort()}`;
      const app = start({
        endpoints: [hanging.url, closed],
        health: { path: '/healthz', intervalMs: 50, timeoutMs: 100, unhealthy: 2 },
      }).get('app')!;
      await waitUntil('both are unhealthy', async () => app.snapshot().endpoints.every((e) => e.state === 'unhealthy'));
      const [slow, refused] = app.snapshot().endpoints;
      expect(slow!.lastCheck!.detail).to.equal('GET /healthz failed: no answer within 100 ms');
      expect(refused!.lastCheck!.detail).to.match(/^GET \/healthz failed: .*ECONNREFUSED/);
      expect(app.pick(undefined)).to.equal(undefined);
    });

    it('checks on a connection of its own, so a pool full of slow requests does not make an endpoint look dead', async () => {
      const b = await backend('busy');
      let checks = 0;
      b.answer('/healthz', (_req, res) => {
        checks++;
        res.end('ok');
      });
      b.answer('/hang', () => {});
      const app = start(
        { endpoints: [b.url], health: { path: '/healthz', intervalMs: 50, timeoutMs: 100, unhealthy: 2 } },
        { pool: { connections: 1 } },
      ).get('app')!;
      const endpoint = app.endpoints[0]!;
      const stuck = endpoint.pool.request({ method: 'GET', path: '/hang' }).catch(() => undefined);
      await waitUntil('the hanging request arrived', async () => b.seen.some((s) => s.path === '/hang'));
      const at = checks;
      await waitUntil('five more checks passed', async () => checks >= at + 5);
      expect(app.snapshot().endpoints[0]!.state).to.equal('healthy');
      await endpoint.pool.destroy();
      await stuck;
    });
  });

  describe('outlier detection', () => {
    it('ejects an endpoint after `consecutiveFailures` 5xx answers in a row, for `ejectMs`, then ramps it up again', async () => {
      const [b1, b2] = [await backend('app-1'), await backend('app-2')];
      b1.answer('/fail', (_req, res) => {
        res.writeHead(503).end();
      });
      let ejectedAt = 0;
      const { events, seen } = recorder((line) => {
        if (line.endsWith('ejected outlier')) ejectedAt = Date.now();
      });
      const app = start(
        { endpoints: [b1.url, b2.url], outlier: { consecutiveFailures: 3, ejectMs: 200 }, slowStartMs: 1_000 },
        { events },
      ).get('app')!;
      const [e1, e2] = app.endpoints as [Endpoint, Endpoint];

      expect([await send(e1, '/fail'), await send(e1, '/fail'), await send(e1, '/')]).to.deep.equal([503, 503, 200]);
      expect(await send(e1, '/fail')).to.equal(503);
      expect(await send(e1, '/fail')).to.equal(503);
      expect(e1.available(Date.now()), 'a success in between started the count again').to.equal(true);
      expect(await send(e1, '/fail')).to.equal(503);
      const out = app.snapshot().endpoints[0]!;
      expect(out).to.include({ state: 'ejected', ejections: 1, failures: 5, requests: 6, inFlight: 0 });
      expect(out.breaker, 'a 5xx answer is a success for the breaker').to.equal('closed');
      expect(Date.parse(out.ejectedUntil!) - Date.parse(out.ejectedAt!)).to.equal(200);
      for (let i = 0; i < 50; i++) expect(app.pick(undefined)).to.equal(e2);
      expect(seen.slice(4)).to.deep.equal([`app ${b1.url} ejected outlier`, `app ${b1.url} down`]);

      await waitUntil('it comes back', async () => seen.length === 7);
      expect(seen[6]).to.equal(`app ${b1.url} up`);
      expect(Date.now() - ejectedAt).to.be.at.least(195);
      const back = app.snapshot().endpoints[0]!;
      expect(back.state).to.equal('slow-start');
      expect(back.weight).to.be.lessThan(0.5);
      expect(e1.available(Date.now())).to.equal(true);
      await waitUntil('slow start is over', async () => app.snapshot().endpoints[0]!.state === 'healthy', 4_000);
    });

    it('ends an ejection early once `healthy` active checks in a row pass (a restarted instance need not sit it out)', async () => {
      const b = await backend('app-1');
      b.answer('/fail', (_req, res) => {
        res.writeHead(503).end();
      });
      let checks = 0;
      b.answer('/healthz', (_req, res) => {
        checks++;
        res.writeHead(204).end();
      });
      const app = start({
        endpoints: [b.url],
        outlier: { consecutiveFailures: 2, ejectMs: 60_000 },
        health: { path: '/healthz', intervalMs: 50, healthy: 3 },
      }).get('app')!;
      const e = app.endpoints[0]!;
      await send(e, '/fail');
      await send(e, '/fail');
      expect(app.snapshot().endpoints[0]!.state).to.equal('ejected');
      const atEjection = checks;
      await waitUntil('it is back long before its minute is up', async () => app.snapshot().endpoints[0]!.state !== 'ejected', 3_000);
      expect(checks - atEjection, 'after three passing checks, not one').to.be.at.least(3);
      expect(app.snapshot().endpoints[0]!.state).to.equal('healthy');
      expect(e.available(Date.now())).to.equal(true);
    });

    it('is off with `outlier: false`', async () => {
      const b = await backend('app-1');
      b.answer('/fail', (_req, res) => {
        res.writeHead(500).end();
      });
      const app = start({ endpoints: [b.url], outlier: false }).get('app')!;
      for (let i = 0; i < 8; i++) expect(await send(app.endpoints[0]!, '/fail')).to.equal(500);
      expect(app.snapshot().endpoints[0]).to.include({ state: 'healthy', ejections: 0, failures: 8 });
    });
  });

  describe('circuit breaker', () => {
    it("opens an endpoint's breaker on failed connections, lets one trial through after the reset time, and closes on its success, in slow start", async () => {
      const port = await freePort();
      const url = `http://127.0.0.1:${port}`;
      const { events, seen } = recorder();
      const app = start({ endpoints: [url], outlier: false, slowStartMs: 5_000 }, { events, breaker: { resetTimeoutMs: 150 } }).get('app')!;
      expect(app.snapshot().endpoints[0]!.state).to.equal('healthy');
      const endpoint = app.endpoints[0]!;
      for (let i = 0; i < 5; i++) expect(await send(endpoint)).to.equal('ECONNREFUSED');
      expect(app.snapshot().endpoints[0]).to.include({ state: 'breaker-open', breaker: 'open', failures: 5 });
      expect(app.pick(undefined)).to.equal(undefined);
      expect(endpoint.begin()).to.equal(false);

      await waitUntil('the breaker is half-open', async () => endpoint.breakerState === 'half-open');
      expect(app.pick(undefined), 'half-open: available for its one trial').to.equal(endpoint);
      expect(await send(endpoint)).to.equal('ECONNREFUSED');
      expect(endpoint.breakerState, 'a failed trial opens it again').to.equal('open');

      await waitUntil('the breaker is half-open again', async () => endpoint.breakerState === 'half-open');
      const server = await listen(
        createServer((_req, res) => res.end('ok')),
        port,
        '127.0.0.1',
        'test',
        100,
      );
      try {
        expect(endpoint.begin(), 'the trial').to.equal(true);
        expect(endpoint.available(Date.now()), 'no second request while the trial is under way').to.equal(false);
        expect(app.pick(undefined)).to.equal(undefined);
        expect(endpoint.begin()).to.equal(false);
        expect(app.snapshot().endpoints[0]).to.include({ state: 'breaker-open', breaker: 'half-open', inFlight: 1 });
        const res = await endpoint.pool.request({ method: 'GET', path: '/' });
        await res.body.dump();
        endpoint.end({ ok: true, status: res.statusCode });
        expect(app.snapshot().endpoints[0], 'back from an open breaker: slow start').to.include({ state: 'slow-start', breaker: 'closed' });
        expect(app.pick(undefined)).to.equal(endpoint);
      } finally {
        await set!.close();
        await server.close();
      }
      expect(seen).to.deep.equal([
        `app ${url} up`,
        `app ${url} breaker closed`,
        `app ${url} breaker open`,
        `app ${url} down`,
        `app ${url} breaker half-open`,
        `app ${url} up`,
        `app ${url} breaker open`,
        `app ${url} down`,
        `app ${url} breaker half-open`,
        `app ${url} up`,
        `app ${url} breaker closed`,
      ]);
    });
  });
});
