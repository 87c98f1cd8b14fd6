import { connect } from 'node:net';

/** One readiness check: whether it passed, what was seen, and whether it gates readiness. */
export interface ReadinessCheck {
  readonly ok: boolean;
  readonly detail: string;
  /** A check that is not required is reported but never makes the proxy unready. */
  readonly required: boolean;
}

/** Whether something accepts TCP connections at `url`'s host and port, within `timeoutMs`. */
export function reachable(url: string, timeoutMs = 1_000): Promise<{ ok: boolean; detail: string }> {
  const { hostname, port, protocol } = new URL(url);
  const host = hostname.replace(/^\[|\]$/g, '');
  return new Promise((resolve) => {
    const socket = connect({ host, port: Number(port || (protocol === 'https:' ? 443 : 80)) });
    const done = (ok: boolean, detail: string) => {
      socket.destroy();
      resolve({ ok, detail });
    };
    socket.setTimeout(timeoutMs, () => done(false, `no answer from ${url} within ${timeoutMs} ms`));
    socket.once('connect', () => done(true, `accepting connections at ${url}`));
    socket.once('error', (err: NodeJS.ErrnoException) => done(false, `${err.code ?? err.message} at ${url}`));
  });
}

export interface ProxyReadinessOptions {
  readonly legacyUrl: string;
  readonly appUrl: string;
  readonly tableVersion: () => number;
  readonly routeCount: () => number;
  readonly appBreaker: () => 'closed' | 'half-open' | 'open';
}

/**
 * The proxy's `/readyz` checks, the same however it is run: legacy must
 * accept connections and a route table must be loaded. The new app is
 * reported with its breaker's state but does not gate readiness: every proxy
 * shares it, so taking one out of the load balancer would not help, and
 * routes with fallback are still answered by legacy.
 */
export function proxyReadiness(options: ProxyReadinessOptions): () => Promise<Record<string, ReadinessCheck>> {
  return async () => {
    const [legacy, app] = await Promise.all([reachable(options.legacyUrl), reachable(options.appUrl)]);
    const version = options.tableVersion();
    const breaker = options.appBreaker();
    return {
      legacy: { ...legacy, required: true },
      app: { ok: app.ok, detail: `${app.detail}; breaker ${breaker}${app.ok ? '' : ' (routes with fallback are answered by legacy)'}`, required: false },
      routes: { ok: version > 0, detail: version > 0 ? `route table version ${version}, ${options.routeCount()} routes` : 'no route table loaded', required: true },
    };
  };
}
