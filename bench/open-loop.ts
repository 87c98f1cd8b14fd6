/**
 * An open-loop load generator, for overload: requests leave at a fixed rate whether or not earlier
 * ones were answered, as real users arrive, so a proxy past its capacity shows what its users see.
 *   open-loop URL RATE SECONDS CONNECTIONS [COOKIE]
 *   → {"offered":…, "sent":…, "ok":…, "shed":…, "errors":…, "p50":ms, "p99":ms} (latencies of 2xx answers only)
 * Latency counts from the moment a request was due, not when a free connection took it, so time
 * spent waiting in this client's queue is not hidden (coordinated omission). A request still
 * unanswered 10 s after it was due counts as an error; the run stops by itself.
 */
import { Pool } from 'undici';

const [url, rateText, secondsText, connectionsText, cookie] = process.argv.slice(2);
const target = new URL(url!);
const rate = Number(rateText);
const seconds = Number(secondsText);
const pool = new Pool(target.origin, { connections: Number(connectionsText), pipelining: 1, headersTimeout: 10_000, bodyTimeout: 10_000 });
const latencies: number[] = [];
let [sent, shed, errors] = [0, 0, 0];
const inFlight: Promise<void>[] = [];

async function one(due: number): Promise<void> {
  try {
    const res = await pool.request({ path: target.pathname + target.search, method: 'GET', headers: cookie ? { cookie } : {} });
    await res.body.arrayBuffer();
    if (res.statusCode === 503) shed++;
    else if (res.statusCode >= 400) errors++;
    else latencies.push(performance.now() - due);
  } catch {
    errors++;
  }
}

const start = performance.now();
const total = Math.round(rate * seconds);
await new Promise<void>((resolve) => {
  const tick = () => {
    const now = performance.now();
    const due = Math.min(total, Math.floor(((now - start) / 1000) * rate));
    for (; sent < due; sent++) inFlight.push(one(start + (sent / rate) * 1000));
    if (sent >= total) resolve();
    else setTimeout(tick, 1);
  };
  tick();
});
await Promise.all(inFlight);
latencies.sort((a, b) => a - b);
const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
process.stdout.write(`${JSON.stringify({ offered: rate, sent, ok: latencies.length, shed, errors, p50: at(0.5), p99: at(0.99) })}\n`);
await pool.close();
