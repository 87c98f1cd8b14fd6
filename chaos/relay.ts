import { createServer, connect, type Server, type Socket } from 'node:net';

/** A TCP relay: what reaches `listen` is piped to `target`, byte for byte, both ways. */
export interface Relay {
  readonly host: string;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Listens on `host` (a port of its own) and pipes each connection to `target` (`host:port`). A component in
 * a namespace reaches the servers of this one (which listen on loopback only) through relays, one host
 * address each, so a partition can cut one of them alone.
 */
export async function startRelay(host: string, target: { host: string; port: number }): Promise<Relay> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(target);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const address = server.address();
  return {
    host,
    port: typeof address === 'object' && address ? address.port : 0,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
