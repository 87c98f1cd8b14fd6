import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { createProxyServer } from 'http-proxy-3';
import { upstreamRequestHeaders, type ClientInfo } from './headers.js';

const HALF_CLOSE_GRACE_MS = 5_000;

/**
 * Forwards WebSocket (and other HTTP/1.1 Upgrade) requests with
 * http-proxy-3's ws(), the maintained rewrite of node-http-proxy. Headers get
 * the same hygiene as plain requests, except Connection/Upgrade, which an
 * upgrade needs.
 */
export class WebSocketForwarder {
  readonly #targets: Record<'legacy' | 'new', string>;
  readonly #proxy = createProxyServer({ ws: true, xfwd: false });
  readonly #tunnels = new Set<Socket>();

  constructor(targets: Record<'legacy' | 'new', string>) {
    this.#targets = targets;
    this.#proxy.on('error', (_err, _req, socket) => {
      const s = socket as Socket;
      if (!s.destroyed) {
        if (s.writable) s.end('HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nThe backend refused the upgrade.\n');
        else s.destroy();
      }
    });
  }

  /** Hands the upgrade to `backend`; the sockets are then piped both ways until either side closes. */
  forward(backend: 'legacy' | 'new', req: IncomingMessage, socket: Socket, head: Buffer, client: ClientInfo): void {
    const { connection, upgrade } = req.headers;
    const clean = upstreamRequestHeaders(req.headers, client) as IncomingMessage['headers'];
    req.headers = { ...clean, connection: connection ?? 'Upgrade', upgrade };
    socket.on('error', () => socket.destroy());
    // A client that hangs up half-closes the tunnel; a backend that never answers the FIN would keep it forever.
    socket.once('end', () => setTimeout(() => socket.destroy(), HALF_CLOSE_GRACE_MS).unref());
    this.#tunnels.add(socket);
    socket.once('close', () => this.#tunnels.delete(socket));
    this.#proxy.ws(req, socket, head, { target: this.#targets[backend] });
  }

  /** Closes every tunnel and the proxy. */
  close(): void {
    for (const socket of this.#tunnels) socket.destroy();
    this.#proxy.close();
  }
}
