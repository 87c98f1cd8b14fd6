import { resolve4, resolve6 } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { DbNodeConfig } from './db-nodes.js';

/** A host name's addresses, as DNS has them now (empty or a failure: use the name as given). */
export type Resolve = (host: string) => Promise<readonly string[]>;

/**
 * The servers behind a configured list: an entry whose host name resolves to
 * several addresses (a DNS name for a set of replicas, as GitLab's load
 * balancer discovers them) stands for one server per address, named
 * `<entry>@<address>`; any other entry is one server, as given. Sorted, so
 * the same answer gives the same list.
 */
export async function expandNodes(entries: readonly DbNodeConfig[], resolve: Resolve): Promise<DbNodeConfig[]> {
  const out: DbNodeConfig[] = [];
  for (const entry of entries) {
    const url = new URL(entry.url);
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const addresses = isIP(host) ? [] : [...new Set(await resolve(host).catch(() => []))].sort();
    if (addresses.length <= 1) {
      out.push(entry);
      continue;
    }
    for (const address of addresses) {
      const one = new URL(entry.url);
      one.hostname = isIP(address) === 6 ? `[${address}]` : address;
      out.push({ name: `${entry.name}@${address}`, url: one.toString() });
    }
  }
  return out;
}

/**
 * A name's addresses from DNS (not /etc/hosts): IPv4, or IPv6 when it has none, so a name with both
 * kinds of record for one server (`localhost` on some resolvers) is not taken for two servers.
 */
export const resolveHost: Resolve = async (host) => {
  const v4 = await resolve4(host).catch(() => [] as string[]);
  return v4.length ? v4 : resolve6(host).catch(() => [] as string[]);
};
