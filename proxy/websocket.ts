import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { createProxyServer } from 'http-proxy-3';
import { upstreamRequestHeaders, type ClientInfo } from './headers.js';
import type { UpstreamSet } from './upstreams/index.js';
import { rawAnswer } from './raw-answer.js';

const HALF_CLOSE_GRACE_MS = 5_000;

/**
 * Forwards WebSocket (and other HTTP/1.1 Upgrade) requests with
 * http-proxy-3's ws(), the maintained rewrite of node-http-proxy. Headers get
 * the same hygiene as plain requests, except Connection/Upgrade, which an
 * upgrade needs.
 */
export class WebSocketForwarder {
  readonly #upstreams: UpstreamSet;
  readonly #proxy = createProxyServer({ ws: true, xfwd: false });
  readonly #tunnels = new Set<Socket>();

  constructor(upstreams: UpstreamSet) {
    this.#upstreams = upstreams;
    this.#proxy.on('error', (_err, _req, socket) => {
      const s = socket as Socket;
      if (!s.destroyed) {
        if (s.writable) s.end(rawAnswer(502, '502 Bad Gateway: the backend refused the upgrade.\n'));
        else s.destroy();
      }
    });
  }

  /**
   * Hands the upgrade to an endpoint of `service` (counted in flight for as long as the tunnel lives); the
   * sockets are then piped both ways until either side closes.
   */
  forward(service: string, req: IncomingMessage, socket: Socket, head: Buffer, client: ClientInfo): void {
    const endpoint = this.#upstreams.get(service)?.pick(undefined);
    if (!endpoint?.begin()) {
      const body = `503 Service Unavailable: no endpoint of the ${service} service is taking requests.\n`;
      socket.end(rawAnswer(503, body, { 'Retry-After': '5' }));
      return;
    }
    socket.once('close', () => endpoint.end({ ok: true, status: 101 }));
    const { connection, upgrade } = req.headers;
    const clean = upstreamRequestHeaders(req.headers, client) as IncomingMessage['headers'];
    req.headers = { ...clean, connection: connection ?? 'Upgrade', upgrade };
    socket.on('error', () => socket.destroy());
    // A client that hangs up half-closes the tunnel; a backend that never answers the FIN would keep it forever.
    socket.once('end', () => setTimeout(() => socket.destroy(), HALF_CLOSE_GRACE_MS).unref());
    this.#tunnels.add(socket);
    socket.once('close', () => this.#tunnels.delete(socket));
    this.#proxy.ws(req, socket, head, { target: endpoint.url });
  }

  /** Closes every tunnel and the proxy. */
  close(): void {
    for (const socket of this.#tunnels) socket.destroy();
    this.#proxy.close();
  }
}
