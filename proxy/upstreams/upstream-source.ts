/**
 * Where an upstream's endpoints come from: a fixed list, an environment
 * variable of this proxy, or a DNS name resolved again and again. Each gives
 * a list of endpoint URLs and, when something is wrong, a problem in words
 * an operator can act on.
 */

import type { LookupAddress } from 'node:dns';
import { lookup as systemLookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { RESOLVE_EVERY_DEFAULT_MS, type UpstreamSpec } from '../../routing/table/upstreams.js';
import { endpointUrlProblem, parseEndpointList, parseEndpoints } from './endpoint-url.js';

/** A source's answer: the endpoints it names now, and what is wrong if anything is. */
export interface Found {
  /** Undefined when the source cannot tell (a DNS lookup failed or is under way): the endpoints there are stay. */
  readonly urls: readonly string[] | undefined;
  readonly problem: string | undefined;
  /** For DNS: the name the addresses came from (the name TLS certificates carry). */
  readonly tlsName?: string | undefined;
}

/** Resolves a host name to all its addresses, as `dns.promises.lookup(host, { all: true })`. */
export type Lookup = (hostname: string) => Promise<readonly LookupAddress[]>;

/** The system resolver (the hosts file, then DNS), as every other client on the machine resolves. */
export const lookupAll: Lookup = (hostname) => systemLookup(hostname, { all: true });

/** The source of `spec` in a few words, for the snapshot; two specs with the same description have the same source. */
export function describeSource(spec: UpstreamSpec): string {
  if (spec.endpoints !== undefined) return 'endpoints';
  if (spec.dns !== undefined) return `dns ${spec.dns} every ${spec.resolveEveryMs ?? RESOLVE_EVERY_DEFAULT_MS} ms`;
  if (spec.env !== undefined) return `env ${spec.env}`;
  return 'none';
}

/** The endpoints of a source that does not change while the proxy runs: a list, or a variable read now. */
export function fixedEndpoints(spec: UpstreamSpec, environment: (name: string) => string | undefined): Found {
  if (spec.endpoints !== undefined) {
    const parsed = parseEndpoints(spec.endpoints);
    return 'problem' in parsed
      ? { urls: [], problem: `its endpoints are not a valid list: ${parsed.problem}` }
      : { urls: parsed.urls, problem: undefined };
  }
  if (spec.env !== undefined) {
    const text = environment(spec.env);
    if (text === undefined || text.trim() === '') return { urls: [], problem: `${spec.env} is not set on this proxy` };
    const parsed = parseEndpointList(text);
    return 'problem' in parsed
      ? { urls: [], problem: `${spec.env} is not a valid endpoint list: ${parsed.problem}` }
      : { urls: parsed.urls, problem: undefined };
  }
  return { urls: [], problem: 'it names no endpoints, dns name or env variable' };
}

/**
 * A DNS name resolved now and every `everyMs` after the last answer: each
 * address is an endpoint with the name's scheme and port. A failed lookup
 * names no endpoints, so the upstream keeps those it has: a resolver hiccup
 * does not empty it.
 */
export class DnsEndpoints {
  /** Settles once the first lookup has answered or failed. */
  readonly settled: Promise<void>;
  readonly #url: URL | undefined;
  readonly #hostname: string;
  readonly #tlsName: string | undefined;
  readonly #everyMs: number;
  readonly #lookup: Lookup;
  readonly #found: (found: Found) => void;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  /** Starts resolving; `found` is told every answer (the same list again included). */
  constructor(spec: UpstreamSpec & { readonly dns: string }, lookup: Lookup, found: (found: Found) => void) {
    this.#everyMs = spec.resolveEveryMs ?? RESOLVE_EVERY_DEFAULT_MS;
    this.#lookup = lookup;
    this.#found = found;
    const problem = endpointUrlProblem(spec.dns);
    this.#url = problem === undefined ? new URL(spec.dns) : undefined;
    // URL keeps an IPv6 literal's brackets in `hostname`; the resolver wants the bare address.
    this.#hostname = this.#url?.hostname.replace(/^\[(.*)\]$/, '$1') ?? '';
    // TLS names a server by its DNS name only (RFC 6066).
    this.#tlsName = isIP(this.#hostname) === 0 ? this.#hostname : undefined;
    if (problem !== undefined) {
      found({ urls: [], problem: `its dns URL is not valid: ${problem}` });
      this.settled = Promise.resolve();
      return;
    }
    found({ urls: undefined, problem: `DNS lookup of ${this.#hostname} has not answered yet` });
    this.settled = this.#resolve();
  }

  /** Stops resolving; an answer still on its way is dropped. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  async #resolve(): Promise<void> {
    const url = this.#url!;
    let found: Found;
    try {
      const addresses = await this.#lookup(this.#hostname);
      const port = url.port === '' ? '' : `:${url.port}`;
      const urls = [...new Set(addresses.map((a) => `${url.protocol}//${a.family === 6 ? `[${a.address}]` : a.address}${port}`))].sort();
      if (urls.length === 0) throw Object.assign(new Error('no addresses'), { code: 'ENODATA' });
      found = { urls, problem: undefined, tlsName: this.#tlsName };
    } catch (err) {
      const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      found = { urls: undefined, problem: `DNS lookup of ${this.#hostname} failed: ${why}` };
    }
    if (this.#stopped) return;
    this.#found(found);
    this.#timer = setTimeout(() => void this.#resolve(), this.#everyMs);
    this.#timer.unref();
  }
}
