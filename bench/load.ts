/**
 * A small closed-loop load generator, for machines without wrk:
 *   load URL CONNECTIONS SECONDS [COOKIE]  → prints {"rps":…, "p50":ms, "p99":ms, "errors":…} as JSON
 * Each connection sends its next request when the previous answer is read.
 */
import { Pool } from 'undici';

const [url, connectionsText, secondsText, cookie] = process.argv.slice(2);
const target = new URL(url!);
const connections = Number(connectionsText);
const until = Date.now() + Number(secondsText) * 1000;
const pool = new Pool(target.origin, { connections, pipelining: 1 });
const latencies: number[] = [];
let errors = 0;

async function worker(): Promise<void> {
  while (Date.now() < until) {
    const t0 = process.hrtime.bigint();
    try {
      const res = await pool.request({ path: target.pathname + target.search, method: 'GET', headers: cookie ? { cookie } : {} });
      await res.body.arrayBuffer();
      if (res.statusCode >= 400) errors++;
    } catch {
      errors++;
    }
    latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
}

const started = Date.now();
await Promise.all(Array.from({ length: connections }, worker));
const seconds = (Date.now() - started) / 1000;
latencies.sort((a, b) => a - b);
const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
process.stdout.write(`${JSON.stringify({ rps: latencies.length / seconds, p50: at(0.5), p99: at(0.99), errors })}\n`);
await pool.close();
