import type { IndexDatabase } from '../package-index/schema.js';
import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { request } from 'node:http';
import { gunzipSync } from 'node:zlib';
import { seedIndex } from '../app/seed.js';
import { connect } from '../lib/database.js';
import { startBackends, type Backends } from '../stack/local-stack.js';
import { TEST_SECRET } from './support/proxy.js';
import { services, waitForReplay } from './support/services.js';

/** A GET on the app with the raw bytes of the answer (not decoded), its status and headers. */
function get(
  url: string,
  headers: Record<string, string> = {},
  method = 'GET',
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

const etagOf = (body: Buffer) => `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`;

describe("a giant project's pages: rendered from a keyset cursor, streamed, cached whole", function () {
  this.timeout(120_000);
  let backends: Backends;
  let giant: string;
  let expected: { filename: string; version: string }[];
  let releases: number;
  const simpleJson = { accept: 'application/vnd.pypi.simple.v1+json' };

  before(async () => {
    const s = await services();
    const db = connect<IndexDatabase>(s.primaryUrl, { max: 2 });
    try {
      // 1,300 releases of 5 files: a 3 MB simple page, over three batches of releases.
      const summary = await seedIndex(db, { projects: 0, giants: 1, giantReleases: 1_300, seed: 11, prefix: `gp${process.pid}` });
      giant = summary.giants[0]!;
      const rows = await db
        .selectFrom('files')
        .innerJoin('releases', 'releases.id', 'files.release_id')
        .innerJoin('projects', 'projects.id', 'releases.project_id')
        .select(['files.filename', 'releases.version'])
        .where('projects.normalized_name', '=', giant)
        .orderBy('releases.sort_key')
        .orderBy('releases.id')
        .orderBy('files.filename')
        .execute();
      expected = rows;
      releases = new Set(rows.map((r) => r.version)).size;
    } finally {
      await db.destroy();
    }
    await waitForReplay(s, 30_000);
    backends = await startBackends(s, { adminToken: 't', secret: TEST_SECRET, redisUrl: s.redisUrl, projectsPerHour: 1_000 });
  });

  after(async () => {
    await backends?.stop();
  });

  it('streams the simple JSON page without an ETag, every file in PEP 440 order, then serves the same bytes whole from the cache', async () => {
    const url = `${backends.urls.app}/simple/${giant}/`;
    const first = await get(url, simpleJson);
    expect(first.status).to.equal(200);
    expect(first.headers['x-banyan-cache']).to.equal('miss');
    expect(first.headers['transfer-encoding'], 'streamed as it is rendered').to.equal('chunked');
    expect(first.headers['etag'], 'an ETag needs the whole body').to.equal(undefined);
    expect(first.headers['content-type']).to.equal('application/vnd.pypi.simple.v1+json');
    expect(first.headers['x-pypi-last-serial']).to.match(/^\d+$/);
    expect(first.body.length).to.be.above(2_000_000);
    const page = JSON.parse(first.body.toString()) as {
      name: string;
      versions: string[];
      files: { filename: string }[];
      meta: Record<string, unknown>;
    };
    expect(page.name).to.equal(giant);
    expect(page.meta['_last-serial']).to.equal(Number(first.headers['x-pypi-last-serial']));
    expect(
      page.files.map((f) => f.filename),
      'every file, none twice, in order',
    ).to.deep.equal(expected.map((r) => r.filename));
    expect(page.versions).to.deep.equal([...new Set(expected.map((r) => r.version))]);
    expect(page.versions.length).to.equal(releases);

    // The copy stored while streaming is the page whole: the next request gets it with its ETag, and a 304 for it.
    let second!: Awaited<ReturnType<typeof get>>;
    for (let i = 0; i < 20; i++) {
      second = await get(url, simpleJson);
      if (second.headers['x-banyan-cache'] === 'hit') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(second.headers['x-banyan-cache']).to.equal('hit');
    expect(second.body.equals(first.body), 'the cached page is byte for byte what was streamed').to.equal(true);
    expect(second.headers['etag']).to.equal(etagOf(first.body));
    expect(second.headers['content-length']).to.equal(String(first.body.length));
    const revalidated = await get(url, { ...simpleJson, 'if-none-match': String(second.headers['etag']) });
    expect(revalidated.status).to.equal(304);
  });

  it('streams gzipped to a client that accepts gzip, and the HTML page and the JSON API alike', async () => {
    // A fresh variant (HTML) is not cached yet: it streams.
    const html = await get(`${backends.urls.app}/simple/${giant}/`, { accept: 'text/html', 'accept-encoding': 'gzip' });
    expect(html.status).to.equal(200);
    expect(html.headers['content-encoding'], JSON.stringify(html.headers)).to.equal('gzip');
    expect(html.headers['vary']).to.match(/Accept-Encoding/);
    const text = gunzipSync(html.body).toString();
    expect(text).to.match(/^<!DOCTYPE html>\n<html>\n/);
    expect(text).to.match(/<\/body>\n<\/html>\n$/);
    const links = [...text.matchAll(/<a href="[^"]+#sha256=[0-9a-f]{64}"[^>]*>([^<]+)<\/a><br\/>/g)].map((m) => m[1]);
    expect(links).to.deep.equal(expected.map((r) => r.filename));

    const api = await get(`${backends.urls.app}/pypi/${giant}/json`, { 'accept-encoding': 'gzip' });
    expect(api.status).to.equal(200);
    expect(api.headers['access-control-allow-origin']).to.equal('*');
    const body = JSON.parse(gunzipSync(api.body).toString()) as {
      info: { version: string };
      last_serial: number;
      releases: Record<string, { filename: string; url: string }[]>;
      urls: { filename: string }[];
    };
    const grouped: Record<string, string[]> = {};
    for (const r of expected) (grouped[r.version] ??= []).push(r.filename);
    expect(Object.fromEntries(Object.entries(body.releases).map(([v, files]) => [v, files.map((f) => f.filename)]))).to.deep.equal(grouped);
    expect(Object.keys(body.releases)).to.deep.equal(Object.keys(grouped));
    expect(body.urls.map((f) => f.filename)).to.deep.equal(grouped[body.info.version]);
    expect(body.last_serial).to.equal(Number(api.headers['x-pypi-last-serial']));
  });

  it('answers HEAD without rendering a body, and keeps serving after a client that leaves mid-page', async () => {
    const head = await get(`${backends.urls.app}/pypi/${giant}/json`, {}, 'HEAD');
    expect(head.status).to.equal(200);
    expect(head.body.length).to.equal(0);
    expect(head.headers['content-type']).to.match(/^application\/json/);

    // Read a little of the JSON API, then hang up, ten times over: nothing is left running or held.
    for (let i = 0; i < 10; i++) {
      await new Promise<void>((resolve, reject) => {
        const req = request(`${backends.urls.app}/pypi/${giant}/json`, (res) => {
          res.once('data', () => {
            req.destroy();
            resolve();
          });
        });
        req.on('error', (err) => (req.destroyed ? resolve() : reject(err)));
        req.end();
      });
    }
    const after = await get(`${backends.urls.app}/pypi/${giant}/json`);
    expect(after.status).to.equal(200);
    expect(Object.keys((JSON.parse(after.body.toString()) as { releases: object }).releases).length).to.equal(releases);
  });

  it("still sends a small project's page whole, with an ETag and a length", async () => {
    const s = await services();
    const db = connect<IndexDatabase>(s.primaryUrl, { max: 1 });
    let small: string;
    try {
      small = (await seedIndex(db, { projects: 1, giants: 0, seed: 3, prefix: `gs${process.pid}` })).largestOrdinary.name;
    } finally {
      await db.destroy();
    }
    await waitForReplay(s, 10_000);
    const page = await get(`${backends.urls.app}/pypi/${small}/json`);
    expect(page.status).to.equal(200);
    expect(page.headers['etag']).to.equal(etagOf(page.body));
    expect(page.headers['content-length']).to.equal(String(page.body.length));
  });
});
