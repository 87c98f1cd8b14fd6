import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { delimiter, join } from 'node:path';
import { isAlive } from '../lib/processes.js';
import { startServerProcess, stopServerProcess, waitUntilReady, type ServerProcess } from './child-process.js';
import { reusePort } from './ports.js';

/** A running redis-server on a loopback port. */
export interface RedisServer {
  readonly url: string;
  /** The current process id (it changes when Redis is restarted; undefined while it is down). */
  readonly pid: number | undefined;
  /** The running redis-server, replaced by `restart`. */
  readonly server: ServerProcess;
  /** Starts a redis-server that died again on the same port (empty: it holds nothing that cannot be rebuilt). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** The redis-server program on PATH (or in /usr/bin, /usr/local/bin), if any. */
export function findRedisServer(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const dirs = [...(env['PATH'] ?? '').split(delimiter), '/usr/bin', '/usr/local/bin', '/usr/sbin'];
  return dirs.map((dir) => join(dir, 'redis-server')).find((path) => existsSync(path));
}

/**
 * Starts redis-server without persistence (it holds fences, notifications and
 * caches, all rebuildable) in `dir`, reusing the previous port when free.
 */
export async function startRedis(program: string, dir: string): Promise<RedisServer> {
  mkdirSync(dir, { recursive: true });
  const stateFile = join(dir, 'redis.json');
  const previous = existsSync(stateFile) ? (JSON.parse(readFileSync(stateFile, 'utf8')) as { port?: number; pid?: number }) : {};
  if (previous.pid && isAlive(previous.pid) && isRedis(previous.pid)) {
    process.kill(previous.pid, 'SIGTERM');
    const deadline = Date.now() + 5_000;
    while (isAlive(previous.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  }
  const port = await reusePort(previous.port);
  const launch = async () => {
    const started = startServerProcess(
      program,
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        dir,
        '--daemonize',
        'no',
        '--protected-mode',
        'yes',
      ],
      join(dir, 'redis.log'),
    );
    await waitUntilReady('Redis', started, () => ping(port), 15_000);
    writeFileSync(stateFile, JSON.stringify({ port, pid: started.child.pid }));
    return started;
  };
  let server = await launch();
  const running = () => server.child.exitCode === null && server.child.signalCode === null;
  return {
    url: `redis://127.0.0.1:${port}`,
    get pid() {
      return running() ? server.child.pid : undefined;
    },
    get server() {
      return server;
    },
    restart: async () => {
      if (!running()) server = await launch();
    },
    stop: async () => {
      await stopServerProcess(server, 'SIGTERM');
      rmSync(stateFile, { force: true });
    },
  };
}

function isRedis(pid: number): boolean {
  try {
    return execFileSync('ps', ['-o', 'comm=', '-p', String(pid)], { encoding: 'utf8' }).includes('redis');
  } catch {
    return false;
  }
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    socket.setTimeout(1_000);
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => {
      socket.destroy();
      resolve(data.toString().startsWith('+PONG'));
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}
