import { connect } from 'node:net';
import { BanyanError } from '../lib/errors.js';
import { LEGACY } from '../routing/table/index.js';
import type { UpstreamSet, UpstreamSnapshot } from './upstreams/index.js';

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
  /** The services this proxy sends to, as they are now. */
  readonly upstreams: () => readonly UpstreamSnapshot[];
  readonly tableVersion: () => number;
  readonly routeCount: () => number;
}

/** Endpoint states that take requests. */
const TAKING: ReadonlySet<string> = new Set(['healthy', 'slow-start']);

/**
 * The proxy's `/readyz` checks, the same however it is run: legacy must have
 * an endpoint that accepts connections and takes requests, and a route table
 * must be loaded. Every other service is reported, endpoint by endpoint with
 * its breaker, but does not gate readiness: every proxy shares it, so taking
 * one out of the load balancer would not help, and routes with fallback are
 * still answered by legacy.
 */
export function proxyReadiness(options: ProxyReadinessOptions): () => Promise<Record<string, ReadinessCheck>> {
  return async () => {
    const checks: Record<string, ReadinessCheck> = {};
    await Promise.all(
      options.upstreams().map(async (u) => {
        const probes = await Promise.all(u.endpoints.map((e) => reachable(e.url)));
        const taking = u.endpoints.filter((e, i) => probes[i]!.ok && TAKING.has(e.state)).length;
        const each = u.endpoints.map(
          (e, i) => `${e.url} ${e.state}, breaker ${e.breaker}${probes[i]!.ok ? '' : ` (${probes[i]!.detail})`}`,
        );
        const detail =
          u.endpoints.length === 0
            ? `no endpoints${u.problem ? `: ${u.problem}` : ''}`
            : `${taking} of ${u.endpoints.length} endpoints taking requests: ${each.join('; ')}${u.problem ? `; ${u.problem}` : ''}`;
        const legacy = u.name === LEGACY;
        checks[u.name] = {
          ok: taking > 0,
          detail: legacy || taking > 0 ? detail : `${detail} (routes with fallback are answered by legacy)`,
          required: legacy,
        };
      }),
    );
    const version = options.tableVersion();
    checks['routes'] = {
      ok: version > 0,
      detail: version > 0 ? `route table version ${version}, ${options.routeCount()} routes` : 'no route table loaded',
      required: true,
    };
    return checks;
  };
}

/**
 * A proxy does not start without somewhere to send what no route claims: once the table's sources have
 * answered (a DNS name's first lookup), legacy must have an endpoint, or start-up fails naming what to set.
 */
export async function requireLegacy(upstreams: UpstreamSet): Promise<void> {
  await upstreams.settled();
  const legacy = upstreams.get(LEGACY)?.snapshot();
  if (legacy && legacy.endpoints.length > 0) return;
  throw new BanyanError(
    'missing-setting',
    `the legacy upstream has no endpoints${legacy?.problem ? `: ${legacy.problem}` : ''}`,
    'set LEGACY_URL (a URL, or a comma list of them), or give legacy its endpoints in the route table',
  );
}
