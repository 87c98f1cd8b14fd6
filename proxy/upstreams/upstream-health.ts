/**
 * Active health checks of one endpoint: a GET of the check's path every
 * interval, each result handed to the endpoint, which keeps the counts. The
 * checks have a one-connection client of their own, so a check never waits
 * behind the proxy's traffic in the endpoint's pool, and a saturated pool
 * does not look like a dead endpoint.
 */

import { Client } from 'undici';
import type { HealthCheck } from '../../routing/table/upstreams.js';
import type { Endpoint } from './upstream-endpoint.js';

/** A health check with its defaults filled in. */
export type HealthSettings = Required<HealthCheck>;

/** The checks of one endpoint, from construction until `stop()`. */
export class HealthChecker {
  readonly #endpoint: Endpoint;
  readonly #check: HealthSettings;
  readonly #client: Client;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  /** Starts checking `endpoint`; the first check comes at a random point of the first interval, so checks of many endpoints (and proxies) do not come in bursts. */
  constructor(endpoint: Endpoint, check: HealthSettings, random: () => number) {
    this.#endpoint = endpoint;
    this.#check = check;
    this.#client = new Client(endpoint.url, {
      headersTimeout: check.timeoutMs,
      bodyTimeout: check.timeoutMs,
      ...(endpoint.tlsName !== undefined && endpoint.url.startsWith('https:') ? { connect: { servername: endpoint.tlsName } } : {}),
    });
    this.#schedule(Math.floor(random() * check.intervalMs));
  }

  /** Stops the checks and drops the connection (a check under way is abandoned). */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#client.destroy().catch(() => {});
  }

  #schedule(ms: number): void {
    this.#timer = setTimeout(() => void this.#run(), ms);
    this.#timer.unref();
  }

  async #run(): Promise<void> {
    const { path, timeoutMs } = this.#check;
    let ok = false;
    let detail: string;
    try {
      const { statusCode, body } = await this.#client.request({
        method: 'GET',
        path,
        headers: { 'user-agent': 'banyan-health-check' },
        signal: AbortSignal.timeout(timeoutMs),
      });
      await body.dump();
      ok = statusCode >= 200 && statusCode < 400;
      detail = `GET ${path} answered ${statusCode}`;
    } catch (err) {
      detail = `GET ${path} failed: ${(err as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : (err as Error).message}`;
    }
    if (this.#stopped) return;
    this.#endpoint.checked(ok, detail);
    this.#schedule(this.#check.intervalMs);
  }
}
