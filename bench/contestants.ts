/**
 * One contestant of the proxy benchmark, run as its own process:
 *   backend PORT                     a keep-alive server answering 1 KB
 *   http-proxy-3 PORT TARGET         a bare http-proxy-3 server with a keep-alive agent
 *   undici PORT TARGET               a bare node:http server forwarding with undici Pool.stream()
 *   fastify PORT TARGET              Fastify with @fastify/http-proxy (undici underneath): the fastest framework-based Node proxy
 *   banyan PORT TARGET ROUTES [MORE…]  Banyan's proxy with every feature on (pins, metrics, breakers, usage ledger, feature
 *                                    extraction, autopilot evidence) and ROUTES routes, compiled (from dist/); with MORE
 *                                    targets, legacy and the app are each those endpoints, with active health checks
 * Prints "ready" when it listens.
 */
import { createServer, Agent } from 'node:http';
import { createProxyServer } from 'http-proxy-3';
import { Pool } from 'undici';
import Fastify from 'fastify';
import fastifyProxy from '@fastify/http-proxy';
import { BENCH_SECRET, benchRoutes } from './routes.js';

const [kind, portText, target, routeCount, ...moreTargets] = process.argv.slice(2);
const port = Number(portText);
const BODY = Buffer.alloc(1024, 'x');
// A clean exit on SIGINT lets --cpu-prof write its profile.
process.on('SIGINT', () => process.exit(0));

const CHUNK = Buffer.alloc(64 * 1024);

/** GET /big/N: N MiB of zeros, with its Content-Length, written as fast as the reader takes them. */
function big(res: import('node:http').ServerResponse, bytes: number): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes });
  let left = bytes;
  const more = () => {
    while (left > 0) {
      const n = Math.min(left, CHUNK.length);
      left -= n;
      if (!res.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) return void res.once('drain', more);
    }
    res.end();
  };
  more();
}

/** POST /sink: reads the whole body and answers how many bytes came. */
function sink(req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): void {
  let n = 0;
  req.on('data', (d: Buffer) => {
    n += d.length;
  });
  req.on('end', () => res.end(String(n)));
}

function ready(server: import('node:http').Server): void {
  server.keepAliveTimeout = 60_000;
  server.listen(port, '127.0.0.1', () => process.stdout.write('ready\n'));
}

if (kind === 'backend') {
  const server = createServer((req, res) => {
    const url = req.url ?? '/';
    if (url.startsWith('/big/')) return big(res, Number(url.slice(5)) * 1024 * 1024);
    if (url === '/sink') return sink(req, res);
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BODY.length });
    res.end(BODY);
  });
  // WebSocket-style tunnels: after the 101, every byte comes back as it was sent.
  server.on('upgrade', (_req, socket) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    socket.pipe(socket);
    socket.on('error', () => socket.destroy());
  });
  ready(server);
} else if (kind === 'http-proxy-3') {
  const proxy = createProxyServer({ target, agent: new Agent({ keepAlive: true, maxSockets: 128 }) });
  proxy.on('error', (_err, _req, res) => {
    const r = res as import('node:http').ServerResponse;
    if (typeof r.writeHead === 'function') {
      if (!r.headersSent) r.writeHead(502);
      r.end();
    } else res.destroy();
  });
  const server = createServer((req, res) => proxy.web(req, res));
  server.on('upgrade', (req, socket, head) => proxy.ws(req, socket, head));
  ready(server);
} else if (kind === 'undici') {
  // The forwarding engine alone, with nothing else: the ceiling Banyan's features are measured against.
  const pool = new Pool(target!, { connections: 128 });
  ready(
    createServer((req, res) => {
      pool
        .stream({ path: req.url!, method: 'GET', headers: { host: req.headers.host ?? '' } }, ({ statusCode, headers }) => {
          res.writeHead(statusCode, headers as Record<string, string>);
          return res;
        })
        .catch(() => res.destroy());
    }),
  );
} else if (kind === 'fastify') {
  const app = Fastify({ logger: false });
  await app.register(fastifyProxy, { upstream: target! });
  await app.listen({ port, host: '127.0.0.1' });
  app.server.keepAliveTimeout = 60_000;
  process.stdout.write('ready\n');
} else if (kind === 'banyan') {
  // Compiled (dist/, which bench:proxy builds first), as an installed package or a built checkout runs it.
  const load = <T>(path: string) => import(new URL(`../dist/${path}`, import.meta.url).href) as Promise<T>;
  const { Autopilot } = await load<typeof import('../autopilot/pilot.js')>('autopilot/pilot.js');
  const { createProxyMetrics } = await load<typeof import('../metrics/catalog.js')>('metrics/catalog.js');
  const { UsageLedger } = await load<typeof import('../metrics/usage.js')>('metrics/usage.js');
  const { connect } = await load<typeof import('../lib/database.js')>('lib/database.js');
  const { createProxy } = await load<typeof import('../proxy/proxy.js')>('proxy/proxy.js');
  const { compileTable } = await load<typeof import('../routing/table/index.js')>('routing/table/route-table.js');
  const metrics = createProxyMetrics();
  const endpoints = [target!, ...moreTargets];
  const health = { path: '/', intervalMs: 1_000 };
  const table = moreTargets.length
    ? compileTable(benchRoutes(Number(routeCount)), 1, [
        { name: 'legacy', endpoints, health },
        { name: 'app', endpoints, health },
      ])
    : compileTable(benchRoutes(Number(routeCount)), 1);
  // Counted per request as in production; never flushed, so no database is reached (the pool connects on first use).
  const db = connect('postgres://bench@127.0.0.1:1/none', { max: 1 });
  const usage = new UsageLedger({ db });
  // The benchmarked route under a plan: the autopilot's evidence is counted on every request too (never flushed here).
  const autopilot = new Autopilot({
    db,
    tickMs: 1_000,
    leaseMs: 5_000,
    shadowCounts: () => ({ match: 0, mismatch: 0 }),
    changed: async () => {},
    log: () => {},
  });
  autopilot.sampler.watch(['legacy.project_json']);
  const proxy = createProxy({
    legacyUrl: target!,
    appUrl: target!,
    metrics,
    table: { current: table },
    log: () => {},
    usage,
    observe: (request) => autopilot.sampler.observe(request),
    pins: { secrets: [BENCH_SECRET], ttlMs: 30_000, mode: 'lsn', currentPosition: async () => ({ lsn: 0n }) },
    // The load generator is one address that stands for every client: no per-client share.
    clientSharePercent: 100,
  });
  const handle = proxy.app.callback();
  ready(createServer((req, res) => void handle(req, res)));
} else {
  process.stderr.write(`unknown contestant ${kind}\n`);
  process.exit(2);
}
