import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

/** RFC 9110 §7.6.1 hop-by-hop headers, plus ones undici refuses to send. */
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer',
  'transfer-encoding', 'upgrade', 'expect', 'host',
]);

/** What the proxy knows of the client connection. */
export interface ClientInfo {
  readonly ip: string;
  readonly proto: 'http' | 'https';
  readonly host: string | undefined;
  readonly requestId: string;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The client's `X-Request-Id` when it is safe to pass on, else undefined. */
export function acceptableRequestId(value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' && REQUEST_ID.test(value) ? value : undefined;
}

/**
 * The headers sent upstream: hop-by-hop headers (and any named in
 * `Connection`) removed, every client-sent `X-Banyan-*` and forwarding header
 * dropped (a client must not speak for the proxy), then our own set.
 */
export function upstreamRequestHeaders(incoming: IncomingHttpHeaders, client: ClientInfo): Record<string, string | string[]> {
  const named = connectionTokens(incoming['connection']);
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(incoming)) {
    if (value === undefined || HOP_BY_HOP.has(name) || named.has(name)) continue;
    if (name.startsWith('x-banyan-') || name.startsWith('x-forwarded-') || name === 'forwarded' || name === 'x-request-id') continue;
    out[name] = value;
  }
  if (client.host) out['host'] = client.host;
  out['x-forwarded-for'] = client.ip;
  out['x-forwarded-proto'] = client.proto;
  if (client.host) out['x-forwarded-host'] = client.host;
  out['x-request-id'] = client.requestId;
  return out;
}

/** The upstream's response headers as the client may see them. */
export function clientResponseHeaders(upstream: Record<string, string | string[] | undefined>, requestId: string): OutgoingHttpHeaders {
  const named = connectionTokens(upstream['connection']);
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(upstream)) {
    if (value === undefined || HOP_BY_HOP.has(name) || named.has(name)) continue;
    // The write LSN is for the proxy's pin; clients never see it.
    if (name === 'x-banyan-write-lsn') continue;
    out[name] = value;
  }
  out['x-request-id'] = requestId;
  return out;
}

function connectionTokens(value: string | string[] | undefined): Set<string> {
  const text = Array.isArray(value) ? value.join(',') : value ?? '';
  return new Set(text.split(',').map((t) => t.trim().toLowerCase()).filter(Boolean));
}
