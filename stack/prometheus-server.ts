import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BanyanError } from '../lib/errors.js';
import { startServerProcess, stopServerProcess, waitUntilReady, type ServerProcess } from './child-process.js';

/** Debian's and Ubuntu's package (`apt-get install prometheus`); BANYAN_PROMETHEUS_BIN names another. */
export const PROMETHEUS_BIN = '/usr/bin/prometheus';

/** What Prometheus scrapes: a job per component, each a list of `host:port`. */
export type ScrapeTargets = Readonly<Record<string, readonly string[]>>;

/** A running Prometheus scraping the local stack. */
export interface PrometheusServer {
  readonly url: string;
  readonly pid: number | undefined;
  stop(): Promise<void>;
}

/** The configuration: every job on `/metrics`, scraped every `scrapeInterval` (short: plans judge windows of seconds locally). */
export function prometheusConfig(targets: ScrapeTargets, scrapeInterval = '1s'): string {
  const jobs = Object.entries(targets)
    .filter(([, list]) => list.length)
    .flatMap(([job, list]) => [
      `  - job_name: ${job}`,
      '    metrics_path: /metrics',
      '    static_configs:',
      `      - targets: [${list.map((t) => `'${t}'`).join(', ')}]`,
    ]);
  return [
    'global:',
    `  scrape_interval: ${scrapeInterval}`,
    `  evaluation_interval: ${scrapeInterval}`,
    'scrape_configs:',
    ...jobs,
    '',
  ].join('\n');
}

/** Starts Prometheus on loopback `port`, its data and config in `dir`, and waits until it is ready. */
export async function startPrometheus(o: {
  dir: string;
  port: number;
  targets: ScrapeTargets;
  program?: string | undefined;
}): Promise<PrometheusServer> {
  const program = o.program || PROMETHEUS_BIN;
  if (!existsSync(program)) {
    throw new BanyanError(
      'no-prometheus',
      `--prometheus needs Prometheus at ${program}, which is not there`,
      'apt-get install prometheus (Debian, Ubuntu), or set BANYAN_PROMETHEUS_BIN to its path',
    );
  }
  mkdirSync(o.dir, { recursive: true });
  const config = join(o.dir, 'prometheus.yml');
  writeFileSync(config, prometheusConfig(o.targets));
  const url = `http://127.0.0.1:${o.port}`;
  const server: ServerProcess = startServerProcess(
    program,
    [
      `--config.file=${config}`,
      `--storage.tsdb.path=${join(o.dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${o.port}`,
      '--storage.tsdb.retention.time=1d',
      '--log.level=warn',
    ],
    join(o.dir, 'prometheus.log'),
  );
  await waitUntilReady('Prometheus', server, async () => (await fetch(`${url}/-/ready`)).status === 200, 30_000);
  const running = () => server.child.exitCode === null && server.child.signalCode === null;
  return {
    url,
    get pid() {
      return running() ? server.child.pid : undefined;
    },
    stop: () => stopServerProcess(server, 'SIGTERM'),
  };
}
