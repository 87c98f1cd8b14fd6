import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { formBombs, sendForm } from '../chaos/attacks.js';
import { BANYAN } from './support/cli.js';
import { basicAuth, newUploader } from './support/packages.js';
import { services, tempDir } from './support/services.js';

/** `banyan app` as its own process, as operators run it. */
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
  const deadline = Date.now() + 30_000;
  for (;;) {
    const match = /app listening on (http:\/\/[\d.:]+)/.exec(output);
    if (match) return { child, url: match[1]!, exited };
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`banyan app did not start:\n${output}`);
    await new Promise((r) => setTimeout(r, 50));
  }
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
      DATABASE_URL: s.primaryUrl,
      DATABASE_REPLICA_URLS: s.replicaUrls.join(','),
      REDIS_URL: s.redisUrl ?? '',
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
    const {
      answers,
      before: [baseline = 0],
      peak: [peak = 0],
    } = await formBombs(app.url, auth, 4, [pid]);
    console.log(
      `      app RSS: ${(baseline / 1e6).toFixed(0)} MB before, peak ${(peak / 1e6).toFixed(0)} MB under four concurrent form attacks`,
    );
    for (const answer of answers) expect(answer.status).to.equal(413);
    expect(answers[0]!.message).to.contain('fields are over 8 MiB in all');
    expect(peak, `peak RSS ${(peak / 1e6).toFixed(0)} MB`).to.be.below(300 * 1024 * 1024);
    expect((await sendForm(app.url, auth, [{ name: 'name', bytes: 10 }])).status, 'the app still answers').to.equal(400);
  });

  it('caps a repeated field with a 400 naming it', async () => {
    const answer = await sendForm(
      app.url,
      auth,
      Array.from({ length: 300 }, () => ({ name: 'classifiers', bytes: 20 })),
    );
    expect(answer.status).to.equal(400);
    expect(answer.message).to.contain('classifiers is repeated more than 256 times');
  });
});
