import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { traceAs } from '../bin/start.js';
import { tracingSettings } from '../lib/tracing.js';
import { IMPLICIT_UPSTREAMS } from '../routing/table/index.js';
import { freePort } from '../stack/ports.js';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './support/otlp-receiver.js';
import { basicAuth, buildDists, newUploader, uploadForm } from './support/packages.js';
import { setRoutes, TEST_SECRET } from './support/proxy.js';
import { startStack } from './support/cli.js';
import { startProxyProcess, startServerProcess } from './support/proxy-process.js';
import { services, tempDir } from './support/services.js';
import { waitUntil } from './support/wait.js';

const SERVER = 2;

type Started = Awaited<ReturnType<typeof startServerProcess>>;

describe('tracing: one trace from the client through the proxy, a backend and PostgreSQL (real processes, OTLP/HTTP JSON)', () => {
  let receiver: OtlpReceiver;
  let running: Started[] = [];
  let proxyUrl: string;
  let storage: string;
  let uploader: { token: string };
  const project = `traced-${process.pid}`;
  let dists: string[];
  let pinCookie: string;

  before(async function () {
    this.timeout(120_000);
    const s = await services();
    receiver = await startOtlpReceiver();
    storage = tempDir('banyan-traced-');
    uploader = await newUploader(s.primaryUrl);
    const distDir = mkdtempSync(join(tmpdir(), 'banyan-traced-dists-'));
    dists = await buildDists(distDir, project, '1.0', ['py3-none-any']);
    await setRoutes(s, {
      upstreams: [...IMPLICIT_UPSTREAMS, { name: 'gone', endpoints: [`http://127.0.0.1:${await freePort()}`] }],
      routes: [
        { name: 'simple.detail', match: { path: '/simple/:project/' }, mode: 'new', fallback: true },
        { name: 'upload', match: { path: '/legacy/', methods: ['POST'] }, mode: 'new' },
        { name: 'json.gone', match: { path: '/pypi/:project/json' }, mode: 'new', service: 'gone', fallback: true },
        { name: 'project.shadow', match: { path: '/project/:project/' }, mode: 'shadow' },
        { name: 'legacy.rest', match: { path: '/*' }, mode: 'legacy' },
      ],
    });
    // No OTEL_SERVICE_NAME: each command names its own service.
    const otel = {
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_BSP_SCHEDULE_DELAY: '100',
      OTEL_SERVICE_NAME: '',
    };
    const data = {
      DATABASE_URL: s.primaryUrl,
      DATABASE_REPLICA_URLS: s.replicaUrls.join(','),
      REDIS_URL: s.redisUrl!,
      BANYAN_STORAGE: storage,
      ...otel,
    };
    const [legacy, app] = await Promise.all([startServerProcess('legacy', data), startServerProcess('app', data)]);
    running = [legacy, app];
    const proxy = await startProxyProcess({
      DATABASE_URL: s.primaryUrl,
      REDIS_URL: s.redisUrl!,
      LEGACY_URL: legacy.url,
      APP_URL: app.url,
      BANYAN_ADMIN_TOKEN: 'x'.repeat(20),
      BANYAN_SECRET: TEST_SECRET,
      ...otel,
    });
    running.push(proxy);
    proxyUrl = proxy.url;
  });

  after(async () => {
    for (const p of running) p.child.kill('SIGTERM');
    await Promise.all(running.map((p) => p.exited));
    await receiver?.close();
    if (storage) rmSync(storage, { recursive: true, force: true });
  });

  /** The trace of the request sent with `requestId`, once its spans named by `ready` have all arrived. */
  async function traceOf(requestId: string, ready: (spans: ReceivedSpan[]) => boolean): Promise<ReceivedSpan[]> {
    let spans: ReceivedSpan[] = [];
    await waitUntil(
      `the spans of ${requestId} reach the receiver`,
      async () => {
        const root = receiver.spans.find((s) => s.service === 'banyan-proxy' && s.attributes['banyan.request_id'] === requestId);
        spans = root ? receiver.spans.filter((s) => s.traceId === root.traceId) : [];
        return root !== undefined && ready(spans);
      },
      30_000,
    );
    return spans;
  }

  const proxySpanOf = (spans: ReceivedSpan[]) => spans.find((s) => s.service === 'banyan-proxy' && s.kind === SERVER)!;
  const childrenOf = (spans: ReceivedSpan[], parent: ReceivedSpan) => spans.filter((s) => s.parentSpanId === parent.spanId);
  const queriesUnder = (spans: ReceivedSpan[], parent: ReceivedSpan) =>
    childrenOf(spans, parent).filter((s) => s.attributes['db.system.name'] === 'postgresql');

  it('a twine upload: the proxy span with its route, the app span under it, and the PostgreSQL spans (writes on the primary) under that', async function () {
    this.timeout(60_000);
    const res = await fetch(`${proxyUrl}/legacy/`, {
      method: 'POST',
      body: uploadForm(dists[0]!, { name: project, version: '1.0' }),
      headers: { authorization: basicAuth('__token__', uploader.token), 'x-request-id': 'traced-upload', 'user-agent': 'twine/6.1.0' },
    });
    expect(res.status, await res.text()).to.equal(200);
    pinCookie = /banyan_pin=[^;]+/.exec(res.headers.get('set-cookie') ?? '')![0];
    const spans = await traceOf('traced-upload', (all) => all.some((s) => s.service === 'banyan-app'));
    const proxy = proxySpanOf(spans);
    expect(proxy.attributes).to.include({
      'banyan.route.name': 'upload',
      'banyan.route.mode': 'new',
      'banyan.service': 'app',
      'banyan.pin': 'none',
      'http.response.status_code': 200,
      'http.request.method': 'POST',
    });
    expect(proxy.attributes['banyan.endpoint']).to.match(/^http:\/\/127\.0\.0\.1:\d+/);
    expect(proxy.parentSpanId, 'no traceparent from the client: the proxy starts the trace').to.equal(undefined);
    const [app] = childrenOf(spans, proxy);
    expect(app, 'the app continues the proxy span').to.include({ service: 'banyan-app', kind: SERVER });
    expect(app!.attributes).to.include({ 'http.route': 'upload', 'http.response.status_code': 200 });
    const queries = queriesUnder(spans, app!);
    const insert = queries.find(
      (q) => String(q.attributes['db.query.text']).startsWith('insert') || String(q.attributes['db.query.text']).startsWith('INSERT'),
    );
    expect(insert, `an INSERT among ${queries.map((q) => q.name).join(', ')}`).to.not.equal(undefined);
    expect(insert!.attributes).to.include({
      'db.system.name': 'postgresql',
      'banyan.read.target': 'primary',
      'banyan.read.reason': 'write',
    });
    expect(insert!.attributes['db.namespace']).to.be.a('string').and.not.equal('');
    expect(insert!.attributes['db.query.text'], 'placeholders, not values').to.match(/\$1/).and.not.include(project);
  });

  it('a pip GET with the pin the upload set: pinned in the proxy span (cookie and LSN), the read decision on each query span', async function () {
    this.timeout(60_000);
    const res = await fetch(`${proxyUrl}/simple/${project}/`, {
      headers: { cookie: pinCookie, 'x-request-id': 'traced-pip', 'user-agent': 'pip/24.0' },
    });
    const page = await res.text();
    expect(res.status, page).to.equal(200);
    expect(page).to.include(project);
    const spans = await traceOf('traced-pip', (all) => all.some((s) => s.service === 'banyan-app'));
    const proxy = proxySpanOf(spans);
    expect(proxy.attributes).to.include({
      'banyan.route.name': 'simple.detail',
      'banyan.route.mode': 'new',
      'banyan.pin': 'cookie',
      'http.response.status_code': 200,
    });
    expect(proxy.attributes['banyan.pin.lsn']).to.match(/^[0-9A-F]+\/[0-9A-F]+$/);
    const [app] = childrenOf(spans, proxy);
    const queries = queriesUnder(spans, app!);
    const reads = queries.filter((q) => /^select/i.test(String(q.attributes['db.query.text'])));
    expect(
      reads.length,
      `the page is read from PostgreSQL; the app's queries: ${JSON.stringify(queries.map((q) => q.attributes))}`,
    ).to.be.greaterThan(0);
    for (const read of reads) {
      // Where a pinned read may go: a replica that has its write, else the primary (a replica out of its limits counts as usual); never "no_fence".
      expect(
        ['fence_met', 'fence_wait', 'fence_unmet', 'pinned', 'lagging', 'replica_down'],
        `a pinned read: ${JSON.stringify(read.attributes)}`,
      ).to.include(read.attributes['banyan.read.reason']);
      expect(['replica', 'primary']).to.include(read.attributes['banyan.read.target']);
    }
  });

  it("continues a client's traceparent and tracestate: the proxy span is the client span's child, the app's parent is the proxy span", async function () {
    this.timeout(60_000);
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const clientSpan = '00f067aa0ba902b7';
    const res = await fetch(`${proxyUrl}/simple/${project}/`, {
      headers: { traceparent: `00-${traceId}-${clientSpan}-01`, tracestate: 'vendor=kept', 'x-request-id': 'traced-continued' },
    });
    expect(res.status).to.equal(200);
    const spans = await traceOf('traced-continued', (all) => all.some((s) => s.service === 'banyan-app'));
    const proxy = proxySpanOf(spans);
    expect(proxy).to.include({ traceId, parentSpanId: clientSpan });
    const [app] = childrenOf(spans, proxy);
    expect(app, "the backend got the proxy span as its parent, not the client's").to.include({
      service: 'banyan-app',
      traceId,
      traceState: 'vendor=kept',
    });
  });

  it("a fallback: the proxy span says why, and legacy's span (with its queries) is in the same trace under it", async function () {
    this.timeout(60_000);
    const res = await fetch(`${proxyUrl}/pypi/${project}/json`, { headers: { 'x-request-id': 'traced-fallback' } });
    expect(res.status).to.equal(200);
    const spans = await traceOf('traced-fallback', (all) => all.some((s) => s.service === 'banyan-legacy'));
    const proxy = proxySpanOf(spans);
    expect(proxy.attributes).to.include({
      'banyan.route.name': 'json.gone',
      'banyan.fallback.reason': 'refused',
      'banyan.service': 'legacy',
      'banyan.backend': 'legacy',
    });
    const [legacy] = childrenOf(spans, proxy);
    expect(legacy).to.include({ service: 'banyan-legacy', kind: SERVER });
    expect(legacy!.attributes['http.route']).to.equal('legacy.json');
    expect(queriesUnder(spans, legacy!).length, "legacy's queries are spans too").to.be.greaterThan(0);
  });

  it("a shadow copy: a span of its own, linked to the request, with the comparison result; the app's span for the copy is under it", async function () {
    this.timeout(60_000);
    const res = await fetch(`${proxyUrl}/project/${project}/`, { headers: { 'x-request-id': 'traced-shadow' } });
    expect(res.status).to.equal(200);
    await res.text();
    const spans = await traceOf(
      'traced-shadow',
      (all) =>
        all.some((s) => s.name.startsWith('shadow ')) &&
        all.some((s) => s.service === 'banyan-app') &&
        all.some((s) => s.service === 'banyan-legacy'),
    );
    const proxy = proxySpanOf(spans);
    expect(proxy.attributes).to.include({
      'banyan.route.name': 'project.shadow',
      'banyan.route.mode': 'shadow',
      'banyan.service': 'legacy',
    });
    const shadow = spans.find((s) => s.name === 'shadow project.shadow')!;
    expect(shadow.parentSpanId).to.equal(proxy.spanId);
    expect(shadow.links).to.deep.equal([{ traceId: proxy.traceId, spanId: proxy.spanId }]);
    expect(['match', 'mismatch', 'noise']).to.include(shadow.attributes['banyan.shadow.result']);
    expect(shadow.attributes['banyan.shadow.differences']).to.be.a('number');
    expect(shadow.attributes['http.response.status_code']).to.equal(200);
    const answered = childrenOf(spans, proxy).find((s) => s.service === 'banyan-legacy');
    expect(answered, 'legacy answered the client under the request span').to.not.equal(undefined);
    const copy = childrenOf(spans, shadow).find((s) => s.service === 'banyan-app');
    expect(copy, 'the app answered the copy under the shadow span').to.not.equal(undefined);
  });
});

describe('npm start with the OTEL variables', () => {
  it('passes them to every component, each under its own service.name and instance: one trace from the proxy through app-1', async function () {
    this.timeout(120_000);
    const receiver = await startOtlpReceiver();
    const cwd = tempDir('banyan-traced-start-');
    const run = await startStack(cwd, ['--app-instances', '1'], {
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_BSP_SCHEDULE_DELAY: '100',
      OTEL_SERVICE_NAME: 'one-name-for-all',
    });
    try {
      expect((await fetch(`${run.stack.proxy}/simple/`, { headers: { 'x-request-id': 'traced-start' } })).status).to.equal(200);
      let spans: ReceivedSpan[] = [];
      await waitUntil(
        "the stack's spans reach the receiver",
        async () => {
          const root = receiver.spans.find(
            (s) => s.attributes['banyan.request_id'] === 'traced-start' && s.kind === SERVER && s.parentSpanId === undefined,
          );
          spans = root ? receiver.spans.filter((s) => s.traceId === root.traceId) : [];
          return spans.some((s) => s.service === 'banyan-app');
        },
        30_000,
      );
      const proxy = spans.find((s) => s.parentSpanId === undefined)!;
      expect(proxy).to.include({ service: 'banyan-proxy' });
      expect(proxy.resource['service.instance.id']).to.equal('proxy');
      const app = spans.find((s) => s.parentSpanId === proxy.spanId)!;
      expect(app).to.include({ service: 'banyan-app' });
      expect(app.resource['service.instance.id']).to.equal('app-1');
      expect(
        spans.some((s) => s.parentSpanId === app.spanId && s.attributes['db.system.name'] === 'postgresql'),
        "app-1's queries are in the trace",
      ).to.equal(true);
    } finally {
      expect(await run.stop('SIGTERM')).to.equal(0);
      await receiver.close();
      rmSync(cwd, { recursive: true, force: true });
    }
  });
});

describe('tracing off', () => {
  it('no OTLP endpoint, or OTEL_SDK_DISABLED: the proxy loads no SDK and exports nothing', async function () {
    this.timeout(90_000);
    const s = await services();
    const receiver = await startOtlpReceiver();
    const base = {
      DATABASE_URL: s.primaryUrl,
      REDIS_URL: s.redisUrl!,
      BANYAN_ADMIN_TOKEN: 'x'.repeat(20),
      NODE_DEBUG: 'module',
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
    };
    const legacy = await startServerProcess('legacy', { DATABASE_URL: s.primaryUrl, BANYAN_STORAGE: tempDir('banyan-untraced-') });
    try {
      await setRoutes(s, [{ name: 'legacy.all', match: { path: '/*' }, mode: 'legacy' }]);
      const loaded = async (env: NodeJS.ProcessEnv) => {
        const proxy = await startProxyProcess({ ...base, LEGACY_URL: legacy.url, ...env });
        try {
          expect((await fetch(`${proxy.url}/simple/`)).status).to.equal(200);
        } finally {
          proxy.child.kill('SIGTERM');
          await proxy.exited;
        }
        return /@opentelemetry[/\\]sdk-node/.test(proxy.output());
      };
      expect(await loaded({ OTEL_SERVICE_NAME: 'off', OTEL_TRACES_SAMPLER: 'always_on' }), 'no endpoint: the SDK is never loaded').to.equal(
        false,
      );
      expect(
        await loaded({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_SDK_DISABLED: 'true' }),
        'disabled: the SDK is never loaded',
      ).to.equal(false);
      expect(receiver.posts, 'nothing was exported').to.deep.equal([]);
      expect(await loaded({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url }), 'the check sees the SDK when tracing is on').to.equal(true);
      await waitUntil('the traced proxy exported its span at shutdown', async () => receiver.posts.includes('/v1/traces'), 10_000);
    } finally {
      legacy.child.kill('SIGTERM');
      await legacy.exited;
      await receiver.close();
    }
  });
});

describe('tracing settings', () => {
  it('are on only with an endpoint, and name an unsupported protocol or exporter', () => {
    expect(tracingSettings({})).to.equal(undefined);
    expect(tracingSettings({ OTEL_SERVICE_NAME: 'x', OTEL_TRACES_SAMPLER: 'always_on' })).to.equal(undefined);
    expect(tracingSettings({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' })).to.deep.equal({ protocol: 'http/protobuf' });
    expect(
      tracingSettings({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c:4318/v1/traces', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' }),
    ).to.deep.equal({ protocol: 'http/json' });
    expect(tracingSettings({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_EXPORTER: 'none' })).to.equal(undefined);
    expect(() => tracingSettings({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4317', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' })).to.throw(
      'OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" is not supported; use http/protobuf or http/json',
    );
    expect(() => tracingSettings({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_EXPORTER: 'zipkin' })).to.throw(
      'OTEL_TRACES_EXPORTER: "zipkin" is not supported',
    );
  });

  it("npm start gives each component its own service.name and instance, keeping the operator's resource attributes", () => {
    expect(traceAs('banyan-app', 'app-2', {})).to.deep.equal({
      OTEL_SERVICE_NAME: 'banyan-app',
      OTEL_RESOURCE_ATTRIBUTES: 'service.instance.id=app-2',
    });
    expect(
      traceAs('banyan-proxy', 'proxy', {
        OTEL_SERVICE_NAME: 'everything',
        OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=staging',
      }),
    ).to.deep.equal({
      OTEL_SERVICE_NAME: 'banyan-proxy',
      OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=staging,service.instance.id=proxy',
    });
  });
});
