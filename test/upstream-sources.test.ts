import { expect } from 'chai';
import type { LookupAddress } from 'node:dns';
import { lookup } from 'node:dns/promises';
import { createServer, type Server } from 'node:http';
import { listen, type Listening } from '../lib/http-server.js';
import { endpointUrlProblem, parseEndpointList, UpstreamSet, type Lookup } from '../proxy/upstreams/index.js';
import { freePort } from '../stack/ports.js';
import { recorder } from './support/upstream-events.js';
import { waitUntil } from './support/wait.js';

/** A server that answers with the address it listens on, so a test can tell which endpoint served. */
function whoAmI(): Server {
  return createServer((req, res) => res.end(req.socket.localAddress));
}

/** Whether this machine can listen on the IPv6 loopback. */
async function ipv6Loopback(): Promise<boolean> {
  try {
    await (await listen(whoAmI(), 0, '::1', 'test', 50)).close();
    return true;
  } catch {
    return false;
  }
}

async function get(set: UpstreamSet, url: string): Promise<string> {
  const endpoint = set.get('app')!.endpoints.find((e) => e.url === url)!;
  const res = await endpoint.pool.request({ method: 'GET', path: '/' });
  return await res.body.text();
}

describe('upstream sources', function () {
  this.timeout(10_000);
  let set: UpstreamSet | undefined;
  const servers: Listening[] = [];

  afterEach(async () => {
    await set?.close();
    set = undefined;
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });

  describe('dns', () => {
    it('makes each address the system resolver gives for localhost an endpoint (::1 and 127.0.0.1 where the hosts file has both)', async () => {
      const port = await freePort();
      const answer = await lookup('localhost', { all: true });
      const usable = await ipv6Loopback();
      for (const a of answer) if (a.family === 4 || usable) servers.push(await listen(whoAmI(), port, a.address, 'test', 50));
      const expected = [
        ...new Set(answer.map((a) => (a.family === 6 ? `http://[${a.address}]:${port}` : `http://${a.address}:${port}`))),
      ].sort();

      set = new UpstreamSet({ environment: () => undefined, log: () => {} });
      set.apply([{ name: 'app', dns: `http://localhost:${port}`, resolveEveryMs: 100 }]);
      await set.settled();
      const [snapshot] = set.snapshot();
      expect(snapshot!.source).to.equal(`dns http://localhost:${port} every 100 ms`);
      expect(snapshot!.problem).to.equal(undefined);
      expect(snapshot!.endpoints.map((e) => e.url)).to.deep.equal(expected);
      expect(expected, 'localhost has an IPv4 address everywhere').to.include(`http://127.0.0.1:${port}`);
      expect(await get(set, `http://127.0.0.1:${port}`)).to.equal('127.0.0.1');
      if (usable && expected.includes(`http://[::1]:${port}`)) expect(await get(set, `http://[::1]:${port}`)).to.equal('::1');
    });

    it('brackets IPv6 addresses in endpoint URLs, and requests reach them', async function () {
      if (!(await ipv6Loopback())) this.skip();
      const port = await freePort();
      servers.push(await listen(whoAmI(), port, '127.0.0.1', 'test', 50), await listen(whoAmI(), port, '::1', 'test', 50));
      const answers: LookupAddress[] = [
        { address: '::1', family: 6 },
        { address: '127.0.0.1', family: 4 },
      ];
      set = new UpstreamSet({ environment: () => undefined, log: () => {}, lookup: async () => answers });
      set.apply([{ name: 'app', dns: `http://localhost:${port}` }]);
      await set.settled();
      expect(set.get('app')!.endpoints.map((e) => e.url)).to.deep.equal([`http://127.0.0.1:${port}`, `http://[::1]:${port}`]);
      expect(await get(set, `http://[::1]:${port}`)).to.equal('::1');
      expect(await get(set, `http://127.0.0.1:${port}`)).to.equal('127.0.0.1');
    });

    it('resolves again and again: keeps the endpoints when a lookup fails, adds new addresses in slow start, drains gone ones', async () => {
      const pending: { host: string; resolve: (a: LookupAddress[]) => void; reject: (e: Error) => void }[] = [];
      const answerLater: Lookup = (host) =>
        new Promise((resolve, reject) => {
          pending.push({ host, resolve, reject });
        });
      const { events, seen } = recorder();
      set = new UpstreamSet({ environment: () => undefined, log: () => {}, lookup: answerLater, events });
      set.apply([{ name: 'app', dns: 'http://app.internal:8081', resolveEveryMs: 50, slowStartMs: 10_000 }]);
      const app = set.get('app')!;
      expect(app.snapshot()).to.deep.include({ endpoints: [], problem: 'DNS lookup of app.internal has not answered yet; no endpoints' });
      expect(pending.map((p) => p.host)).to.deep.equal(['app.internal']);

      pending[0]!.resolve([
        { address: '10.0.0.2', family: 4 },
        { address: '10.0.0.1', family: 4 },
        { address: '10.0.0.2', family: 4 },
      ]);
      await set.settled();
      let snapshot = app.snapshot();
      expect(snapshot.problem).to.equal(undefined);
      expect(snapshot.endpoints.map((e) => [e.url, e.state, e.weight])).to.deep.equal(
        [
          ['http://10.0.0.1:8081', 'healthy', 1],
          ['http://10.0.0.2:8081', 'healthy', 1],
        ],
        'the first endpoints of an upstream take their full share at once',
      );
      const [gone, kept] = app.endpoints;
      expect(kept!.begin()).to.equal(true);
      kept!.end({ ok: true, status: 200 });

      await waitUntil('it looks up again', async () => pending.length === 2);
      pending[1]!.reject(Object.assign(new Error('getaddrinfo ENOTFOUND app.internal'), { code: 'ENOTFOUND' }));
      await waitUntil('the failure is reported', async () => app.snapshot().problem !== undefined);
      expect(app.snapshot().problem).to.equal('DNS lookup of app.internal failed: ENOTFOUND; keeping 2 endpoints');
      expect(app.endpoints).to.deep.equal([gone, kept]);

      await waitUntil('it looks up once more', async () => pending.length === 3);
      pending[2]!.resolve([
        { address: '10.0.0.3', family: 4 },
        { address: '10.0.0.2', family: 4 },
        { address: 'fd00::1', family: 6 },
      ]);
      await waitUntil('the endpoints changed', async () => app.endpoints.length === 3);
      expect(app.endpoints[0], 'the address that stays keeps its endpoint').to.equal(kept);
      await gone!.closed;
      snapshot = app.snapshot();
      expect(snapshot.problem).to.equal(undefined);
      expect(snapshot.endpoints.map((e) => [e.url, e.state, e.requests])).to.deep.equal([
        ['http://10.0.0.2:8081', 'healthy', 1],
        ['http://10.0.0.3:8081', 'slow-start', 0],
        ['http://[fd00::1]:8081', 'slow-start', 0],
      ]);
      expect(seen.filter((l) => l.includes('removed') || l.endsWith(' up'))).to.deep.equal([
        'app http://10.0.0.1:8081 up',
        'app http://10.0.0.2:8081 up',
        'app http://10.0.0.3:8081 up',
        'app http://[fd00::1]:8081 up',
        'app http://10.0.0.1:8081 removed',
      ]);

      await waitUntil('it looks up yet again', async () => pending.length === 4);
      await set.close();
      pending[3]!.resolve([{ address: '10.0.0.9', family: 4 }]);
      await new Promise((resolve) => setTimeout(resolve, 150));
      expect(pending.length, 'no lookup after close').to.equal(4);
      expect(
        app.endpoints.map((e) => e.url),
        'an answer after close is dropped',
      ).to.not.include('http://10.0.0.9:8081');
    });

    it('keeps the endpoints it has until a new name answers', async () => {
      const pending: { host: string; resolve: (a: LookupAddress[]) => void }[] = [];
      const answerLater: Lookup = (host) =>
        new Promise((resolve) => {
          pending.push({ host, resolve });
        });
      set = new UpstreamSet({ environment: () => undefined, log: () => {}, lookup: answerLater });
      set.apply([{ name: 'app', dns: 'http://old.internal:8081' }]);
      pending[0]!.resolve([{ address: '10.0.0.1', family: 4 }]);
      await set.settled();
      set.apply([{ name: 'app', dns: 'http://new.internal:8081' }]);
      const app = set.get('app')!;
      expect(app.snapshot()).to.deep.include({
        source: 'dns http://new.internal:8081 every 5000 ms',
        problem: 'DNS lookup of new.internal has not answered yet; keeping 1 endpoint',
      });
      expect(app.endpoints.map((e) => e.url)).to.deep.equal(['http://10.0.0.1:8081']);
      pending[1]!.resolve([{ address: '10.0.0.2', family: 4 }]);
      await set.settled();
      expect(app.endpoints.map((e) => e.url)).to.deep.equal(['http://10.0.0.2:8081']);
      expect(pending.map((p) => p.host)).to.deep.equal(['old.internal', 'new.internal']);
    });

    it('reports a dns URL it cannot use, and looks nothing up', async () => {
      let lookups = 0;
      set = new UpstreamSet({
        environment: () => undefined,
        log: () => {},
        lookup: async () => {
          lookups++;
          return [];
        },
      });
      set.apply([{ name: 'app', dns: 'http://app.internal:8081/api' }]);
      await set.settled();
      expect(set.snapshot()[0]).to.deep.include({
        endpoints: [],
        problem: "its dns URL is not valid: http://app.internal:8081/api must not have a path (the proxy forwards each request's own)",
      });
      expect(lookups).to.equal(0);
    });
  });

  describe('env and endpoints', () => {
    it('reads a comma list from the environment, and reports a variable that is unset or not a list of endpoint URLs', () => {
      const environment: Record<string, string> = {
        LEGACY_URL: ' http://127.0.0.1:8080, http://127.0.0.1:8081/ ',
        FILES_URL: 'http://127.0.0.1:1,ftp://files',
      };
      set = new UpstreamSet({ environment: (name) => environment[name], log: () => {} });
      set.apply([
        { name: 'legacy', env: 'LEGACY_URL' },
        { name: 'app', env: 'APP_URL' },
        { name: 'files', env: 'FILES_URL' },
      ]);
      const [legacy, app, files] = set.snapshot();
      expect(legacy).to.deep.include({ source: 'env LEGACY_URL', balance: 'least-request', session: false });
      expect(legacy).to.not.have.property('problem');
      expect(legacy!.endpoints.map((e) => e.url)).to.deep.equal(['http://127.0.0.1:8080', 'http://127.0.0.1:8081']);
      expect(app).to.deep.include({ source: 'env APP_URL', problem: 'APP_URL is not set on this proxy', endpoints: [] });
      expect(set.get('app')!.pick(undefined)).to.equal(undefined);
      expect(files).to.deep.include({
        problem: 'FILES_URL is not a valid endpoint list: entry 2: ftp://files must start with http:// or https://',
        endpoints: [],
      });
    });

    it('takes a fixed list as origins, one endpoint per origin', () => {
      set = new UpstreamSet({ environment: () => undefined, log: () => {} });
      set.apply([{ name: 'app', endpoints: ['http://127.0.0.1:80/', 'http://127.0.0.1', 'HTTP://LOCALHOST:8081'] }]);
      expect(set.snapshot()[0]).to.deep.include({ source: 'endpoints' });
      expect(set.get('app')!.endpoints.map((e) => e.url)).to.deep.equal(['http://127.0.0.1', 'http://localhost:8081']);
    });
  });

  describe('endpoint URLs', () => {
    it('says what is wrong with an endpoint URL', () => {
      expect(endpointUrlProblem('http://127.0.0.1:8081')).to.equal(undefined);
      expect(endpointUrlProblem('https://app.internal/')).to.equal(undefined);
      expect(endpointUrlProblem('http://[::1]:8081')).to.equal(undefined);
      expect(endpointUrlProblem('app.internal:8081')).to.equal('app.internal:8081 must start with http:// or https://');
      expect(endpointUrlProblem('not a url')).to.equal('"not a url" is not a URL');
      expect(endpointUrlProblem('http://u:p@app.internal')).to.equal('http://u:p@app.internal must not carry credentials');
      expect(endpointUrlProblem('http://app.internal/v1')).to.match(/must not have a path/);
      expect(endpointUrlProblem('http://app.internal/?a=1')).to.match(/must not have a query or fragment/);
      expect(endpointUrlProblem('http://app.internal#top')).to.match(/must not have a query or fragment/);
    });

    it('parses a comma list whole, or says which entry is wrong', () => {
      expect(parseEndpointList('http://a:1, http://b:2/,,')).to.deep.equal({ urls: ['http://a:1', 'http://b:2'] });
      expect(parseEndpointList('http://a:1,http://a:1/')).to.deep.equal({ urls: ['http://a:1'] });
      expect(parseEndpointList('http://a:1,http://b:2/x')).to.deep.equal({
        problem: "entry 2: http://b:2/x must not have a path (the proxy forwards each request's own)",
      });
      expect(parseEndpointList(' , ')).to.deep.equal({ problem: 'it names no endpoint URL' });
    });
  });
});
