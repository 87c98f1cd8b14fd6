import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { listen, type Listening } from '../../lib/http-server.js';

/** A real backend on loopback that says who it is, counts what it got, and can be told how to answer. */
export interface FakeBackend {
  readonly name: string;
  readonly url: string;
  readonly listening: Listening;
  /** Requests received, by method and path. */
  readonly seen: { method: string; path: string; headers: IncomingMessage['headers'] }[];
  /** Replace the answer for a path prefix. */
  answer(prefix: string, handler: (req: IncomingMessage, res: ServerResponse) => void): void;
  close(): Promise<void>;
}

/**
 * Starts a backend whose default answer is JSON naming it, so tests can tell
 * who served a request. Upgrades are echoed: after a 101, every byte the
 * client sends comes back prefixed with the backend's name.
 */
export async function fakeBackend(name: string): Promise<FakeBackend> {
  const handlers: [string, (req: IncomingMessage, res: ServerResponse) => void][] = [];
  const seen: FakeBackend['seen'] = [];
  const server = createServer((req, res) => {
    seen.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers });
    const handler = handlers.find(([prefix]) => (req.url ?? '').startsWith(prefix))?.[1];
    if (handler) return handler(req, res);
    req.resume();
    req.on('end', () => {
      const body = JSON.stringify({ backend: name, method: req.method, path: req.url });
      res.writeHead(200, { 'content-type': 'application/json', 'x-backend': name });
      res.end(body);
    });
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
    seen.push({ method: 'UPGRADE', path: req.url ?? '', headers: req.headers });
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    socket.on('data', (d) => socket.write(`${name}:${d}`));
    socket.on('end', () => socket.end());
    socket.on('error', () => socket.destroy());
  });
  const listening = await listen(server, 0, '127.0.0.1', 'test', 200);
  return {
    name,
    url: listening.url,
    listening,
    seen,
    answer: (prefix, handler) => {
      handlers.unshift([prefix, handler]);
    },
    close: () => listening.close(),
  };
}
