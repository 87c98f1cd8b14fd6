import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { request } from 'node:http';
import { join } from 'node:path';
import { BANYAN } from './support/cli.js';
import { basicAuth, newUploader } from './support/packages.js';
import { services, tempDir, withClient } from './support/services.js';
import { waitUntil } from './support/wait.js';

/** `banyan app` as its own process, so it can really crash. */
async function startApp(env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; url: string; exited: Promise<unknown> }> {
  const child = spawn(process.execPath, [BANYAN, 'app'], { env: { ...process.env, PORT: '0', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d) => {
    output += d;
  });
  child.stderr!.on('data', (d) => {
    output += d;
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  await waitUntil('banyan app is listening', async () => /app listening on http/.test(output) || child.exitCode !== null, 30_000);
  const url = /app listening on (http:\/\/[\d.:]+)/.exec(output)?.[1];
  if (!url) throw new Error(`banyan app did not start:\n${output}`);
  return { child, url, exited };
}

describe('an upload interrupted by a crash of the app', () => {
  it('leaves no row, no stored file, and its temp file is removed when the app starts again', async function () {
    this.timeout(90_000);
    const s = await services();
    const storage = tempDir('banyan-crash-');
    const env = {
      DATABASE_URL: s.primaryUrl,
      DATABASE_REPLICA_URLS: s.replicaUrls.join(','),
      REDIS_URL: s.redisUrl!,
      BANYAN_STORAGE: storage,
    };
    const uploader = await newUploader(s.primaryUrl);
    const name = `crash-${process.pid}`;
    let app = await startApp(env);
    try {
      // A twine-like form whose file part is still arriving when the app dies.
      const boundary = 'crashboundary';
      const field = (k: string, v: string) => `--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`;
      const head =
        [
          [':action', 'file_upload'],
          ['protocol_version', '1'],
          ['name', name],
          ['version', '1.0'],
          ['filetype', 'sdist'],
          ['pyversion', 'source'],
          ['sha256_digest', 'a'.repeat(64)],
        ]
          .map(([k, v]) => field(k!, v!))
          .join('') + `--${boundary}\r\nContent-Disposition: form-data; name="content"; filename="${name}-1.0.tar.gz"\r\n\r\n`;
      const req = request(`${app.url}/legacy/`, {
        method: 'POST',
        headers: {
          'content-type': `multipart/form-data; boundary=${boundary}`,
          'transfer-encoding': 'chunked',
          authorization: basicAuth('__token__', uploader.token),
        },
      });
      req.on('error', () => {});
      req.write(head);
      req.write(Buffer.alloc(256 * 1024, 1));
      const incoming = join(storage, '.incoming');
      await waitUntil('the upload is being written to a temp file', async () => readdirSync(incoming).length > 0, 10_000);
      app.child.kill('SIGKILL');
      await app.exited;
      req.destroy();

      expect(readdirSync(incoming), 'the crash left its temp file behind').to.have.length(1);
      const stored = () => (readdirSync(storage, { recursive: true }) as string[]).filter((p) => !p.startsWith('.incoming'));
      expect(stored()).to.deep.equal([]);
      const rows = await withClient(
        s.primaryUrl,
        async (c) => (await c.query('SELECT count(*)::int AS n FROM projects WHERE normalized_name = $1', [name])).rows[0].n,
      );
      expect(rows, 'no project row, no release row, no file row').to.equal(0);

      // Another live process sharing the store (this one) is mid-upload: its temp file must survive the restart.
      const live = `${process.pid}@${hostname()}~${Date.now()}-live`;
      writeFileSync(join(incoming, live), 'in progress');
      app = await startApp(env);
      expect(readdirSync(incoming), 'the next start removes what the crashed upload left, and only that').to.deep.equal([live]);
      expect(stored()).to.deep.equal([]);
    } finally {
      app.child.kill('SIGKILL');
      await app.exited;
      rmSync(storage, { recursive: true, force: true });
    }
  });
});
