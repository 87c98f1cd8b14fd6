import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { TrustedProxies } from './headers.js';
import { rawAnswer } from './raw-answer.js';

/**
 * At most `max` open connections per client address: a slowloris client that
 * opens hundreds of sockets and trickles its headers holds at most `max` of
 * them (each for at most the headers timeout); the next get a 503 and are
 * closed at once. Trusted proxies (a load balancer in front) are not limited,
 * since every client arrives through them.
 */
export function limitConnectionsPerClient(server: Server, max: number, trusted: TrustedProxies): void {
  const open = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress ?? '';
    if (trusted.has(address)) return;
    const count = (open.get(address) ?? 0) + 1;
    if (count > max) {
      socket.end(rawAnswer(503, REFUSAL, { 'Retry-After': '5' }));
      socket.destroySoon();
      return;
    }
    open.set(address, count);
    socket.once('close', () => {
      const left = (open.get(address) ?? 1) - 1;
      if (left <= 0) open.delete(address);
      else open.set(address, left);
    });
  });
}

const REFUSAL = '503 Service Unavailable: too many open connections from your address (BANYAN_MAX_CLIENT_CONNECTIONS).\n';
