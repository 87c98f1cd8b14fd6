import { expect } from 'chai';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { startProxyProcess } from './support/proxy-process.js';
import { tempDir } from './support/services.js';
import { waitUntil } from './support/wait.js';

const MIB = 1024 * 1024;
/** Byte i of every big body: a pattern, so a byte out of place shows. */
const pattern = (from: number, length: number) => Buffer.from(Array.from({ length }, (_, i) => (from + i) % 251));
const BLOCK = pattern(0, 251 * 1024);

function rssOf(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
}

/**
 * Big bodies through `banyan proxy` (its own process, defaults): ranges pass through, a slow reader
 * holds the backend back instead of the proxy's memory, and a client that leaves mid-download ends
 * the backend's transfer too.
 */
describe('big bodies through banyan proxy: ranges, backpressure, a client that leaves', function () {
  this.timeout(60_000);
  let backend: Server;
  let dir: string;
  let proxy: Awaited<ReturnType<typeof startProxyProcess>>;
  /** How each big response of the backend ended: finished, or closed before its end. */
  const endings: string[] = [];
  /** Bytes the backend has written of the big response in progress. */
  let backendSent = 0;

  before(async () => {
    backend = createServer((req, res) => {
      const size = Number(/^\/big\/(\d+)$/.exec(req.url ?? '')?.[1] ?? 0) * MIB;
      if (!size) {
        res.writeHead(404).end();
        return;
      }
      const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
      if (range) {
        const [from, to] = [Number(range[1]), Number(range[2])];
        res.writeHead(206, { 'content-range': `bytes ${from}-${to}/${size}`, 'content-length': to - from + 1, 'accept-ranges': 'bytes' });
        res.end(pattern(from, to - from + 1));
        return;
      }
      res.writeHead(200, { 'content-length': size, 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream' });
      let sent = 0;
      res.on('close', () => endings.push(sent >= size ? 'finished' : `closed at ${Math.round(sent / MIB)} MiB`));
      const more = () => {
        while (sent < size) {
          const chunk = BLOCK.subarray(0, Math.min(BLOCK.length, size - sent));
          sent += chunk.length;
          backendSent = sent;
          if (!res.write(chunk)) return void res.once('drain', more);
        }
        res.end();
      };
      more();
    });
    await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
    const origin = `http://127.0.0.1:${(backend.address() as AddressInfo).port}`;
    dir = tempDir('banyan-big-bodies-');
    const routes = join(dir, 'routes.json');
    writeFileSync(routes, JSON.stringify([{ name: 'big', match: { path: '/big/*' }, mode: 'legacy' }]));
    proxy = await startProxyProcess({
      LEGACY_URL: origin,
      APP_URL: origin,
      BANYAN_ROUTES_FILE: routes,
      BANYAN_LOG: 'off',
      DATABASE_URL: '',
      REDIS_URL: '',
    });
  });

  after(async () => {
    proxy?.child.kill('SIGTERM');
    await proxy?.exited;
    await new Promise((resolve) => backend.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  it('passes a Range request and its 206 on, byte for byte', async () => {
    const res = await fetch(`${proxy.url}/big/64`, { headers: { range: 'bytes=1048570-1048699' } });
    expect(res.status).to.equal(206);
    expect(res.headers.get('content-range')).to.equal(`bytes 1048570-1048699/${64 * MIB}`);
    expect(Buffer.from(await res.arrayBuffer()).equals(pattern(1048570, 130))).to.equal(true);
  });

  it('holds the backend back while a client reads slowly, so its memory stays flat, and delivers every byte in order', async () => {
    const pid = proxy.child.pid!;
    let [start, peak, ahead] = [0, 0, 0];
    let received = 0;
    let wrong = -1;
    await new Promise<void>((resolve, reject) => {
      request(`${proxy.url}/big/256`, (res) => {
        res.on('data', (chunk: Buffer) => {
          for (let i = 0; i < chunk.length && wrong < 0; i += 4099) if (chunk[i] !== (received + i) % 251) wrong = received + i;
          received += chunk.length;
          // Pause at 16 MiB for 1.5 s: the backend has 240 MiB more it would send.
          if (received >= 16 * MIB && received - chunk.length < 16 * MIB) {
            res.pause();
            start = peak = rssOf(pid);
            const timer = setInterval(() => {
              peak = Math.max(peak, rssOf(pid));
            }, 50);
            setTimeout(() => {
              clearInterval(timer);
              ahead = backendSent - received;
              res.resume();
            }, 1_500);
          }
        });
        res.on('end', resolve);
        res.on('error', reject);
      })
        .on('error', reject)
        .end();
    });
    expect(received).to.equal(256 * MIB);
    expect(wrong, 'the first byte out of place').to.equal(-1);
    expect(
      ahead,
      'bytes the backend got ahead of the client (socket buffers and stream high-water marks only: without backpressure, all 240 MiB)',
    ).to.be.below(48 * MIB);
    // Buffers and garbage not yet collected move RSS by tens of MB on a busy machine; without backpressure it would grow by the 240 MiB.
    expect(peak - start, 'proxy RSS growth while the client did not read').to.be.below(64 * MIB);
    expect(endings.at(-1)).to.equal('finished');
  });

  it("ends the backend's transfer when the client leaves mid-download, and serves the next one", async () => {
    const before = endings.length;
    await new Promise<void>((resolve, reject) => {
      const req = request(`${proxy.url}/big/256`, (res) => {
        let received = 0;
        res.on('data', (chunk: Buffer) => {
          received += chunk.length;
          if (received >= 8 * MIB) {
            req.destroy();
            resolve();
          }
        });
      });
      req.on('error', (err) => (req.destroyed ? resolve() : reject(err)));
      req.end();
    });
    await waitUntil('the backend sees its response closed', async () => endings.length > before, 5_000);
    expect(endings[before]).to.match(/^closed at \d+ MiB$/);
    expect(Number(/(\d+)/.exec(endings[before]!)![1]), 'the backend stopped long before the end').to.be.below(128);
    const next = await fetch(`${proxy.url}/big/1`);
    expect(next.status).to.equal(200);
    expect((await next.arrayBuffer()).byteLength).to.equal(MIB);
  });
});
