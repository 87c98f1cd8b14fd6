import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { connect } from 'node:net';
import { startFilesRuntime } from '../app/files-runtime.js';
import { startAppRuntime, type AppRuntime } from '../app/runtime.js';
import { buildWheel } from '../chaos/wheel.js';
import { storagePath } from '../lib/file-store.js';
import { basicAuth, newUploader } from './support/packages.js';
import { services, tempDir, waitForReplay, withClient } from './support/services.js';

describe('local stack: PostgreSQL primary, streaming replica, Redis', () => {
  it('the primary shows the replica streaming in pg_stat_replication', async () => {
    const s = await services();
    const rows = await withClient(
      s.primaryUrl,
      async (c) => (await c.query('SELECT application_name, state FROM pg_stat_replication')).rows,
    );
    expect(rows).to.deep.include({ application_name: 'banyan_replica_1', state: 'streaming' });
  });

  it('the replica is a hot standby in recovery, and the primary is not', async () => {
    const s = await services();
    const primary = await withClient(s.primaryUrl, async (c) => (await c.query('SELECT pg_is_in_recovery() AS r')).rows[0].r);
    const replica = await withClient(s.replicaUrls[0]!, async (c) => (await c.query('SELECT pg_is_in_recovery() AS r')).rows[0].r);
    expect(primary).to.equal(false);
    expect(replica).to.equal(true);
  });

  it('a write on the primary reaches the replica, and the replica refuses writes', async () => {
    const s = await services();
    await withClient(s.primaryUrl, (c) =>
      c.query("CREATE TABLE IF NOT EXISTS stack_probe (v text); INSERT INTO stack_probe VALUES ('hello')"),
    );
    await waitForReplay(s);
    const seen = await withClient(
      s.replicaUrls[0]!,
      async (c) => (await c.query("SELECT count(*)::int AS n FROM stack_probe WHERE v = 'hello'")).rows[0].n,
    );
    expect(seen).to.be.greaterThan(0);
    const error = await withClient(s.replicaUrls[0]!, (c) => c.query("INSERT INTO stack_probe VALUES ('no')")).catch((e: Error) => e);
    expect(String(error)).to.match(/read-only transaction/);
    await withClient(s.primaryUrl, (c) => c.query('DROP TABLE stack_probe'));
  });

  it('an apply delay makes replication lag real, and removing it lets the replica catch up', async () => {
    const s = await services();
    await s.cluster.setReplicaDelay(1_500);
    try {
      await withClient(s.primaryUrl, (c) => c.query('CREATE TABLE lag_probe (v int); INSERT INTO lag_probe VALUES (1)'));
      const soon = await withClient(
        s.replicaUrls[0]!,
        async (c) => (await c.query("SELECT to_regclass('lag_probe') IS NOT NULL AS present")).rows[0].present,
      );
      expect(soon, 'the replica should not have replayed the write yet').to.equal(false);
      await s.cluster.setReplicaDelay(0);
      await waitForReplay(s);
      const later = await withClient(
        s.replicaUrls[0]!,
        async (c) => (await c.query("SELECT to_regclass('lag_probe') IS NOT NULL AS present")).rows[0].present,
      );
      expect(later).to.equal(true);
    } finally {
      await s.cluster.setReplicaDelay(0);
      await withClient(s.primaryUrl, (c) => c.query('DROP TABLE IF EXISTS lag_probe'));
    }
  });

  it('Redis answers on its loopback port', async () => {
    const s = await services();
    expect(s.redisUrl).to.match(/^redis:\/\/127\.0\.0\.1:\d+$/);
    const port = Number(new URL(s.redisUrl!).port);
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = connect({ port, host: '127.0.0.1' }, () => socket.write('PING\r\n'));
      socket.once('data', (d) => {
        socket.destroy();
        resolve(d.toString());
      });
      socket.once('error', reject);
    });
    expect(reply).to.equal('+PONG\r\n');
  });
});

describe('the files service (banyan files): the package files, apart from the app', () => {
  let storage: string;
  let app: AppRuntime | undefined;
  let files: AppRuntime | undefined;

  before(async () => {
    const s = await services();
    storage = tempDir('banyan-files-service-');
    const data = {
      primaryUrl: s.primaryUrl,
      replicaUrls: s.replicaUrls,
      redisUrl: s.redisUrl!,
      storageDir: storage,
      host: '127.0.0.1',
      port: 0,
    };
    app = await startAppRuntime(data);
    files = await startFilesRuntime(data);
  });

  after(async () => {
    await files?.close();
    await app?.close();
    rmSync(storage, { recursive: true, force: true });
  });

  it('serves a file uploaded through the app: the same bytes, ETag, Range and Cache-Control', async () => {
    const s = await services();
    const uploader = await newUploader(s.primaryUrl);
    const project = `files-service-${process.pid}`;
    const wheel = buildWheel(project, '1.0', randomBytes(4_096));
    const sha256 = createHash('sha256').update(wheel.bytes).digest('hex');
    const form = new FormData();
    const fields: Record<string, string> = {
      ':action': 'file_upload',
      protocol_version: '1',
      name: project,
      version: '1.0',
      filetype: 'bdist_wheel',
      pyversion: 'py3',
      metadata_version: '2.1',
      summary: 'served by the files service',
      sha256_digest: sha256,
    };
    for (const [k, v] of Object.entries(fields)) form.append(k, v);
    form.append('content', new Blob([wheel.bytes]), wheel.filename);
    const uploaded = await fetch(`${app!.url}/legacy/`, {
      method: 'POST',
      body: form,
      headers: { authorization: basicAuth('__token__', uploader.token) },
    });
    expect(uploaded.status, await uploaded.text()).to.equal(200);

    const path = `/packages/${storagePath(sha256, wheel.filename)}`;
    const fromApp = await fetch(`${app!.url}${path}`);
    const whole = await fetch(`${files!.url}${path}`);
    const bytes = Buffer.from(await whole.arrayBuffer());
    expect(whole.status).to.equal(200);
    expect(bytes.equals(wheel.bytes), 'the bytes uploaded').to.equal(true);
    expect(Buffer.from(await fromApp.arrayBuffer()).equals(bytes), 'the bytes the app serves').to.equal(true);
    expect(whole.headers.get('etag')).to.equal(`"${sha256}"`);
    expect(whole.headers.get('etag')).to.equal(fromApp.headers.get('etag'));
    expect(whole.headers.get('cache-control')).to.equal('public, max-age=31536000, immutable');
    expect(whole.headers.get('content-length')).to.equal(String(wheel.bytes.length));
    expect(whole.headers.get('accept-ranges')).to.equal('bytes');

    const range = await fetch(`${files!.url}${path}`, { headers: { range: 'bytes=10-99' } });
    expect(range.status).to.equal(206);
    expect(range.headers.get('content-range')).to.equal(`bytes 10-99/${wheel.bytes.length}`);
    expect(Buffer.from(await range.arrayBuffer()).equals(wheel.bytes.subarray(10, 100))).to.equal(true);
    const outside = await fetch(`${files!.url}${path}`, { headers: { range: `bytes=${wheel.bytes.length}-` } });
    expect([outside.status, await outside.text()]).to.deep.equal([
      416,
      `416 The range is outside the file (${wheel.bytes.length} bytes).\n`,
    ]);

    const cached = await fetch(`${files!.url}${path}`, { headers: { 'if-none-match': `"${sha256}"` } });
    expect(cached.status).to.equal(304);
    const head = await fetch(`${files!.url}${path}`, { method: 'HEAD' });
    expect([head.status, head.headers.get('etag'), head.headers.get('content-length')]).to.deep.equal([
      200,
      `"${sha256}"`,
      String(wheel.bytes.length),
    ]);
  });

  it('serves only files, its health and its metrics', async () => {
    expect((await fetch(`${files!.url}/_health`)).status).to.equal(200);
    const missing = await fetch(`${files!.url}/packages/${storagePath('0'.repeat(64), 'none-1.0.tar.gz')}`);
    expect(missing.status).to.equal(404);
    expect(await missing.text()).to.match(/^404 no file at \/packages\//);
    for (const path of ['/simple/', '/pypi/anything/json', '/project/anything/']) {
      expect((await fetch(`${files!.url}${path}`)).status, path).to.equal(404);
    }
    expect((await fetch(`${files!.url}/legacy/`, { method: 'POST', body: 'x' })).status, 'no uploads here').to.be.oneOf([404, 405]);
    const metrics = await (await fetch(`${files!.url}/metrics`)).text();
    expect(metrics).to.match(/^banyan_app_requests_total\{handler="files",method="GET",status_class="2xx"\} [1-9]/m);
    expect(metrics).to.match(/^banyan_app_requests_total\{handler="files\.health",/m);
  });
});
