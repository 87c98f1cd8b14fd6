import { expect } from 'chai';
import type { ProxyRuntime } from '../proxy/runtime.js';
import type { Route } from '../routing/table/index.js';
import { setRoutes, startTestProxy } from './support/proxy.js';
import { services, withClient } from './support/services.js';
import { fakeBackend, type FakeBackend } from './support/upstreams.js';

const KNOWN = ['search', 'list_packages', 'package_releases'];
const ROUTES: Route[] = [
  { name: 'poison.xmlrpc', match: { path: '/rpc' }, mode: 'legacy', features: [{ xmlrpc: true, known: KNOWN }] },
  { name: 'poison.other', match: { path: '/other' }, mode: 'legacy', features: [{ query: ':action' }] },
];

const call = (method: string) => `<?xml version="1.0"?><methodCall><methodName>${method}</methodName><params></params></methodCall>`;

/** Junk feature names from anonymous callers cannot push real features out of the evidence. */
describe('usage evidence cannot be poisoned by junk feature names', () => {
  let legacy: FakeBackend;
  let proxy: ProxyRuntime | undefined;

  before(async () => {
    const s = await services();
    await setRoutes(s, ROUTES, 'poisoning test');
    legacy = await fakeBackend('legacy');
    proxy = await startTestProxy(s, legacy.url, legacy.url, { pollMs: 200 });
  });

  after(async () => {
    await proxy?.stop();
    await legacy?.close();
  });

  it('counts a request whose client gave up before the answer (499), so use is not hidden by impatience', async function () {
    this.timeout(20_000);
    legacy.answer('/slow', (_req, res) => {
      setTimeout(() => {
        res.writeHead(200);
        res.end('late');
      }, 1_500);
    });
    const url = proxy!.adminUrl;
    const count = async () =>
      Number(
        /^banyan_http_requests_total\{route="legacy\.unmatched",backend="legacy",service="legacy",method="GET",status_class="4xx"\} (\d+)/m.exec(
          await (await fetch(`${url}/metrics`)).text(),
        )?.[1] ?? 0,
      );
    const before = await count();
    await fetch(`${proxy!.url}/slow`, { signal: AbortSignal.timeout(200) }).catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await count()) - before).to.equal(1);
  });

  it('after 1,000 junk names, real calls are counted under their own names in /metrics and in the ledger', async function () {
    this.timeout(60_000);
    const url = proxy!.url;
    const post = (path: string, body: string) =>
      fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'text/xml' }, body }).then((r) => r.text());
    for (let i = 0; i < 1_000; i++) await post('/rpc', call(`junk_${i}`));
    for (let i = 0; i < 30; i++) await (await fetch(`${url}/other?:action=junk${i}`)).text();
    for (const method of KNOWN) await post('/rpc', call(method));
    await post('/rpc', call('list_packages'));
    await (await fetch(`${url}/other?:action=real`)).text();

    const metrics = await (await fetch(`${proxy!.adminUrl}/metrics`)).text();
    const feature = (name: string) =>
      Number(
        new RegExp(`^banyan_legacy_feature_requests_total\\{feature="${name.replace('.', '\\.')}"\\} (\\d+)`, 'm').exec(metrics)?.[1] ?? 0,
      );
    expect(feature('xmlrpc.list_packages')).to.equal(2);
    expect(feature('xmlrpc.package_releases')).to.equal(1);
    expect(feature('xmlrpc.search')).to.equal(1);
    expect(feature('xmlrpc.other'), 'junk beyond the route budget shares one name').to.equal(1_000 - 20);
    expect(feature('action.junk0'), "one route's junk does not spend another's budget").to.equal(1);
    expect(feature('action.other')).to.equal(30 + 1 - 20);
    const series = metrics.split('\n').filter((l) => l.startsWith('banyan_legacy_feature_requests_total{'));
    expect(series.length, 'bounded: known values plus 20 per route plus one other per kind').to.be.at.most(KNOWN.length + 20 + 1 + 20 + 1);

    const s = await services();
    // Stopping flushes what the proxy counted into the ledger.
    await proxy!.stop();
    proxy = undefined;
    const rows = await withClient(
      s.primaryUrl,
      async (c) =>
        (
          await c.query(
            "SELECT feature, sum(requests)::int AS n FROM banyan.usage_ledger WHERE route = 'poison.xmlrpc' AND feature IN ('xmlrpc.list_packages', 'xmlrpc.package_releases', 'xmlrpc.search', 'xmlrpc.other') GROUP BY feature ORDER BY feature",
          )
        ).rows,
    );
    expect(rows).to.deep.equal([
      { feature: 'xmlrpc.list_packages', n: 2 },
      { feature: 'xmlrpc.other', n: 980 },
      { feature: 'xmlrpc.package_releases', n: 1 },
      { feature: 'xmlrpc.search', n: 1 },
    ]);
  });

  it('refuses a malformed known list with the field named', async () => {
    const { validateTable } = await import('../routing/table/index.js');
    const checked = validateTable([{ name: 'x.y', match: { path: '/x' }, mode: 'legacy', features: [{ xmlrpc: true, known: 'search' }] }]);
    expect(checked.ok).to.equal(false);
    expect((checked as { problems: string[] }).problems).to.deep.equal([
      'route 1 "x.y": features: [0].known must be a list of the values this route knows, such as ["rss", "display"]',
    ]);
  });
});
