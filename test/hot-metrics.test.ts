import { expect } from 'chai';
import { AggregatorRegistry, Counter, Histogram, Registry } from 'prom-client';
import { HotCounter, HotHistogram } from '../metrics/hot-metrics.js';

/** The exposition text without HELP/TYPE lines, sorted, so two writers' label orders compare. */
function series(text: string): string[] {
  return text
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((line) => {
      const m = /^(\w+)(?:\{(.*)\})? (.*)$/.exec(line)!;
      const labels = (m[2] ?? '').split(',').filter(Boolean).sort().join(',');
      return `${m[1]}{${labels}} ${m[3]}`;
    })
    .sort();
}

describe("hot metrics (the proxy's per-request counter and histogram)", () => {
  const observations = [0.001, 0.004, 0.005, 0.02, 0.3, 0.3, 7, 42];

  it("export exactly what prom-client's Counter and Histogram export for the same events", async () => {
    const ours = new Registry();
    const theirs = new Registry();
    const help = 'Requests.';
    const hotCount = new HotCounter({ name: 'x_requests_total', help, labelNames: ['route', 'backend'] as const, registers: [ours] });
    const count = new Counter({ name: 'x_requests_total', help, labelNames: ['route', 'backend'] as const, registers: [theirs] });
    const buckets = [0.005, 0.01, 0.1, 1, 10];
    const hotTime = new HotHistogram({ name: 'x_seconds', help, labelNames: ['route'] as const, buckets, registers: [ours] });
    const time = new Histogram({ name: 'x_seconds', help, labelNames: ['route'] as const, buckets, registers: [theirs] });
    const a = hotTime.labels({ route: 'a"b' });
    for (const v of observations) {
      a.observe(v);
      time.observe({ route: 'a"b' }, v);
    }
    hotTime.zero({ route: 'idle' });
    time.zero({ route: 'idle' });
    const legacy = hotCount.labels({ route: 'r', backend: 'legacy' });
    for (let i = 0; i < 5; i++) legacy.inc();
    hotCount.inc({ route: 'r', backend: 'new' }, 3);
    count.inc({ route: 'r', backend: 'legacy' }, 5);
    count.inc({ route: 'r', backend: 'new' }, 3);
    expect(series(await ours.metrics())).to.deep.equal(series(await theirs.metrics()));
    expect(await ours.metrics()).to.contain('# TYPE x_seconds histogram');
    expect(await ours.metrics()).to.contain('x_seconds_bucket{route="a\\"b",le="+Inf"} 8');
  });

  it("add up across workers as prom-client's cluster registry does", async () => {
    const workers = [new Registry(), new Registry()];
    workers.forEach((registry, i) => {
      const h = new HotHistogram({ name: 'y_seconds', help: 'y', labelNames: ['route'] as const, buckets: [1], registers: [registry] });
      h.labels({ route: 'r' }).observe(i === 0 ? 0.5 : 2);
      new HotCounter({ name: 'y_total', help: 'y', labelNames: ['route'] as const, registers: [registry] }).inc({ route: 'r' }, i + 1);
    });
    const merged = AggregatorRegistry.aggregate(await Promise.all(workers.map((w) => w.getMetricsAsJSON())));
    const text = await merged.metrics();
    expect(text).to.contain('y_total{route="r"} 3');
    expect(text).to.contain('y_seconds_bucket{route="r",le="1"} 1');
    expect(text).to.contain('y_seconds_bucket{route="r",le="+Inf"} 2');
    expect(text).to.contain('y_seconds_sum{route="r"} 2.5');
  });

  it("keep to the contract prom-client's Registry holds a metric to: one per name, found by name, reset with the rest", async () => {
    const registry = new Registry();
    const c = new HotCounter({ name: 'w_total', help: 'w', labelNames: ['route'] as const, registers: [registry] });
    c.inc({ route: 'r' }, 2);
    expect(registry.getSingleMetric('w_total'), 'found by its name').to.equal(c);
    expect(() => new HotCounter({ name: 'w_total', help: 'w', labelNames: ['route'] as const, registers: [registry] })).to.throw(
      'A metric with the name w_total has already been registered.',
    );
    const json = await registry.getMetricsAsJSON();
    expect(json).to.deep.equal([
      { name: 'w_total', help: 'w', type: 'counter', aggregator: 'sum', values: [{ labels: { route: 'r' }, value: 2 }] },
    ]);
    registry.resetMetrics();
    expect(await registry.metrics(), 'no series left after resetMetrics()').to.equal('# HELP w_total w\n# TYPE w_total counter\n');
  });

  it('refuses a series with a label missing, naming the metric and the label', () => {
    const c = new HotCounter({ name: 'z_total', help: 'z', labelNames: ['route', 'backend'] as const, registers: [] });
    expect(() => c.labels({ route: 'r' } as never)).to.throw('z_total: label "backend" is missing');
  });
});
