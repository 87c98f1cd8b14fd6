import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { BANYAN } from './support/cli.js';
import { basicAuth, newUploader } from './support/packages.js';
import { services, tempDir } from './support/services.js';

function rssBytes(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'))!;
  return Number(/(\d+)/.exec(line)![1]) * 1024;
}

/** `banyan app` as its own process, as operators run it. */
async function startApp(env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; url: string; exited: Promise<unknown> }> {
  const child = spawn(process.execPath, [BANYAN, 'app'], { env: { ...process.env, PORT: '0', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d) => { output += d; });
  child.stderr!.on('data', (d) => { output += d; });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const deadline = Date.now() + 30_000;
  for (;;) {
    const match = /app listening on (http:\/\/[\d.:]+)/.exec(output);
    if (match) return { child, url: match[1]!, exited };
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`banyan app did not start:\n${output}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A chunked multipart upload form (no Content-Length), written with backpressure: `fields` text
 * fields of `fieldBytes` each, by name. Resolves with the status, or `reset` when the connection
 * was cut before an answer.
 */
function sendForm(url: string, auth: string, fields: { name: string; bytes: number }[]): Promise<{ status: number | 'reset'; message: string }> {
  const boundary = '----banyan-attack';
  return new Promise((resolve) => {
    let settled = false;
    const finish = (status: number | 'reset', message: string) => { if (!settled) { settled = true; resolve({ status, message }); } };
    const req = request(`${url}/legacy/`, {
      method: 'POST',
      headers: { authorization: auth, 'content-type': `multipart/form-data; boundary=${boundary}`, 'transfer-encoding': 'chunked' },
    }, (res) => {
      finish(res.statusCode!, res.statusMessage ?? '');
      res.resume();
    });
    req.on('error', () => finish('reset', ''));
    const chunk = Buffer.alloc(256 * 1024, 0x61);
    let field = 0;
    let left = -1;
    const pump = () => {
      while (!settled && field < fields.length) {
        if (left < 0) {
          left = fields[field]!.bytes;
          if (!req.write(`--${boundary}\r\nContent-Disposition: form-data; name="${fields[field]!.name}"\r\n\r\n`)) return void req.once('drain', pump);
        }
        const n = Math.min(left, chunk.length);
        left -= n;
        const more = req.write(n === chunk.length ? chunk : chunk.subarray(0, n));
        if (left === 0) {
          req.write('\r\n');
          field++;
          left = -1;
        }
        if (!more) return void req.once('drain', pump);
      }
      if (!settled) req.end(`--${boundary}--\r\n`);
    };
    pump();
  });
}

describe('upload form: bounded memory per request (banyan app as a process)', function () {
  this.timeout(180_000);
  let app: Awaited<ReturnType<typeof startApp>>;
  let auth: string;

  before(async () => {
    const s = await services();
    const uploader = await newUploader(s.primaryUrl);
    auth = basicAuth('__token__', uploader.token);
    app = await startApp({
      DATABASE_URL: s.primaryUrl, DATABASE_REPLICA_URLS: s.replicaUrls.join(','), REDIS_URL: s.redisUrl ?? '',
      BANYAN_STORAGE: tempDir('banyan-form-'),
    });
  });

  after(async () => {
    app.child.kill('SIGTERM');
    await app.exited;
  });

  it('refuses four concurrent chunked forms of 150 fields × 4 MiB with 413 while the app stays under 300 MB RSS', async () => {
    const pid = app.child.pid!;
    // Warm up: the first upload loads code that is not the attack's cost.
    await sendForm(app.url, auth, [{ name: 'name', bytes: 10 }]);
    const baseline = rssBytes(pid);
    let peak = baseline;
    const sampler = setInterval(() => { peak = Math.max(peak, rssBytes(pid)); }, 20);
    const attack = Array.from({ length: 150 }, (_, i) => ({ name: `field${i}`, bytes: 4 * 1024 * 1024 - 1 }));
    const answers = await Promise.all(Array.from({ length: 4 }, () => sendForm(app.url, auth, attack)));
    clearInterval(sampler);
    peak = Math.max(peak, rssBytes(pid));
    console.log(`      app RSS: ${(baseline / 1e6).toFixed(0)} MB before, peak ${(peak / 1e6).toFixed(0)} MB under four concurrent form attacks`);
    for (const answer of answers) expect(answer.status).to.equal(413);
    expect(answers[0]!.message).to.contain('fields are over 8 MiB in all');
    expect(peak, `peak RSS ${(peak / 1e6).toFixed(0)} MB`).to.be.below(300 * 1024 * 1024);
    expect((await sendForm(app.url, auth, [{ name: 'name', bytes: 10 }])).status, 'the app still answers').to.equal(400);
  });

  it('caps a repeated field with a 400 naming it', async () => {
    const answer = await sendForm(app.url, auth, Array.from({ length: 300 }, () => ({ name: 'classifiers', bytes: 20 })));
    expect(answer.status).to.equal(400);
    expect(answer.message).to.contain('classifiers is repeated more than 256 times');
  });
});
