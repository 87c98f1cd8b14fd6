import type { UpstreamSnapshot } from '../proxy/upstreams/index.js';
import { BanyanError } from '../lib/errors.js';
import { askAdmin } from './admin-api.js';
import type { Args } from './command.js';
import { printTable } from './output.js';

/** `banyan upstreams list|show NAME`: the services the running proxy sends to, endpoint by endpoint. */
export async function upstreams(args: Args): Promise<void> {
  const [action, name] = args.words;
  const json = args.flags.has('json');
  if (action === 'show') {
    if (!name) throw new BanyanError('bad-arguments', 'show needs the upstream NAME (see banyan upstreams list)');
    const one = (await askAdmin(`/api/upstreams/${encodeURIComponent(name)}`)) as unknown as UpstreamSnapshot;
    if (json) return out(one);
    describe(one);
    return;
  }
  const { upstreams: all } = (await askAdmin('/api/upstreams')) as unknown as { upstreams: UpstreamSnapshot[] };
  if (json) return out(all);
  printTable(
    ['service', 'endpoints', 'taking requests', 'in flight', 'balance', 'from'],
    all.map((u) => [
      u.name,
      String(u.endpoints.length),
      String(u.endpoints.filter((e) => e.state === 'healthy' || e.state === 'slow-start').length),
      String(u.endpoints.reduce((n, e) => n + e.inFlight, 0)),
      `${u.balance}${u.session ? ', session' : ''}`,
      u.problem ? `${u.source} (${u.problem})` : u.source,
    ]),
  );
  process.stdout.write('\n');
  for (const u of all) describe(u);
}

/** One service's endpoints as a table. */
function describe(u: UpstreamSnapshot): void {
  process.stdout.write(
    `${u.name}: ${u.source}, ${u.balance}${u.session ? ', sessions kept on one endpoint' : ''}${u.problem ? `; ${u.problem}` : ''}\n`,
  );
  if (u.endpoints.length === 0) {
    process.stdout.write('  no endpoints: requests for it fall back (safe ones, on routes with fallback) or get 503\n\n');
    return;
  }
  printTable(
    ['  endpoint', 'state', 'weight', 'in flight', 'requests', 'failures', 'ejections', 'breaker', 'last check'],
    u.endpoints.map((e) => [
      `  ${e.url}`,
      e.state,
      e.weight.toFixed(2),
      String(e.inFlight),
      String(e.requests),
      String(e.failures),
      String(e.ejections),
      e.breaker,
      e.lastCheck
        ? `${e.lastCheck.ok ? 'pass' : 'fail'} ${new Date(e.lastCheck.at).toISOString().slice(11, 19)}Z${e.lastCheck.ok ? '' : `: ${e.lastCheck.detail}`}`
        : '-',
    ]),
  );
  process.stdout.write('\n');
}

function out(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}
