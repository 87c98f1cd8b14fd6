import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../stack/ports.js';

/** nginx running for a benchmark, in its own temporary folder. */
export interface Nginx {
  readonly url: string;
  readonly pid: number;
  /** Asks nginx to quit and waits (synchronously: it runs at process exit too) until its workers are gone, then removes its folder. */
  stop(): void;
}

/**
 * Starts nginx with one worker and the `server` block's body (`listen` is
 * added), or returns undefined when nginx is not installed. SIGKILL would
 * leave its worker listening; stop() asks the master to quit instead.
 */
export async function startNginx(server: (dir: string) => string): Promise<Nginx | undefined> {
  if (spawnSync('sh', ['-c', 'command -v nginx']).status !== 0) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'banyan-bench-nginx-'));
  const port = await freePort();
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `
worker_processes 1;
error_log ${dir}/error.log;
pid ${dir}/nginx.pid;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
  ${server(dir).replace('SERVER {', `server {\n    listen 127.0.0.1:${port};`)}
}`,
  );
  const child = spawn('nginx', ['-p', dir, '-c', conf, '-g', 'daemon off;'], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 500));
  let stopped = false;
  return {
    url: `http://127.0.0.1:${port}`,
    pid: child.pid!,
    stop: () => {
      if (stopped) return;
      stopped = true;
      spawnSync('nginx', ['-p', dir, '-c', conf, '-s', 'quit'], { stdio: 'ignore' });
      // The master removes its pid file once its workers are gone.
      const deadline = Date.now() + 5_000;
      while (existsSync(join(dir, 'nginx.pid')) && Date.now() < deadline) spawnSync('sleep', ['0.05']);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
