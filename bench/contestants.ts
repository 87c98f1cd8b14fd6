/**
 * One contestant of the proxy benchmark, run as its own process:
 *   backend PORT                     a keep-alive server answering 1 KB
 *   http-proxy-3 PORT TARGET         a bare http-proxy-3 server with a keep-alive agent
 *   undici PORT TARGET               a bare node:http server forwarding with undici Pool.stream()
 *   banyan PORT TARGET ROUTES        Banyan's proxy with every feature on (pins, metrics, breakers) and ROUTES routes
 * Prints "ready" when it listens.
 */
import { createServer, Agent } from 'node:http';
import { createProxyServer } from 'http-proxy-3';
import { Pool } from 'undici';
import { createProxyMetrics } from '../metrics/catalog.js';
import { createProxy } from '../proxy/server.js';
import { compileTable } from '../routing/route-table.js';
import { BENCH_SECRET, benchRoutes } from './routes.js';

const [kind, portText, target, routeCount] = process.argv.slice(2);
const port = Number(portText);
const BODY = Buffer.alloc(1024, 'x');
// A clean exit on SIGINT lets --cpu-prof write its profile.
process.on('SIGINT', () => process.exit(0));

function ready(server: import('node:http').Server): void {
  server.keepAliveTimeout = 60_000;
  server.listen(port, '127.0.0.1', () => process.stdout.write('ready\n'));
}

if (kind === 'backend') {
  ready(createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BODY.length });
    res.end(BODY);
  }));
} else if (kind === 'http-proxy-3') {
  const proxy = createProxyServer({ target, agent: new Agent({ keepAlive: true, maxSockets: 128 }) });
  proxy.on('error', (_err, _req, res) => { (res as import('node:http').ServerResponse).writeHead?.(502); res.end(); });
  ready(createServer((req, res) => proxy.web(req, res)));
} else if (kind === 'undici') {
  // The forwarding engine alone, with nothing else: the ceiling Banyan's features are measured against.
  const pool = new Pool(target!, { connections: 128 });
  ready(createServer((req, res) => {
    pool.stream({ path: req.url!, method: 'GET', headers: { host: req.headers.host ?? '' } }, ({ statusCode, headers }) => {
      res.writeHead(statusCode, headers as Record<string, string>);
      return res;
    }).catch(() => res.destroy());
  }));
} else if (kind === 'banyan') {
  const metrics = createProxyMetrics();
  const table = compileTable(benchRoutes(Number(routeCount)), 1);
  const proxy = createProxy({
    legacyUrl: target!, appUrl: target!, metrics, table: { current: table }, log: () => {},
    pins: { secrets: [BENCH_SECRET], ttlMs: 30_000, mode: 'lsn', currentLsn: async () => 0n },
  });
  ready(createServer(proxy.app.callback()));
} else {
  process.stderr.write(`unknown contestant ${kind}\n`);
  process.exit(2);
}
