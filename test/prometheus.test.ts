import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { controlPlan, startPlan } from '../autopilot/plan-store.js';
import { connect } from '../lib/database.js';
import { DEFAULT_ROUTES_FILE, readRoutesFile, type TableSpec } from '../routing/table/index.js';
import { startBackends, type Backends } from '../stack/local-stack.js';
import { freePort } from '../stack/ports.js';
import { setRoutes, TEST_SECRET } from './support/proxy.js';
import { services, tempDir } from './support/services.js';
import { waitUntil } from './support/wait.js';

const PROMETHEUS = '/usr/bin/prometheus';
const DASHBOARD = new URL('../deploy/grafana/banyan.json', import.meta.url);
const RULES = new URL('../deploy/prometheus/rules.yml', import.meta.url);

interface Series {
  metric: Record<string, string>;
  value: [number, string];
}

describe('a real Prometheus scraping the proxy and the app', () => {
  let backends: Backends;
  let prometheus: ChildProcess | undefined;
  let api: string;
  let dir: string;
  let output = '';

  before(async function () {
    this.timeout(90_000);
    if (!existsSync(PROMETHEUS)) {
      console.log(`      (skipped: ${PROMETHEUS} is not installed; apt-get install prometheus, as .ci/run does)`);
      this.skip();
    }
    const s = await services();
    // The shipped routes, with the project page in shadow: every panel of the dashboard has a series to draw.
    const shipped = readRoutesFile(DEFAULT_ROUTES_FILE) as TableSpec;
    // And a service that refuses every connection, so the fallback panel has a fallback to draw.
    await setRoutes(
      s,
      {
        upstreams: [...shipped.upstreams!, { name: 'gone', endpoints: [`http://127.0.0.1:${await freePort()}`] }],
        routes: [
          { name: 'gone.demo', match: { path: '/gone-demo' }, mode: 'new', service: 'gone', fallback: true },
          ...shipped.routes.map((r) => (r.name === 'project.page' ? { ...r, mode: 'shadow' as const } : r)),
        ],
      },
      'prometheus: shipped routes',
    );
    backends = await startBackends(s, { adminToken: 't', secret: TEST_SECRET, redisUrl: s.redisUrl });
    dir = tempDir('banyan-prometheus-');
    const port = await freePort();
    api = `http://127.0.0.1:${port}`;
    const target = (url: string) => new URL(url).host;
    writeFileSync(
      join(dir, 'prometheus.yml'),
      [
        'global:',
        '  scrape_interval: 1s',
        '  evaluation_interval: 1s',
        'scrape_configs:',
        '  - job_name: banyan-proxy',
        '    static_configs:',
        `      - targets: ['${target(backends.urls.admin)}']`,
        '  - job_name: banyan-app',
        '    static_configs:',
        `      - targets: ['${target(backends.urls.app)}']`,
        '',
      ].join('\n'),
    );
    prometheus = spawn(
      PROMETHEUS,
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    prometheus.stdout!.on('data', (d) => {
      output += d;
    });
    prometheus.stderr!.on('data', (d) => {
      output += d;
    });
    await waitUntil(
      'Prometheus is ready',
      async () => (await fetch(`${api}/-/ready`).catch(() => undefined))?.status === 200,
      30_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${output}`);
    });
  });

  after(async () => {
    if (prometheus && prometheus.exitCode === null) {
      const exited = new Promise((resolve) => prometheus!.once('exit', resolve));
      prometheus.kill('SIGTERM');
      await exited;
    }
    await backends?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function query(expr: string): Promise<{ status: string; data: { result: Series[] }; error?: string }> {
    const res = await fetch(`${api}/api/v1/query?query=${encodeURIComponent(expr)}`);
    return res.json() as Promise<{ status: string; data: { result: Series[] }; error?: string }>;
  }

  it('sum by (route, backend) (banyan_http_requests_total) matches the requests sent', async function () {
    this.timeout(60_000);
    const sent: Record<string, number> = {
      'simple.index|new': 7,
      'legacy.home|legacy': 5,
      'legacy.rss|legacy': 3,
      'legacy.unmatched|legacy': 2,
    };
    for (let i = 0; i < 2; i++) await (await fetch(`${backends.urls.proxy}/no-route-here/${i}`)).text();
    for (let i = 0; i < 7; i++) await (await fetch(`${backends.urls.proxy}/simple/`)).text();
    for (let i = 0; i < 5; i++) await (await fetch(`${backends.urls.proxy}/`)).text();
    for (let i = 0; i < 3; i++) await (await fetch(`${backends.urls.proxy}/pypi?:action=rss`)).text();
    let seen: Record<string, number> = {};
    await waitUntil(
      'Prometheus has scraped every request sent',
      async () => {
        const r = await query('sum by (route, backend) (banyan_http_requests_total)');
        seen = Object.fromEntries(r.data.result.map((s) => [`${s.metric['route']}|${s.metric['backend']}`, Number(s.value[1])]));
        return Object.entries(sent).every(([k, n]) => seen[k] === n);
      },
      30_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}: it saw ${JSON.stringify(seen)}, sent ${JSON.stringify(sent)}\n${output}`);
    });
    expect(seen['legacy.xmlrpc|legacy'], 'a route nobody used is there, at 0').to.equal(0);
    const features = await query('sum by (feature) (banyan_legacy_feature_requests_total)');
    expect(features.data.result.map((s) => [s.metric['feature'], s.value[1]])).to.deep.include(['action.rss', '3']);
    await waitUntil(
      'Prometheus has scraped the app too',
      async () => (await query('up{job="banyan-app"} == 1')).data.result.length === 1,
      10_000,
    );
    const up = await query('up');
    expect(up.data.result.map((s) => [s.metric['job'], s.value[1]]).sort()).to.deep.equal([
      ['banyan-app', '1'],
      ['banyan-proxy', '1'],
    ]);
  });

  it('every query of the Grafana dashboard is valid PromQL and names only metrics the proxy and the app export', async function () {
    this.timeout(60_000);
    const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: { title: string; targets: { expr: string }[] }[] };
    expect(dashboard.panels.length).to.be.at.least(8);
    await (await fetch(`${backends.urls.proxy}/gone-demo`)).text();
    // A plan under way, so the plan panel's series exist to be scraped.
    const db = connect((await services()).primaryUrl, { max: 1, schema: 'banyan' });
    await startPlan(
      db,
      'promote',
      'legacy.xmlrpc',
      {
        steps: [
          { mode: 'shadow', hold: '1h' },
          { mode: 'new', hold: '1h' },
        ],
      },
      'prometheus test',
    );
    let names: string[] = [];
    try {
      await waitUntil(
        "Prometheus has scraped the plan's step",
        async () => {
          names = ((await (await fetch(`${api}/api/v1/label/__name__/values`)).json()) as { data: string[] }).data;
          return names.includes('banyan_autopilot_plan_step');
        },
        30_000,
      );
      const step = await query('max by (route, of) (banyan_autopilot_plan_step)');
      expect(step.data.result.map((r) => [r.metric['route'], r.metric['of']])).to.deep.equal([['legacy.xmlrpc', '2']]);
    } finally {
      await controlPlan(db, 'legacy.xmlrpc', 'abort', 'prometheus test');
      await db.destroy();
    }
    for (const panel of dashboard.panels) {
      for (const t of panel.targets) {
        const r = await query(t.expr.replaceAll('$__rate_interval', '1m'));
        expect(r.status, `${panel.title}: ${t.expr}: ${r.error}`).to.equal('success');
        // A misspelt metric is valid PromQL that draws nothing: every name must be one Prometheus has scraped.
        for (const metric of t.expr.match(/\bbanyan_[a-z0-9_]+/g) ?? []) expect(names, `${panel.title}: ${metric}`).to.include(metric);
      }
    }
    const lag = await query('max by (replica) (banyan_db_replica_lag_seconds)');
    expect(lag.data.result.map((s) => s.metric['replica'])).to.deep.equal(['replica-1']);
  });

  it('every metric the shipped alerting rules name is one the proxy or the app exports', async () => {
    const exported = `${await (await fetch(`${backends.urls.admin}/metrics`)).text()}\n${await (await fetch(`${backends.urls.app}/metrics`)).text()}`;
    const declared = new Set(
      [...exported.matchAll(/^# TYPE (banyan_\w+) (\w+)$/gm)].flatMap(([, name, type]) =>
        type === 'histogram' ? [`${name}_bucket`, `${name}_sum`, `${name}_count`] : [name!],
      ),
    );
    const named = [...new Set(readFileSync(RULES, 'utf8').match(/\bbanyan_[a-z0-9_]+/g) ?? [])];
    expect(named.length).to.be.at.least(7);
    expect(
      named.filter((m) => !declared.has(m)),
      'metrics the rules name that nothing exports',
    ).to.deep.equal([]);
  });
});
