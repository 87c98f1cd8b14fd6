import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { DEFAULT_ROUTES_FILE, readRoutesFile, type TableSpec } from '../routing/table/index.js';
import { startBackends, type Backends } from '../stack/local-stack.js';
import { runBanyanAsync } from './support/cli.js';
import { basicAuth, buildDists, newUploader, run, uploadForm } from './support/packages.js';
import { promtoolProblems } from './support/promtool.js';
import { setRoutes, TEST_SECRET } from './support/proxy.js';
import { services, tempDir, waitForReplay, withClient } from './support/services.js';

const LIMIT = 64 * 1024;

/** Every file under a folder, relative, skipping the incoming folder's own name. */
function storedFiles(root: string): string[] {
  return (readdirSync(root, { recursive: true, withFileTypes: true }) as import('node:fs').Dirent[])
    .filter((d) => d.isFile())
    .map((d) => join(d.parentPath, d.name).slice(root.length + 1));
}

describe('the package index: uploads, simple and JSON APIs, files, download page', () => {
  let backends: Backends;
  let app: string;
  let storage: string;
  let dists: string;
  let owner: Awaited<ReturnType<typeof newUploader>>;
  let n = 0;
  const fresh = () => `pkg-${process.pid}-${++n}`;

  before(async () => {
    const s = await services();
    await setRoutes(s, readRoutesFile(DEFAULT_ROUTES_FILE) as TableSpec, 'package index: shipped routes');
    storage = tempDir('banyan-store-');
    dists = tempDir('banyan-dists-');
    backends = await startBackends(s, {
      adminToken: 't',
      secret: TEST_SECRET,
      redisUrl: s.redisUrl,
      storageDir: storage,
      maxUploadBytes: LIMIT,
      projectsPerHour: 1_000,
    });
    app = backends.urls.app;
    owner = await newUploader(s.primaryUrl);
  });

  after(async () => {
    await backends?.stop();
    rmSync(storage, { recursive: true, force: true });
    rmSync(dists, { recursive: true, force: true });
  });

  async function upload(form: FormData, auth = basicAuth('__token__', owner.token), url = `${app}/legacy/`) {
    const res = await fetch(url, { method: 'POST', body: form, headers: { authorization: auth } });
    return { status: res.status, reason: res.statusText, text: await res.text(), headers: res.headers };
  }

  async function fileRows(name: string): Promise<string[]> {
    const s = await services();
    return withClient(s.primaryUrl, async (c) =>
      (
        await c.query(
          `SELECT f.filename FROM files f JOIN releases r ON r.id = f.release_id JOIN projects p ON p.id = r.project_id
        WHERE p.normalized_name = $1 ORDER BY 1`,
          [name],
        )
      ).rows.map((r: { filename: string }) => r.filename),
    );
  }

  describe('upload (POST /legacy/)', () => {
    it('stores a wheel and an sdist, makes the uploader the owner, and answers 200 with the write LSN', async () => {
      const name = fresh();
      const [wheel, sdist] = await buildDists(dists, name, '1.0', ['py3-none-any', 'sdist']);
      for (const path of [wheel!, sdist!]) {
        const res = await upload(uploadForm(path, { name, version: '1.0' }));
        expect(res.status, res.text).to.equal(200);
        expect(res.headers.get('x-banyan-write-lsn')).to.match(/^[0-9A-F]+\/[0-9A-F]+$/);
      }
      expect(await fileRows(name)).to.have.length(2);
      const s = await services();
      const role = await withClient(
        s.primaryUrl,
        async (c) =>
          (
            await c.query(
              `SELECT u.username, pr.role FROM project_roles pr JOIN users u ON u.id = pr.user_id JOIN projects p ON p.id = pr.project_id WHERE p.normalized_name = $1`,
              [name],
            )
          ).rows,
      );
      expect(role).to.deep.equal([{ username: owner.username, role: 'Owner' }]);
      const digest = createHash('sha256').update(readFileSync(wheel!)).digest('hex');
      expect(existsSync(join(storage, digest.slice(0, 2), digest.slice(2, 4), digest.slice(4), wheel!.split('/').pop()!))).to.equal(true);
    });

    it('answers 200 and changes nothing for an identical re-upload; 400 "File already exists" for other contents', async () => {
      const name = fresh();
      const [wheel] = await buildDists(dists, name, '1.0', ['py3-none-any']);
      expect((await upload(uploadForm(wheel!, { name, version: '1.0' }))).status).to.equal(200);
      const before = storedFiles(storage).length;
      const again = await upload(uploadForm(wheel!, { name, version: '1.0' }));
      expect(again.status, again.text).to.equal(200);
      expect(again.text).to.contain('nothing changed');
      // The same file name with other contents: a valid wheel with one more member.
      const copy = join(dists, `other-${name}.whl`);
      await run('python3', [
        '-c',
        'import shutil, sys, zipfile; shutil.copy(sys.argv[1], sys.argv[2]); zipfile.ZipFile(sys.argv[2], "a").writestr("extra.txt", "different")',
        wheel!,
        copy,
      ]);
      const other = readFileSync(copy);
      const digest = createHash('sha256').update(other).digest('hex');
      const clash = await upload(uploadForm(wheel!, { name, version: '1.0' }, { sha256_digest: digest }, other));
      expect(clash.status).to.equal(400);
      expect(clash.reason).to.match(/^File already exists/);
      expect(storedFiles(storage).length).to.equal(before);
      expect(await fileRows(name)).to.have.length(1);
    });

    const refusals: [string, (name: string) => Record<string, string | undefined>, RegExp, string?][] = [
      ['a missing digest', () => ({ sha256_digest: undefined }), /^Include at least one message digest/],
      ['a malformed digest', () => ({ sha256_digest: 'abc' }), /^Invalid value for sha256_digest/],
      ['a digest that does not match', () => ({ sha256_digest: 'a'.repeat(64) }), /^The digest supplied does not match/],
      ['an invalid name', () => ({ name: '-bad name-' }), /is an invalid value for Name/],
      ['an invalid PEP 440 version', () => ({ version: 'latest' }), /'latest' is an invalid value for Version/],
      [
        'a file name for another project',
        () => ({ name: 'someone-else' }),
        /^Start filename for project 'someone-else' with 'someone_else'/,
      ],
      ['a file name for another version', () => ({ version: '2.0' }), /^Version in filename should be '2.0' not '1.0'/],
      ['an unsupported filetype', () => ({ filetype: 'bdist_egg' }), /^Invalid value for filetype/],
      ['a wheel sent as an sdist', () => ({ filetype: 'sdist', pyversion: 'source' }), /is a wheel, not sdist/],
      ['another :action', () => ({ ':action': 'submit' }), /^Invalid value for :action/],
    ];
    for (const [what, overrides, message] of refusals) {
      it(`refuses ${what} with Warehouse's message, and stores no row and no file`, async () => {
        const name = fresh();
        const [wheel] = await buildDists(dists, name, '1.0', ['py3-none-any']);
        const before = storedFiles(storage);
        const res = await upload(uploadForm(wheel!, { name, version: '1.0' }, overrides(name)));
        expect(res.status, res.text).to.equal(400);
        expect(res.reason).to.match(message);
        expect(res.text)
          .to.match(/^400 /)
          .and.match(new RegExp(message.source.replace(/^\^/, '')));
        expect(await fileRows(name)).to.deep.equal([]);
        expect(storedFiles(storage)).to.deep.equal(before);
      });
    }

    it('refuses a file over the configured limit, and keeps nothing of it', async () => {
      const name = fresh();
      const [wheel] = await buildDists(dists, name, '1.0', ['py3-none-any']);
      const big = Buffer.alloc(LIMIT + 1, 7);
      const res = await upload(
        uploadForm(wheel!, { name, version: '1.0' }, { sha256_digest: createHash('sha256').update(big).digest('hex') }, big),
      );
      expect(res.status).to.equal(400);
      expect(res.reason).to.match(/^File too large\. Limit for this index is 64 KiB/);
      expect(await fileRows(name)).to.deep.equal([]);
      expect(readdirSync(join(storage, '.incoming'))).to.deep.equal([]);
    });

    it('refuses metadata over the field limit, and more fields than the form allows, instead of truncating them', async () => {
      const name = fresh();
      const [wheel] = await buildDists(dists, name, '1.0', ['py3-none-any']);
      const long = await upload(uploadForm(wheel!, { name, version: '1.0' }, { description: 'x'.repeat(4 * 1024 * 1024 + 1) }));
      expect(long.status).to.equal(400);
      expect(long.reason).to.equal('Invalid upload form: the field description is over the limit of 4 MiB. Nothing was stored.');
      const many = uploadForm(wheel!, { name, version: '1.0' });
      // Distinct names: one field repeated is capped sooner (upload-form-memory.test.ts).
      for (let i = 0; i < 500; i++) many.append(`extra_${i}`, `${i}`);
      const crowded = await upload(many);
      expect(crowded.status).to.equal(400);
      expect(crowded.reason).to.equal('Invalid upload form: the form has more than 500 fields. Nothing was stored.');
      expect(await fileRows(name)).to.deep.equal([]);
      expect(readdirSync(join(storage, '.incoming'))).to.deep.equal([]);
    });

    it('answers 401 without credentials, 403 for a wrong token or password, 403 for a non-owner; a password works', async () => {
      const name = fresh();
      const [wheel, sdist] = await buildDists(dists, name, '1.0', ['py3-none-any', 'sdist']);
      const none = await fetch(`${app}/legacy/`, { method: 'POST', body: uploadForm(wheel!, { name, version: '1.0' }) });
      expect(none.status).to.equal(401);
      expect(none.headers.get('www-authenticate')).to.match(/^Basic/);
      expect((await upload(uploadForm(wheel!, { name, version: '1.0' }), basicAuth('__token__', 'banyan-nope'))).status).to.equal(403);
      expect((await upload(uploadForm(wheel!, { name, version: '1.0' }), basicAuth(owner.username, 'wrong password'))).status).to.equal(
        403,
      );
      expect((await upload(uploadForm(wheel!, { name, version: '1.0' }), basicAuth(owner.username, owner.password))).status).to.equal(200);
      const stranger = await newUploader((await services()).primaryUrl);
      const res = await upload(uploadForm(sdist!, { name, version: '1.0' }), basicAuth('__token__', stranger.token));
      expect(res.status).to.equal(403);
      expect(res.reason).to.equal(`The user '${stranger.username}' isn't allowed to upload to project '${name}'. Ask an owner to add you.`);
      expect(await fileRows(name)).to.deep.equal([wheel!.split('/').pop()]);
    });

    for (const [backend, path] of [
      ['the app', '/legacy/'],
      ['legacy', '/pypi'],
    ] as const) {
      it(`${backend} refuses an anonymous upload before its file is read, and cuts a sender that will not stop`, async function () {
        this.timeout(30_000);
        const url = new URL(backend === 'the app' ? app : backends.urls.legacy);
        const socket = connect(Number(url.port), url.hostname);
        let answer = '';
        socket.on('data', (d: Buffer) => {
          answer += d.toString('latin1');
        });
        const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
        socket.on('error', () => {});
        const declared = 50 * 1024 * 1024;
        socket.write(
          `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=xx\r\nContent-Length: ${declared}\r\n\r\n` +
            '--xx\r\nContent-Disposition: form-data; name=":action"\r\n\r\nfile_upload\r\n' +
            '--xx\r\nContent-Disposition: form-data; name="content"; filename="x-1.0.tar.gz"\r\n\r\n',
        );
        socket.write(Buffer.alloc(64 * 1024, 1));
        const started = Date.now();
        while (!/\r\n\r\n/.test(answer) && Date.now() - started < 5_000) await new Promise((r) => setTimeout(r, 20));
        expect(answer, 'the answer comes while the body is still being sent').to.match(/^HTTP\/1\.1 401 /);
        expect(answer).to.match(/\r\nconnection: close\r\n/i);
        expect(readdirSync(join(storage, '.incoming')), 'nothing of the file was written').to.deep.equal([]);
        // Past an upload's worth (the limit plus 16 MiB of slack), the connection is cut.
        const chunk = Buffer.alloc(1024 * 1024, 2);
        let sent = 0;
        while (!socket.destroyed && sent < 40) {
          if (!socket.write(chunk)) await Promise.race([new Promise((r) => socket.once('drain', r)), closed]);
          sent++;
        }
        await Promise.race([closed, new Promise((r) => setTimeout(r, 5_000))]);
        socket.destroy();
        expect(sent, `MiB sent before the server cut the connection (of ${declared / 1024 / 1024} declared)`).to.be.below(30);
      });
    }

    it('stores exactly one copy when the same file is uploaded twice at once', async () => {
      const name = fresh();
      const [wheel] = await buildDists(dists, name, '1.0', ['py3-none-any']);
      const results = await Promise.all([1, 2, 3, 4].map(() => upload(uploadForm(wheel!, { name, version: '1.0' }))));
      expect(results.map((r) => r.status)).to.deep.equal([200, 200, 200, 200]);
      expect(results.filter((r) => r.text.startsWith('OK: stored'))).to.have.length(1);
      expect(await fileRows(name)).to.have.length(1);
      expect(storedFiles(storage).filter((f) => f.endsWith(wheel!.split('/').pop()!))).to.have.length(1);
      expect(readdirSync(join(storage, '.incoming'))).to.deep.equal([]);
    });

    it('leaves no row and no file when the client goes away mid-upload', async () => {
      const name = fresh();
      await buildDists(dists, name, '1.0', ['py3-none-any']);
      const controller = new AbortController();
      let sent = 0;
      const body = new ReadableStream({
        pull(c) {
          if (sent++ === 0)
            c.enqueue(
              new TextEncoder().encode(
                '--xx\r\nContent-Disposition: form-data; name="content"; filename="x.whl"\r\n\r\n' + 'a'.repeat(30_000),
              ),
            );
          else setTimeout(() => controller.abort(), 100);
        },
      });
      await fetch(`${app}/legacy/`, {
        method: 'POST',
        body,
        duplex: 'half',
        signal: controller.signal,
        headers: { authorization: basicAuth('__token__', owner.token), 'content-type': 'multipart/form-data; boundary=xx' },
      } as RequestInit).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 300));
      expect(readdirSync(join(storage, '.incoming'))).to.deep.equal([]);
      expect(await fileRows(name)).to.deep.equal([]);
    });
  });

  describe('simple API', () => {
    let name: string;
    let files: string[];
    before(async () => {
      name = fresh();
      files = await buildDists(dists, name, '1.0', ['py3-none-any', 'sdist']);
      for (const f of files) expect((await upload(uploadForm(f, { name, version: '1.0' }))).status).to.equal(200);
    });

    it("serves PEP 691 JSON to pip's Accept header, with hashes, requires-python, size, upload-time and Vary", async () => {
      const res = await fetch(`${app}/simple/${name}/`, {
        headers: { accept: 'application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01' },
      });
      expect(res.headers.get('content-type')).to.equal('application/vnd.pypi.simple.v1+json');
      expect(res.headers.get('vary')).to.contain('Accept');
      expect(res.headers.get('surrogate-key')).to.contain(`project-${name}`);
      const body = (await res.json()) as {
        meta: Record<string, unknown>;
        name: string;
        versions: string[];
        files: Record<string, unknown>[];
      };
      expect(body.meta['api-version']).to.equal('1.1');
      expect(body.name).to.equal(name);
      expect(body.versions).to.deep.equal(['1.0']);
      const wheel = body.files.find((f) => String(f['filename']).endsWith('.whl'))!;
      const digest = createHash('sha256').update(readFileSync(files[0]!)).digest('hex');
      expect(wheel).to.include({ 'requires-python': '>=3.7', yanked: false, size: readFileSync(files[0]!).length });
      expect(wheel['hashes']).to.deep.equal({ sha256: digest });
      expect(String(wheel['upload-time'])).to.match(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      const download = await fetch(`${app}${String(wheel['url'])}`);
      expect(
        createHash('sha256')
          .update(Buffer.from(await download.arrayBuffer()))
          .digest('hex'),
      ).to.equal(digest);
    });

    it('serves PEP 503 HTML by default, with #sha256 fragments, data-requires-python and the repository version', async () => {
      const res = await fetch(`${app}/simple/${name}/`);
      expect(res.headers.get('content-type')).to.equal('text/html; charset=utf-8');
      const html = await res.text();
      expect(html).to.contain('<meta name="pypi:repository-version" content="1.1">');
      expect(html).to.match(
        new RegExp(
          `href="/packages/[0-9a-f/]+/${name.replace(/-/g, '_')}-1\\.0-py3-none-any\\.whl#sha256=[0-9a-f]{64}" data-requires-python="&gt;=3.7"`,
        ),
      );
      const index = await fetch(`${app}/simple/`, { headers: { accept: 'application/vnd.pypi.simple.v1+json' } });
      expect(((await index.json()) as { projects: { name: string }[] }).projects.map((p) => p.name)).to.include(name);
    });

    it('marks yanked releases: data-yanked with the reason in HTML, "yanked" in JSON', async () => {
      const yanked = fresh();
      const [wheel] = await buildDists(dists, yanked, '0.5', ['py3-none-any']);
      expect((await upload(uploadForm(wheel!, { name: yanked, version: '0.5' }))).status).to.equal(200);
      const s = await services();
      await withClient(s.primaryUrl, (c) =>
        c.query(
          "UPDATE releases SET yanked = true, yanked_reason = 'broken <build>' WHERE project_id = (SELECT id FROM projects WHERE normalized_name = $1)",
          [yanked],
        ),
      );
      // A direct change in the database (no upload) announces nothing: wait until the replica has it.
      await waitForReplay(s);
      const html = await (await fetch(`${app}/simple/${yanked}/`, { headers: { accept: 'application/vnd.pypi.simple.v1+html' } })).text();
      expect(html).to.contain('data-yanked="broken &lt;build&gt;"');
      const json = (await (
        await fetch(`${app}/simple/${yanked}/`, { headers: { accept: 'application/vnd.pypi.simple.v1+json' } })
      ).json()) as { files: { yanked: unknown }[] };
      expect(json.files[0]!.yanked).to.equal('broken <build>');
    });

    it('redirects non-normalized names, 404s unknown projects, 406s unacceptable types', async () => {
      const moved = await fetch(`${app}/simple/${name.toUpperCase().replace(/-/g, '_')}/`, { redirect: 'manual' });
      expect(moved.status).to.equal(301);
      expect(moved.headers.get('location')).to.equal(`/simple/${name}/`);
      expect((await fetch(`${app}/simple/no-such-project-${process.pid}/`)).status).to.equal(404);
      const refused = await fetch(`${app}/simple/${name}/`, { headers: { accept: 'application/xml' } });
      expect(refused.status).to.equal(406);
      expect(await refused.text()).to.contain('application/vnd.pypi.simple.v1+json');
    });

    it('keys cached pages by media type: a vnd.pypi HTML page never answers a text/html request', async () => {
      const vnd = await fetch(`${app}/simple/${name}/`, { headers: { accept: 'application/vnd.pypi.simple.v1+html' } });
      await vnd.text();
      expect(vnd.headers.get('content-type')).to.equal('application/vnd.pypi.simple.v1+html');
      for (const accept of ['text/html', '']) {
        const plain = await fetch(`${app}/simple/${name}/`, { headers: accept ? { accept } : {} });
        await plain.text();
        expect(plain.headers.get('content-type'), `Accept: ${accept || '(none)'}`).to.equal('text/html; charset=utf-8');
      }
    });

    it('negotiates application/* and */*, says Vary: Accept on every answer, redirects the forms without a slash, and sends X-PyPI-Last-Serial', async () => {
      const app_ = await fetch(`${app}/simple/${name}/`, { headers: { accept: 'application/*' } });
      expect([app_.status, app_.headers.get('content-type')]).to.deep.equal([200, 'application/vnd.pypi.simple.v1+json']);
      const json = (await app_.json()) as { meta: { '_last-serial': number } };
      expect(app_.headers.get('x-pypi-last-serial')).to.equal(String(json.meta['_last-serial']));
      const any = await fetch(`${app}/simple/${name}/`, { headers: { accept: '*/*' } });
      expect([any.status, any.headers.get('content-type'), any.headers.get('vary')?.split(', ')[0]]).to.deep.equal([
        200,
        'text/html; charset=utf-8',
        'Accept',
      ]);
      expect(any.headers.get('access-control-allow-origin'), 'a read API').to.equal('*');
      expect(any.headers.get('x-pypi-last-serial')).to.match(/^\d+$/);
      const refused = await fetch(`${app}/simple/${name}/`, { headers: { accept: 'image/png' } });
      expect([refused.status, refused.headers.get('vary')]).to.deep.equal([406, 'Accept']);
      const index = await fetch(`${app}/simple/`);
      await index.text();
      expect(Number(index.headers.get('x-pypi-last-serial'))).to.be.at.least(Number(json.meta['_last-serial']));
      for (const [from, to] of [
        [`/simple/${name}`, `/simple/${name}/`],
        [`/simple/${name.toUpperCase()}`, `/simple/${name}/`],
        ['/simple', '/simple/'],
      ]) {
        const moved = await fetch(`${app}${from}`, { redirect: 'manual' });
        expect([moved.status, moved.headers.get('location')], from).to.deep.equal([301, to]);
      }
    });

    it('answers 304 to a matching If-None-Match, and caches pages in Redis until an upload changes them', async () => {
      const first = await fetch(`${app}/simple/${name}/`);
      await first.text();
      const etag = first.headers.get('etag')!;
      expect(etag).to.match(/^"[\w-]+"$/);
      const again = await fetch(`${app}/simple/${name}/`, { headers: { 'if-none-match': etag } });
      expect(again.status).to.equal(304);
      expect(again.headers.get('x-banyan-cache')).to.equal('hit');
      const [wheel2] = await buildDists(dists, name, '1.1', ['py3-none-any']);
      expect((await upload(uploadForm(wheel2!, { name, version: '1.1' }))).status).to.equal(200);
      const after = await fetch(`${app}/simple/${name}/`, { headers: { 'if-none-match': etag } });
      expect(after.status, 'an upload must never leave the old page cached').to.equal(200);
      expect(after.headers.get('x-banyan-cache')).to.equal('miss');
      expect(await after.text()).to.contain('-1.1-py3-none-any.whl');
      expect((await fetch(`${app}/simple/${name}/`)).headers.get('x-banyan-cache')).to.equal('hit');
    });
  });

  describe('JSON API and files', () => {
    let name: string;
    let wheel: string;
    before(async () => {
      name = fresh();
      for (const version of ['1.0', '2.0rc1', '1.10']) {
        const built = await buildDists(dists, name, version, ['py3-none-any']);
        expect((await upload(uploadForm(built[0]!, { name, version }))).status).to.equal(200);
        if (version === '1.10') wheel = built[0]!;
      }
    });

    it('/pypi/<project>/json has info (latest non-pre-release by PEP 440), urls, releases and last_serial', async () => {
      const res = await fetch(`${app}/pypi/${name}/json`);
      expect(res.status).to.equal(200);
      const body = (await res.json()) as {
        info: Record<string, unknown>;
        releases: Record<string, unknown[]>;
        urls: Record<string, unknown>[];
        last_serial: number;
      };
      expect(body.info['version']).to.equal('1.10');
      expect(body.info['requires_dist']).to.deep.equal(['requests>=2', 'idna']);
      expect(Object.keys(body.releases)).to.deep.equal(['1.0', '1.10', '2.0rc1']);
      expect(body.urls.map((u) => u['filename'])).to.deep.equal([wheel.split('/').pop()]);
      expect(body.urls[0]).to.include.keys('digests', 'packagetype', 'python_version', 'size', 'upload_time_iso_8601', 'url', 'yanked');
      expect(body.last_serial).to.be.a('number').above(0);
      const etag = res.headers.get('etag')!;
      expect((await fetch(`${app}/pypi/${name}/json`, { headers: { 'if-none-match': etag } })).status).to.equal(304);
    });

    it('gives absolute file URLs through the proxy, CORS, a 301 to the normalized name, and the latest yanked version when all are', async () => {
      const res = await fetch(`${backends.urls.proxy}/pypi/${name}/json`);
      expect(res.headers.get('access-control-allow-origin')).to.equal('*');
      const body = (await res.json()) as { urls: { url: string; digests: { sha256: string } }[] };
      const url = body.urls[0]!.url;
      expect(url).to.match(new RegExp(`^${backends.urls.proxy}/packages/`));
      const file = Buffer.from(await (await fetch(url)).arrayBuffer());
      expect(createHash('sha256').update(file).digest('hex'), 'the URL works as it is').to.equal(body.urls[0]!.digests.sha256);
      const moved = await fetch(`${app}/pypi/${name.toUpperCase().replace(/-/g, '.')}/1.0/json`, { redirect: 'manual' });
      expect([moved.status, moved.headers.get('location')]).to.deep.equal([301, `/pypi/${name}/1.0/json`]);

      const gone = fresh();
      for (const version of ['0.9', '1.0']) {
        const [w] = await buildDists(dists, gone, version, ['py3-none-any']);
        expect((await upload(uploadForm(w!, { name: gone, version }))).status).to.equal(200);
      }
      await withClient((await services()).primaryUrl, (c) =>
        c.query('UPDATE releases SET yanked = true WHERE project_id = (SELECT id FROM projects WHERE normalized_name = $1)', [gone]),
      );
      await waitForReplay(await services());
      const info = ((await (await fetch(`${app}/pypi/${gone}/json`)).json()) as { info: { version: string | null; yanked: boolean } }).info;
      expect(info, 'every release yanked: the newest one, marked').to.deep.include({ version: '1.0', yanked: true });
    });

    it("gives md5 and blake2b_256 digests beside sha256, as Python's hashlib computes them, and backfills old files", async () => {
      const body = (await (await fetch(`${app}/pypi/${name}/1.10/json`)).json()) as {
        urls: { url: string; md5_digest: string; digests: Record<string, string> }[];
      };
      const file = body.urls[0]!;
      const bytes = join(dists, `digests-${process.pid}.bin`);
      writeFileSync(bytes, Buffer.from(await (await fetch(file.url)).arrayBuffer()));
      const py = await run('python3', [
        '-c',
        'import hashlib, sys; d = open(sys.argv[1], "rb").read(); print(hashlib.md5(d).hexdigest(), hashlib.blake2b(d, digest_size=32).hexdigest(), hashlib.sha256(d).hexdigest())',
        bytes,
      ]);
      const [md5, blake, sha256] = py.stdout.trim().split(' ');
      expect(file.digests).to.deep.equal({ blake2b_256: blake, md5, sha256 });
      expect(file.md5_digest).to.equal(md5);

      const s = await services();
      await withClient(s.primaryUrl, (c) =>
        c.query('UPDATE files SET md5_digest = NULL, blake2_256_digest = NULL WHERE filename LIKE $1', [`${name.replace(/-/g, '_')}-%`]),
      );
      await waitForReplay(s);
      const bare = (await (await fetch(`${app}/pypi/${name}/1.10/json`)).json()) as { urls: { digests: Record<string, string> }[] };
      expect(Object.keys(bare.urls[0]!.digests), 'files stored before the digests were kept').to.deep.equal(['sha256']);
      const r = await runBanyanAsync(['backfill', 'digests', '--project', name, '--json'], {
        env: { DATABASE_URL: s.primaryUrl, BANYAN_STORAGE: storage },
      });
      expect(r.status, r.stderr).to.equal(0);
      expect(JSON.parse(r.stdout), 'the three files of the project').to.deep.equal({ extracted: 3, skipped: [] });
      await waitForReplay(s);
      const back = (await (await fetch(`${app}/pypi/${name}/1.10/json`)).json()) as { urls: { digests: Record<string, string> }[] };
      expect(back.urls[0]!.digests).to.deep.equal({ blake2b_256: blake, md5, sha256 });
    });

    it('gzips larger pages for clients that accept it, as another representation with its own ETag', async () => {
      const { request } = await import('undici');
      const get = async (encoding: string) => {
        const res = await request(`${app}/pypi/${name}/json`, { headers: { 'accept-encoding': encoding } });
        const raw = Buffer.from(await res.body.arrayBuffer());
        return { headers: res.headers, raw };
      };
      const zipped = await get('gzip, deflate');
      expect(zipped.headers['content-encoding']).to.equal('gzip');
      expect(String(zipped.headers['vary'])).to.contain('Accept-Encoding');
      const plain = await get('identity');
      expect(plain.headers['content-encoding']).to.equal(undefined);
      expect(gunzipSync(zipped.raw).equals(plain.raw), 'the same page').to.equal(true);
      expect(zipped.raw.length).to.be.below(plain.raw.length);
      expect(zipped.headers['etag']).to.equal(String(plain.headers['etag']).replace(/"$/, '-gzip"'));
      expect((await get('gzip;q=0')).headers['content-encoding'], 'q=0 refuses it').to.equal(undefined);
      const small = await request(`${app}/_health`, { headers: { 'accept-encoding': 'gzip' } });
      await small.body.dump();
      expect(small.headers['content-encoding'], 'small answers are not worth it').to.equal(undefined);
    });

    it('/pypi/<project>/<version>/json has no releases key, and 404s unknown versions', async () => {
      const body = (await (await fetch(`${app}/pypi/${name}/2.0rc1/json`)).json()) as Record<string, unknown>;
      expect((body['info'] as Record<string, unknown>)['version']).to.equal('2.0rc1');
      expect(body).to.not.have.property('releases');
      expect((await fetch(`${app}/pypi/${name}/9.9/json`)).status).to.equal(404);
    });

    it('serves files with Content-Length, ETag, 304, Range (206) and 416', async () => {
      const body = (await (await fetch(`${app}/pypi/${name}/1.10/json`)).json()) as {
        urls: { url: string; size: number; digests: { sha256: string } }[];
      };
      const file = body.urls[0]!;
      const whole = await fetch(file.url);
      const bytes = Buffer.from(await whole.arrayBuffer());
      expect(Number(whole.headers.get('content-length')))
        .to.equal(file.size)
        .and.equal(bytes.length);
      expect(whole.headers.get('etag')).to.equal(`"${file.digests.sha256}"`);
      expect(whole.headers.get('accept-ranges')).to.equal('bytes');
      expect((await fetch(file.url, { headers: { 'if-none-match': `"${file.digests.sha256}"` } })).status).to.equal(304);
      const part = await fetch(file.url, { headers: { range: 'bytes=10-19' } });
      expect(part.status).to.equal(206);
      expect(part.headers.get('content-range')).to.equal(`bytes 10-19/${file.size}`);
      expect(Buffer.from(await part.arrayBuffer())).to.deep.equal(bytes.subarray(10, 20));
      const tail = await fetch(file.url, { headers: { range: 'bytes=-5' } });
      expect(Buffer.from(await tail.arrayBuffer())).to.deep.equal(bytes.subarray(bytes.length - 5));
      const outside = await fetch(file.url, { headers: { range: `bytes=${file.size}-` } });
      expect(outside.status).to.equal(416);
      expect(outside.headers.get('content-range')).to.equal(`bytes */${file.size}`);
      // fetch would resolve the dots itself: the raw target goes out as written, so the server is what refuses it.
      for (const target of [
        '/packages/../../etc/passwd',
        '/packages/%2e%2e/%2e%2e/etc/passwd',
        '/packages/ab/cd/..%2f..%2f..%2fetc/passwd',
      ]) {
        const answer = await rawGet(app, target);
        expect(answer.split('\r\n')[0], target).to.match(/^HTTP\/1\.1 (400|404) /);
        expect(answer, target).to.not.contain('root:');
      }
    });
  });

  describe('download page', () => {
    it("offers the file for the visitor's platform and pages through releases", async () => {
      const name = fresh();
      for (const version of ['0.9', '1.0']) {
        const built = await buildDists(dists, name, version, ['cp311-cp311-win_amd64', 'cp311-cp311-macosx_11_0_universal2', 'sdist']);
        for (const f of built)
          expect((await upload(uploadForm(f, { name, version, pyversion: f.endsWith('.whl') ? 'cp311' : 'source' }))).status).to.equal(200);
      }
      const page = async (ua: string, query = '') => {
        const res = await fetch(`${app}/project/${name}/${query}`, { headers: { 'user-agent': ua } });
        expect(res.status).to.equal(200);
        expect(res.headers.get('vary')).to.contain('User-Agent');
        expect(res.headers.get('vary')).to.contain('Sec-CH-UA-Arch');
        expect(res.headers.get('accept-ch'), 'asks Chromium for the CPU').to.equal(
          'Sec-CH-UA-Arch, Sec-CH-UA-Bitness, Sec-CH-UA-Platform-Version',
        );
        return res.text();
      };
      const dist = name.replace(/-/g, '_');
      expect(await page('Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0')).to.match(
        new RegExp(`id="download"[^>]*data-filename="${dist}-1\\.0-cp311-cp311-win_amd64\\.whl"`),
      );
      expect(await page('Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) Safari/605.1.15')).to.match(
        new RegExp(`data-filename="${dist}-1\\.0-cp311-cp311-macosx_11_0_universal2\\.whl"`),
      );
      expect(await page('Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0')).to.match(new RegExp(`data-filename="${dist}-1\\.0\\.tar\\.gz"`));
      // Thin Mac wheels only: Safari hides the CPU, so both are offered; Chromium's hints pick one.
      const thin = fresh();
      for (const f of await buildDists(dists, thin, '1.0', ['cp311-cp311-macosx_11_0_arm64', 'cp311-cp311-macosx_10_9_x86_64'])) {
        expect((await upload(uploadForm(f, { name: thin, version: '1.0', pyversion: 'cp311' }))).status).to.equal(200);
      }
      const thinDist = thin.replace(/-/g, '_');
      const safari = await (
        await fetch(`${app}/project/${thin}/`, {
          headers: { 'user-agent': 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) Version/17.0 Safari/605.1.15' },
        })
      ).text();
      expect(safari).to.match(new RegExp(`id="download"[^>]*data-filename="${thinDist}-1\\.0-cp311-cp311-macosx_11_0_arm64\\.whl"`));
      expect(safari).to.match(
        new RegExp(`class="button alternative"[^>]*data-filename="${thinDist}-1\\.0-cp311-cp311-macosx_10_9_x86_64\\.whl"`),
      );
      expect(safari).to.contain('id="platform-note"');
      const chromeArm = await (
        await fetch(`${app}/project/${thin}/`, {
          headers: {
            'user-agent': 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) Chrome/131.0',
            'sec-ch-ua-platform': '"macOS"',
            'sec-ch-ua-arch': '"arm"',
            'sec-ch-ua-bitness': '"64"',
          },
        })
      ).text();
      expect(chromeArm).to.match(new RegExp(`id="download"[^>]*data-filename="${thinDist}-1\\.0-cp311-cp311-macosx_11_0_arm64\\.whl"`));
      expect(chromeArm).to.not.contain('button alternative');
      const res = await fetch(`${app}/project/${name}/`, { headers: { 'user-agent': 'curl/8' } });
      expect(res.headers.get('surrogate-key')).to.equal(`project-${name}`);
      expect(
        (await fetch(`${app}/project/${name}/`, { headers: { 'user-agent': 'curl/8', 'if-none-match': res.headers.get('etag')! } })).status,
      ).to.equal(304);
      const second = await page('curl/8', '?page=2');
      expect(second).to.not.contain('<li>');
      expect((await fetch(`${app}/project/${name}/?page=0`)).status).to.equal(400);
      expect((await fetch(`${app}/project/${name}/0.9/`)).status).to.equal(200);
    });
  });

  describe("the app's metrics", () => {
    it('count uploads by result and failure reason, DB reads by target and reason, replica lag; promtool passes', async function () {
      const text = await (await fetch(`${app}/metrics`)).text();
      expect(text).to.match(/^banyan_upload_attempts_total\{result="stored"\} [1-9]/m);
      expect(text).to.match(/^banyan_upload_failures_total\{reason="digest-mismatch"\} [1-9]/m);
      expect(text).to.match(/^banyan_upload_failures_total\{reason="file-exists"\} [1-9]/m);
      expect(text).to.match(/^banyan_upload_failures_total\{reason="auth-missing"\} [1-9]/m);
      expect(text).to.match(/^banyan_db_reads_total\{target="replica-1",reason="no_fence"\} [1-9]/m);
      expect(text).to.match(/^banyan_db_replica_lag_seconds\{replica="replica-1"\} [\d.e-]+$/m);
      expect(text).to.match(/^banyan_db_replica_lag_bytes\{replica="replica-1"\} \d+$/m);
      expect(text).to.match(/^banyan_page_cache_requests_total\{result="hit"\} [1-9]/m);
      expect(text).to.match(/^banyan_app_requests_total\{handler="simple.detail",method="GET",status_class="2xx"\} [1-9]/m);
      expect(await promtoolProblems(this, text)).to.equal('');
    });
  });

  describe('the legacy stand-in', () => {
    it('serves an RSS feed of recent releases', async () => {
      const res = await fetch(`${backends.urls.legacy}/pypi?:action=rss`);
      expect(res.headers.get('content-type')).to.contain('application/rss+xml');
      const xml = await res.text();
      expect(xml).to.match(/^<\?xml[^>]*>\n<rss version="2.0"><channel>/);
      expect(xml).to.match(/<item>\n {4}<title>pkg-\d+-\d+ [\d.rc]+<\/title>/);
    });

    it('answers XML-RPC calls, and bad ones with faults', async () => {
      const call = async (body: string) =>
        (await fetch(`${backends.urls.legacy}/pypi`, { method: 'POST', headers: { 'content-type': 'text/xml' }, body })).text();
      const list = await call('<?xml version="1.0"?><methodCall><methodName>list_packages</methodName><params></params></methodCall>');
      expect(list).to.match(
        /^<\?xml version='1.0'\?>\n<methodResponse><params><param><value><array><data>(<value><string>[^<]+<\/string><\/value>)+<\/data>/,
      );
      const unknown = await call('<methodCall><methodName>drop_tables</methodName></methodCall>');
      expect(unknown).to.contain('<name>faultCode</name><value><int>-32601</int></value>').and.contain('drop_tables');
      const bad = await call(
        '<methodCall><methodName>list_packages</methodName><params><param><value><int>1</int></value></param></params></methodCall>',
      );
      expect(bad).to.contain('<int>-32602</int>').and.contain('wrong number of parameters');
      expect(await call('<methodCall><methodName>oops')).to.contain('<int>-32700</int>');
    });

    it("answers search, release_data and changelog to Python's xmlrpc.client", async function () {
      this.timeout(30_000);
      const name = fresh();
      const [sdist] = await buildDists(dists, name, '3.0', ['sdist']);
      expect((await upload(uploadForm(sdist!, { name, version: '3.0' }))).status).to.equal(200);
      const script = [
        'import json, sys, time, xmlrpc.client',
        `p = xmlrpc.client.ServerProxy("${backends.urls.legacy}/pypi")`,
        `hits = p.search({"name": "${name}"})`,
        `data = p.release_data("${name}", "3.0")`,
        `log = [e for e in p.changelog(int(time.time()) - 3600) if e[0] == "${name}"]`,
        `print(json.dumps({"hits": hits, "summary": data["summary"], "requires_dist": data["requires_dist"], "missing": p.release_data("${name}", "9.9"), "log": [e[3] for e in log]}))`,
      ].join('\n');
      const out = JSON.parse((await run('python3', ['-c', script])).stdout) as {
        hits: { name: string; version: string }[];
        summary: string;
        requires_dist: string[];
        missing: object;
        log: string[];
      };
      expect(out.hits).to.deep.equal([{ name, version: '3.0', summary: `Test package ${name}`, _pypi_ordering: 0 }]);
      expect(out.summary).to.equal(`Test package ${name}`);
      expect(out.requires_dist).to.deep.equal(['requests>=2', 'idna']);
      expect(out.missing).to.deep.equal({});
      expect(out.log).to.deep.equal(['create', 'new release', `add source file ${name.replace(/-/g, '_')}-3.0.tar.gz`]);
    });

    it('takes the old upload form at POST /pypi, with the same checks, visible through the new app', async () => {
      const name = fresh();
      const [sdist] = await buildDists(dists, name, '0.1', ['sdist']);
      const res = await upload(
        uploadForm(sdist!, { name, version: '0.1' }),
        basicAuth(owner.username, owner.password),
        `${backends.urls.legacy}/pypi`,
      );
      expect(res.status, res.text).to.equal(200);
      const bad = await upload(
        uploadForm(sdist!, { name, version: '0.1' }, { sha256_digest: 'b'.repeat(64) }),
        basicAuth(owner.username, owner.password),
        `${backends.urls.legacy}/pypi`,
      );
      expect(bad.status).to.equal(400);
      expect(await (await fetch(`${app}/simple/${name}/`)).text()).to.contain(`${name.replace(/-/g, '_')}-0.1.tar.gz`);
    });
  });
});

/** One GET with the request target exactly as given (no client-side normalization), and the whole answer. */
async function rawGet(origin: string, target: string): Promise<string> {
  const url = new URL(origin);
  const socket = connect(Number(url.port), url.hostname);
  let answer = '';
  socket.on('data', (d: Buffer) => {
    answer += d.toString('latin1');
  });
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.end(`GET ${target} HTTP/1.1\r\nHost: ${url.host}\r\nConnection: close\r\n\r\n`);
  await closed;
  return answer;
}
