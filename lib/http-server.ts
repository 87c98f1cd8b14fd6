import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { BanyanError } from './errors.js';

/** An HTTP server that is listening, with its URL and a close that also ends idle keep-alive sockets. */
export interface Listening {
  readonly server: Server;
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * A request handler: Node's plain listener, or one that answers through a promise (Koa's
 * `app.callback()`). A promise that rejects ends that response's connection; it never
 * becomes an unhandled rejection that takes the process down.
 */
export type Handler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

/**
 * Listens on `host:port` (0: any free port). A port in use is an error that
 * names the setting to change, not a stack trace.
 */
export function listen(handler: Handler | Server, port: number, host: string, setting: string, drainMs = 2_000): Promise<Listening> {
  const server = typeof handler === 'function' ? createServer(settled(handler)) : handler;
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE') {
        reject(
          new BanyanError(
            'port-in-use',
            `port ${port} on ${host} is already in use`,
            `set ${setting} to a free port, or stop what is using it`,
          ),
        );
      } else if (err.code === 'EACCES') {
        reject(new BanyanError('port-denied', `not allowed to listen on port ${port}`, `set ${setting} to a port above 1023`));
      } else {
        reject(new BanyanError('listen-failed', `cannot listen on ${host}:${port}: ${err.message}`, `check ${setting}`));
      }
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      const address = server.address() as AddressInfo;
      const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
      resolve({
        server,
        port: address.port,
        url: `http://${shownHost}:${address.port}`,
        // Stops accepting at once; requests in flight get `drainMs` to finish, then their connections are closed.
        close: () =>
          new Promise<void>((done) => {
            const idle = setInterval(() => server.closeIdleConnections(), 50);
            const force = setTimeout(() => server.closeAllConnections(), drainMs);
            server.close(() => {
              clearInterval(idle);
              clearTimeout(force);
              done();
            });
            server.closeIdleConnections();
          }),
      });
    });
  });
}

/** `handler` as a plain Node listener: a rejected answer destroys that response only. */
export function settled(handler: Handler): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const answer = handler(req, res);
    if (answer) answer.catch((err: unknown) => res.destroy(err instanceof Error ? err : new Error(String(err))));
  };
}
