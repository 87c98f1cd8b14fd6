/**
 * What the request-per-second table does not show, measured on a proxy
 * process by its pid: big bodies both ways (throughput, and how far the
 * proxy's memory grew while they streamed), a WebSocket tunnel's echo
 * throughput and round-trip time, and what an idle keep-alive connection
 * costs in memory. Every loop is bounded in bytes, count and time.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { request } from 'undici';

/** Resident memory of a process and its children (nginx's workers), in bytes (VmRSS). */
export function rssOf(pid: number): number {
  const one = (p: number) => {
    try {
      const line = readFileSync(`/proc/${p}/status`, 'utf8')
        .split('\n')
        .find((l) => l.startsWith('VmRSS:'));
      return Number(/(\d+)/.exec(line ?? '')?.[1] ?? 0) * 1024;
    } catch {
      return 0;
    }
  };
  const children = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
    .stdout.split('\n')
    .filter(Boolean)
    .map(Number);
  return one(pid) + children.reduce((sum, c) => sum + one(c), 0);
}

/** Samples `pid`'s RSS every 50 ms while `work` runs: its growth over the start, at the worst moment. */
async function peakGrowth<T>(pid: number, work: () => Promise<T>): Promise<{ result: T; growth: number }> {
  const start = rssOf(pid);
  let peak = start;
  const timer = setInterval(() => {
    peak = Math.max(peak, rssOf(pid));
  }, 50);
  try {
    const result = await work();
    return { result, growth: Math.max(0, Math.max(peak, rssOf(pid)) - start) };
  } finally {
    clearInterval(timer);
  }
}

export interface Transfer {
  readonly mbPerSecond: number;
  readonly rssGrowth: number;
}

/** Downloads `mib` MiB through `base` (the backend's /big/N), reading as fast as it comes. */
export async function download(base: string, pid: number, mib: number): Promise<Transfer> {
  const { result: seconds, growth } = await peakGrowth(pid, async () => {
    const t0 = performance.now();
    const res = await request(`${base}/big/${mib}`, { headersTimeout: 60_000, bodyTimeout: 60_000 });
    let n = 0;
    for await (const chunk of res.body) n += (chunk as Buffer).length;
    if (n !== mib * 1024 * 1024) throw new Error(`download through ${base}: ${n} bytes, not ${mib} MiB`);
    return (performance.now() - t0) / 1000;
  });
  return { mbPerSecond: mib / seconds, rssGrowth: growth };
}

/** Uploads `mib` MiB of zeros through `base` (the backend's /sink counts them), with a Content-Length. */
export async function upload(base: string, pid: number, mib: number): Promise<Transfer> {
  const chunk = Buffer.alloc(64 * 1024);
  const total = mib * 1024 * 1024;
  const { result: seconds, growth } = await peakGrowth(pid, async () => {
    const t0 = performance.now();
    const body = Readable.from(
      (function* () {
        for (let sent = 0; sent < total; sent += chunk.length) yield chunk;
      })(),
    );
    const res = await request(`${base}/sink`, {
      method: 'POST',
      body,
      headers: { 'content-length': String(total) },
      headersTimeout: 60_000,
      bodyTimeout: 60_000,
    });
    const text = await res.body.text();
    if (Number(text) !== total)
      throw new Error(`upload through ${base}: ${res.statusCode} ${text.slice(0, 200)} (expected the backend to count ${total} bytes)`);
    return (performance.now() - t0) / 1000;
  });
  return { mbPerSecond: mib / seconds, rssGrowth: growth };
}

/** Opens a WebSocket-style tunnel through `base` to the backend's echo, and answers once the 101 came. */
function tunnel(base: string): Promise<Socket> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port) }, () => {
      socket.write(
        `GET /echo HTTP/1.1\r\nHost: ${hostname}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
      );
    });
    let head = '';
    const onData = (d: Buffer) => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      if (!head.startsWith('HTTP/1.1 101')) reject(new Error(`no upgrade through ${base}: ${head.split('\r\n')[0]}`));
      else resolve(socket);
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.setTimeout(10_000, () => reject(new Error(`upgrade through ${base} timed out`)));
  });
}

/** Echo through a tunnel: round trips of 64 bytes (latency), then 64 MiB each way (throughput). */
export async function websocketEcho(base: string): Promise<{ roundTripUs: number; mbPerSecond: number }> {
  const socket = await tunnel(base);
  try {
    const small = Buffer.alloc(64, 1);
    const trips = 2_000;
    const t0 = performance.now();
    for (let i = 0; i < trips; i++) {
      await new Promise<void>((resolve) => {
        let got = 0;
        const onData = (d: Buffer) => {
          got += d.length;
          if (got >= small.length) {
            socket.off('data', onData);
            resolve();
          }
        };
        socket.on('data', onData);
        socket.write(small);
      });
    }
    const roundTripUs = ((performance.now() - t0) * 1000) / trips;
    const total = 64 * 1024 * 1024;
    const chunk = Buffer.alloc(64 * 1024, 2);
    const t1 = performance.now();
    await new Promise<void>((resolve, reject) => {
      let back = 0;
      socket.on('data', (d: Buffer) => {
        back += d.length;
        if (back >= total) resolve();
      });
      socket.once('error', reject);
      let sent = 0;
      const more = () => {
        while (sent < total) {
          sent += chunk.length;
          if (!socket.write(chunk)) return void socket.once('drain', more);
        }
      };
      more();
    });
    return { roundTripUs, mbPerSecond: 64 / ((performance.now() - t1) / 1000) };
  } finally {
    socket.destroy();
  }
}

/**
 * Opens `count` keep-alive connections to `base` from many loopback addresses (clients are many
 * machines), each sends one GET and then stays idle: the proxy's memory per idle connection.
 */
export async function idleConnections(base: string, pid: number, count: number): Promise<{ bytesPerConnection: number; opened: number }> {
  const { hostname, port } = new URL(base);
  const before = rssOf(pid);
  const sockets: Socket[] = [];
  try {
    for (let i = 0; i < count; i += 200) {
      await Promise.all(
        Array.from(
          { length: Math.min(200, count - i) },
          (_, j) =>
            new Promise<void>((resolve) => {
              const n = i + j;
              const socket = connect(
                { host: hostname, port: Number(port), localAddress: `127.0.${1 + Math.floor(n / 200)}.${1 + (n % 200)}` },
                () => {
                  socket.write(`GET /idle HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`);
                },
              );
              socket.once('data', () => resolve());
              socket.once('error', () => resolve());
              socket.setTimeout(10_000, () => resolve());
              sockets.push(socket);
            }),
        ),
      );
    }
    await new Promise((r) => setTimeout(r, 1_000));
    const opened = sockets.filter((s) => !s.destroyed).length;
    return { bytesPerConnection: Math.max(0, rssOf(pid) - before) / Math.max(1, opened), opened };
  } finally {
    for (const s of sockets) s.destroy();
  }
}
