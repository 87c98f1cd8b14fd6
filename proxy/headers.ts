import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import { clientKey } from './client-key.js';

/** RFC 9110 §7.6.1 hop-by-hop headers, plus ones undici refuses to send. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'expect',
  'host',
]);

/** What the proxy knows of the client, after deciding whether to believe forwarding headers. */
export interface ClientInfo {
  /** The client's address: the socket's, or the first hop of a trusted X-Forwarded-For. */
  readonly ip: string;
  /** The X-Forwarded-For value to send: the trusted chain plus the socket's address. */
  readonly forwardedFor: string;
  readonly proto: string;
  /** The Host the client asked for (sent upstream unchanged). */
  readonly host: string | undefined;
  readonly forwardedHost: string | undefined;
  readonly requestId: string;
}

/**
 * Who the client is. Forwarding headers are believed only when the socket's
 * peer is a trusted proxy (an address in `trusted`); otherwise any client
 * could claim any address.
 */
export function clientInfo(
  headers: IncomingHttpHeaders,
  remote: string,
  tlsSocket: boolean,
  trusted: TrustedProxies,
  requestId: string,
): ClientInfo {
  const host = headers['host'];
  if (trusted.has(remote)) {
    const chain = typeof headers['x-forwarded-for'] === 'string' ? headers['x-forwarded-for'] : undefined;
    const proto = typeof headers['x-forwarded-proto'] === 'string' ? headers['x-forwarded-proto'] : undefined;
    const fhost = typeof headers['x-forwarded-host'] === 'string' ? headers['x-forwarded-host'] : undefined;
    return {
      ip: chain ? (clientOfChain(chain, trusted) ?? remote) : remote,
      forwardedFor: chain ? `${chain}, ${remote}` : remote,
      proto: proto ?? (tlsSocket ? 'https' : 'http'),
      host,
      forwardedHost: fhost ?? host,
      requestId,
    };
  }
  return { ip: remote, forwardedFor: remote, proto: tlsSocket ? 'https' : 'http', host, forwardedHost: host, requestId };
}

/**
 * The client in an X-Forwarded-For chain: the rightmost address that is not a trusted proxy. Each trusted
 * hop appends the address it saw; everything left of the first untrusted one was written by the client
 * itself, so taking the leftmost entry would let anyone choose their address (and their per-address
 * limits). When every entry is trusted, the leftmost.
 */
export function clientOfChain(chain: string, trusted: TrustedProxies): string | undefined {
  const hops = chain
    .split(',')
    .map((h) => h.trim())
    .filter(Boolean);
  for (let i = hops.length - 1; i >= 0; i--) if (!trusted.has(hops[i]!)) return hops[i];
  return hops[0];
}

/** The set of proxy addresses whose forwarding headers are believed. */
export interface TrustedProxies {
  has(address: string): boolean;
}

/**
 * Parses a comma list of addresses and IPv4 CIDR blocks (`127.0.0.1,
 * 10.0.0.0/8, ::1`). IPv4-mapped IPv6 peers (`::ffff:10.1.2.3`) match their IPv4 form.
 */
export function trustedProxies(list: string | undefined): TrustedProxies {
  const exact = new Set<string>();
  const blocks: [number, number][] = [];
  for (const item of (list ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const [addr, bits] = item.split('/');
    const v4 = ipv4ToInt(addr!);
    if (bits !== undefined && v4 !== undefined && /^\d+$/.test(bits) && Number(bits) <= 32) {
      const mask = Number(bits) === 0 ? 0 : (~0 << (32 - Number(bits))) >>> 0;
      blocks.push([(v4 & mask) >>> 0, mask]);
    } else if (bits === undefined) {
      exact.add(addr!.toLowerCase());
    } else {
      throw new Error(`BANYAN_TRUSTED_PROXIES: "${item}" is not an address or an IPv4 CIDR block`);
    }
  }
  return {
    has(address) {
      const bare = address.startsWith('::ffff:') ? address.slice(7) : address;
      if (exact.has(bare.toLowerCase()) || exact.has(address.toLowerCase())) return true;
      const v4 = blocks.length ? ipv4ToInt(bare) : undefined;
      return v4 !== undefined && blocks.some(([net, mask]) => (v4 & mask) >>> 0 === net);
    },
  };
}

function ipv4ToInt(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) return undefined;
  return parts.reduce((n, p) => ((n << 8) | Number(p)) >>> 0, 0);
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

// A random prefix per process and a counter: unique across processes and restarts like a UUID, at the
// cost of an increment (randomUUID allocated about 0.7 KB per request, measured).
const ID_PREFIX = randomBytes(9).toString('base64url');
let idCounter = 0;

/** A new request id: `<12 random characters per process>-<counter in base 36>`. */
export function newRequestId(): string {
  return `${ID_PREFIX}-${(++idCounter).toString(36)}`;
}

/** The client's `X-Request-Id` when it is safe to pass on, else undefined. */
export function acceptableRequestId(value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' && REQUEST_ID.test(value) ? value : undefined;
}

/**
 * The headers sent upstream: hop-by-hop headers (and any named in
 * `Connection`) removed, every client-sent `X-Banyan-*` and forwarding header
 * dropped (a client must not speak for the proxy), then our own set,
 * with `X-Banyan-Client`: the client's address (an IPv6 one by its /64).
 */
export function upstreamRequestHeaders(
  incoming: IncomingHttpHeaders,
  client: ClientInfo,
  extra?: Record<string, string>,
): Record<string, string | string[]> {
  const named = connectionTokens(incoming['connection']);
  const out: Record<string, string | string[]> = {};
  // for…in, not Object.entries: no array per header on every request.
  for (const name in incoming) {
    const value = incoming[name];
    if (value === undefined || HOP_BY_HOP.has(name) || named.has(name)) continue;
    if (
      name.startsWith('x-banyan-') ||
      name.startsWith('x-forwarded-') ||
      name === 'forwarded' ||
      name === 'x-request-id' ||
      name === 'banyan-pin'
    )
      continue;
    out[name] = value;
  }
  if (client.host) out['host'] = client.host;
  out['x-forwarded-for'] = client.forwardedFor;
  out['x-forwarded-proto'] = client.proto;
  if (client.forwardedHost) out['x-forwarded-host'] = client.forwardedHost;
  out['x-request-id'] = client.requestId;
  // Who the backends count logins by: the proxy's idea of the client, never the client's own claim.
  out['x-banyan-client'] = clientKey(client.ip);
  if (extra) Object.assign(out, extra);
  return out;
}

/** A header name or value as undici hands it over: bytes, read as Latin-1 (what HTTP/1.1 carries). */
export type RawHeader = Buffer | string;

function text(value: RawHeader): string {
  return typeof value === 'string' ? value : value.toString('latin1');
}

/**
 * The upstream's response headers as the client may see them, from the raw
 * name/value list: names keep the backend's spelling and repeated headers
 * stay repeated; hop-by-hop headers (and those Connection names) and the
 * write LSN are dropped, and the proxy's request id is set.
 */
export function clientResponseHeaders(raw: readonly RawHeader[], requestId: string, debug = false): OutgoingHttpHeaders {
  let named: ReadonlySet<string> = NO_TOKENS;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (raw[i]!.length === 10 && text(raw[i]!).toLowerCase() === 'connection') named = connectionTokens(text(raw[i + 1]!), named);
  }
  const out: OutgoingHttpHeaders = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = text(raw[i]!);
    const lower = name.toLowerCase();
    // Trailer announces the trailers the proxy passes on at the end of the body: not hop-by-hop in a response.
    if ((HOP_BY_HOP.has(lower) && lower !== 'trailer') || named.has(lower)) continue;
    // The write and read positions are for the proxy's pin, and the request id is the proxy's: clients see none from the backend.
    if (INTERNAL_RESPONSE_HEADERS.has(lower)) continue;
    // Which database server answered is the operator's business (BANYAN_DEBUG_HEADERS), not the client's.
    if (!debug && (lower === 'x-banyan-read-from' || lower === 'x-legacy-read-from')) continue;
    const value = text(raw[i + 1]!);
    const existing = out[name];
    out[name] = existing === undefined ? value : Array.isArray(existing) ? [...existing, value] : [existing as string, value];
  }
  out['x-request-id'] = requestId;
  return out;
}

/** Raw name/value pairs as an object with lower-case names, repeated headers as arrays (what a hook or a comparison reads). */
export function parsedHeaders(raw: readonly RawHeader[]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = text(raw[i]!).toLowerCase();
    const value = text(raw[i + 1]!);
    const existing = out[name];
    out[name] = existing === undefined ? value : Array.isArray(existing) ? [...existing, value] : [existing, value];
  }
  return out;
}

const NO_TOKENS: ReadonlySet<string> = new Set();
const INTERNAL_RESPONSE_HEADERS: ReadonlySet<string> = new Set([
  'x-banyan-write-lsn',
  'x-banyan-write-timeline',
  'x-banyan-read-lsn',
  'x-banyan-read-timeline',
  'x-request-id',
]);

/** The header names a Connection header lists (to drop them too), added to `to`; the usual values list none. */
function connectionTokens(value: string | string[] | undefined, to: ReadonlySet<string> = NO_TOKENS): ReadonlySet<string> {
  // keep-alive is hop-by-hop anyway, and close names no header: nearly every request and response.
  if (value === undefined || value === 'keep-alive' || value === 'close' || value === 'Keep-Alive' || value === 'Close') return to;
  const text = Array.isArray(value) ? value.join(',') : value;
  return new Set([
    ...to,
    ...text
      .split(',')
      .map((t) => t.trim().toLowerCase())
      .filter(Boolean),
  ]);
}

const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Whether a method is safe (RFC 9110 §9.2.1, TRACE aside): such requests may be replayed on another backend. */
export function isSafe(method: string): boolean {
  return SAFE_METHODS.has(method);
}

/** Whether the request carries a body: a declared length above zero, or chunked. */
export function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}
