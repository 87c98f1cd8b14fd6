import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { fillQuery, promDuration, runChecks } from '../autopilot/prometheus-checks.js';
import { validatePromotePlan, type QueryCheck } from '../autopilot/plan-file.js';
import { listen, type Listening } from '../lib/http-server.js';
import { freePort } from '../stack/ports.js';
import { PROMETHEUS_BIN, prometheusConfig, startPrometheus, type PrometheusServer } from '../stack/prometheus-server.js';
import { tempDir } from './support/services.js';
import { waitUntil } from './support/wait.js';

const checksOf = (checks: unknown[]): readonly QueryCheck[] => validatePromotePlan({ steps: [{ mode: 'new', hold: '1s' }], checks }).checks;

describe('PromQL checks against a real Prometheus', function () {
  this.timeout(60_000);
  let prometheus: PrometheusServer;
  let target: Listening;
  const scope = { route: 'project.page', service: 'app', window: '10s' };

  before(async function () {
    if (!existsSync(PROMETHEUS_BIN)) {
      console.log(`      (skipped: ${PROMETHEUS_BIN} is not installed; apt-get install prometheus, as .ci/run does)`);
      this.skip();
    }
    // A target with one number per service, so a check against legacy has two sides to compare.
    target = await listen(
      createServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
        res.end('demo_p99_seconds{route="project.page",service="app"} 0.4\ndemo_p99_seconds{route="project.page",service="legacy"} 0.12\n');
      }),
      0,
      '127.0.0.1',
      'target',
      200,
    );
    prometheus = await startPrometheus({
      dir: join(tempDir('banyan-promql-'), 'prometheus'),
      port: await freePort(),
      targets: { demo: [new URL(target.url).host] },
    });
    await waitUntil(
      'Prometheus has scraped the target',
      async () => {
        const [r] = await runChecks(prometheus.url, checksOf([{ name: 'seen', query: 'sum(demo_p99_seconds)', max: 1 }]), scope);
        return r?.value !== undefined;
      },
      20_000,
    );
  });

  after(async () => {
    await prometheus?.stop();
    await target?.close();
  });

  it('fills {route}, {service} and {window} in, and writes the window as Prometheus does', () => {
    expect(fillQuery('rate(x{route="{route}",service="{service}"}[{window}]) + {other}', scope)).to.equal(
      'rate(x{route="project.page",service="app"}[10s]) + {other}',
    );
    expect([promDuration(300), promDuration(10_000), promDuration(10_001)]).to.deep.equal(['1s', '10s', '11s']);
  });

  it('reads one number for the new side, and the same query for legacy when the check is against it', async () => {
    const results = await runChecks(
      prometheus.url,
      checksOf([
        { name: 'p99', query: 'max(demo_p99_seconds{route="{route}",service="{service}"})', max: 0.5 },
        {
          name: 'p99 vs legacy',
          query: 'max(max_over_time(demo_p99_seconds{route="{route}",service="{service}"}[{window}]))',
          against: 'legacy',
          factor: 1.5,
        },
        { name: 'scalar', query: 'scalar(sum(demo_p99_seconds{service="{service}"}))', max: 1 },
      ]),
      scope,
    );
    expect(results).to.deep.equal([
      { name: 'p99', value: 0.4 },
      { name: 'p99 vs legacy', value: 0.4, legacy: 0.12 },
      { name: 'scalar', value: 0.4 },
    ]);
  });

  it('says why a check cannot be evaluated: no data, many series, a bad query, Prometheus down or not configured', async () => {
    const results = await runChecks(
      prometheus.url,
      checksOf([
        { name: 'none', query: 'demo_p99_seconds{route="{route}",service="files"}', max: 1 },
        { name: 'many', query: 'demo_p99_seconds', max: 1 },
        { name: 'bad', query: 'sum(demo_p99_seconds', max: 1 },
        { name: 'nan', query: 'sum(demo_p99_seconds{route="{route}"}) / 0 * 0', max: 1 },
        { name: 'legacy gone', query: 'max(demo_p99_seconds{service="{service}"} > 0.2)', against: 'legacy' },
      ]),
      scope,
    );
    expect(results.map((r) => [r.name, r.value, r.problem?.replace(/: .*/s, ':…')])).to.deep.equal([
      ['none', undefined, 'no data for demo_p99_seconds{route="project.page",service="files"}'],
      ['many', undefined, 'the query gives 2 series; it must give one number (wrap it in sum(…) or max(…))'],
      ['bad', undefined, 'Prometheus refused the query:…'],
      ['nan', undefined, 'no data for sum(demo_p99_seconds{route="project.page"}) / 0 * 0 (it gives NaN)'],
      ['legacy gone', 0.4, "legacy's side:…"],
    ]);
    const [baseline] = await runChecks(
      prometheus.url,
      checksOf([
        {
          name: 'b',
          query:
            'max(demo_p99_seconds{service="{service}"} > 0.2) or (max(demo_p99_seconds{service="{service}"}) and on() (vector({window}) > 0))',
          against: 'legacy',
        },
      ]),
      { ...scope, window: '0', planWindow: '1' },
    );
    expect(baseline, "legacy read over the plan's window when the step's has nothing").to.deep.equal({
      name: 'b',
      value: 0.4,
      legacy: 0.12,
    });
    const down = await runChecks(`http://127.0.0.1:${await freePort()}`, checksOf([{ name: 'p99', query: 'up', max: 1 }]), scope);
    expect(down[0]!.problem).to.match(/^Prometheus at http:\/\/127\.0\.0\.1:\d+ did not answer \(/);
    expect((await runChecks(undefined, checksOf([{ name: 'p99', query: 'up', max: 1 }]), scope))[0]!.problem).to.equal(
      'BANYAN_PROMETHEUS_URL is not set, so the query cannot run',
    );
  });

  it('writes a scrape configuration with a job per component', () => {
    expect(prometheusConfig({ 'banyan-proxy': ['127.0.0.1:9090'], 'banyan-app': ['127.0.0.1:8081', '127.0.0.1:8084'], none: [] })).to.equal(
      [
        'global:',
        '  scrape_interval: 1s',
        '  evaluation_interval: 1s',
        'scrape_configs:',
        '  - job_name: banyan-proxy',
        '    metrics_path: /metrics',
        '    static_configs:',
        "      - targets: ['127.0.0.1:9090']",
        '  - job_name: banyan-app',
        '    metrics_path: /metrics',
        '    static_configs:',
        "      - targets: ['127.0.0.1:8081', '127.0.0.1:8084']",
        '',
      ].join('\n'),
    );
  });
});
