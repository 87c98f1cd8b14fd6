import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { listen } from '../lib/http-server.js';
import { DEFAULT_ROUTES_FILE, readRoutesFile, type TableSpec } from '../routing/table/index.js';
import { startBackends, type Backends } from '../stack/local-stack.js';
import { runBanyanAsync } from './support/cli.js';
import { basicAuth, buildDists, newUploader, run, uploadForm } from './support/packages.js';
import { setRoutes, TEST_SECRET } from './support/proxy.js';
import { services, tempDir, withClient } from './support/services.js';

/** Builds a wheel or sdist whose METADATA says what the test wants (Python's zipfile and tarfile). */
const CUSTOM = String.raw`
import io, json, sys, tarfile, zipfile
spec = json.loads(sys.argv[1])
dist, version, out = spec['dist'], spec['version'], spec['out']
meta = spec['meta'].encode()
if spec['kind'] == 'sdist':
    with tarfile.open(out, 'w:gz') as t:
        for rel, data in ((f"{dist}-{version}/PKG-INFO", meta), (f"{dist}-{version}/setup.py", b"")):
            info = tarfile.TarInfo(rel); info.size = len(data); t.addfile(info, io.BytesIO(data))
else:
    with zipfile.ZipFile(out, 'w', zipfile.ZIP_DEFLATED) as z:
        info = f"{dist}-{version}.dist-info"
        z.writestr(f"{info}/METADATA", meta)
        z.writestr(f"{info}/WHEEL", f"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: {spec['tag']}\n")
        for i in range(spec.get('members', 0)):
            z.writestr(f"{dist}/m{i}.py", "")
        if spec.get('bomb'):
            with z.open(f"{dist}/zeros.bin", 'w', force_zip64=True) as f:
                block = b"\0" * (1 << 20)
                for _ in range(spec['bomb']): f.write(block)
        z.writestr(f"{info}/RECORD", "")
`;

describe('upload validation: the archive is opened and checked as Warehouse does', function () {
  this.timeout(120_000);
  let backends: Backends;
  let work: string;
  let auth: string;
  let n = 0;
  const fresh = () => `valid-${process.pid}-${++n}`;

  before(async () => {
    const s = await services();
    await setRoutes(s, readRoutesFile(DEFAULT_ROUTES_FILE) as TableSpec, 'upload validation: shipped routes');
    work = tempDir('banyan-validation-');
    backends = await startBackends(s, {
      adminToken: 't',
      secret: TEST_SECRET,
      redisUrl: s.redisUrl,
      storageDir: join(work, 'files'),
      projectsPerHour: 1_000,
    });
    auth = basicAuth('__token__', (await newUploader(s.primaryUrl)).token);
  });

  after(async () => {
    await backends?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  async function build(
    name: string,
    version: string,
    options: { kind?: 'wheel' | 'sdist'; tag?: string; meta?: string; bomb?: number; members?: number; fileVersion?: string },
  ) {
    const dist = name.replace(/-/g, '_');
    const kind = options.kind ?? 'wheel';
    const fileVersion = options.fileVersion ?? version;
    const dir = join(work, `b${++n}`);
    mkdirSync(dir);
    const out = join(
      dir,
      kind === 'sdist' ? `${dist}-${fileVersion}.tar.gz` : `${dist}-${fileVersion}-${options.tag ?? 'py3-none-any'}.whl`,
    );
    const meta = options.meta ?? `Metadata-Version: 2.1\nName: ${name}\nVersion: ${version}\n\n`;
    await run('python3', [
      '-c',
      CUSTOM,
      JSON.stringify({
        kind,
        dist,
        version: fileVersion,
        out,
        meta,
        tag: options.tag ?? 'py3-none-any',
        bomb: options.bomb ?? 0,
        members: options.members ?? 0,
      }),
    ]);
    return out;
  }

  async function upload(
    path: string,
    fields: { name: string; version: string },
    overrides: Record<string, string | undefined> = {},
    extra: [string, string][] = [],
  ) {
    const form = uploadForm(path, fields, overrides);
    for (const [k, v] of extra) form.append(k, v);
    const res = await fetch(`${backends.urls.proxy}/legacy/`, { method: 'POST', body: form, headers: { authorization: auth } });
    return { status: res.status, reason: res.statusText, text: await res.text() };
  }

  async function stored(name: string): Promise<string[]> {
    return withClient((await services()).primaryUrl, async (c) =>
      (
        await c.query(
          `SELECT f.filename FROM files f JOIN releases r ON r.id = f.release_id JOIN projects p ON p.id = r.project_id WHERE p.normalized_name = $1 ORDER BY 1`,
          [name],
        )
      ).rows.map((r: { filename: string }) => r.filename),
    );
  }

  async function failures(): Promise<string> {
    return (await fetch(`${backends.urls.app}/metrics`)).text();
  }

  const cases: [
    string,
    (name: string) => Promise<{ path: string; version?: string; overrides?: Record<string, string>; extra?: [string, string][] }>,
    RegExp,
    string,
  ][] = [
    [
      'random bytes named .whl',
      async (name) => {
        const path = join(work, `${name.replace(/-/g, '_')}-1.0-py3-none-any.whl`);
        writeFileSync(path, randomBytes(4_096));
        return { path };
      },
      /^Invalid distribution file: not a zip archive/,
      'bad-archive',
    ],
    [
      'random bytes named .tar.gz',
      async (name) => {
        const path = join(work, `${name.replace(/-/g, '_')}-1.0.tar.gz`);
        writeFileSync(path, randomBytes(4_096));
        return { path };
      },
      /^Invalid distribution file: not a gzipped tar archive/,
      'bad-archive',
    ],
    [
      'a wheel whose METADATA says 5.0, uploaded as 5.1',
      async (name) => ({
        path: await build(name, '5.0', { fileVersion: '5.1' }),
        version: '5.1',
      }),
      /^Invalid distribution file: its metadata says Version '5\.0', not '5\.1'/,
      'metadata-mismatch',
    ],
    [
      'a wheel for another project',
      async (name) => ({
        path: await build(name, '1.0', { meta: 'Metadata-Version: 2.1\nName: someone-else\nVersion: 1.0\n\n' }),
      }),
      /^Invalid distribution file: its metadata says Name 'someone-else'/,
      'metadata-mismatch',
    ],
    [
      'a linux_x86_64 wheel',
      async (name) => ({ path: await build(name, '1.0', { tag: 'cp311-cp311-linux_x86_64' }) }),
      /^Binary wheel has an unsupported platform tag 'linux_x86_64'/,
      'bad-platform-tag',
    ],
    [
      'an invalid classifier',
      async (name) => ({ path: await build(name, '1.0', {}), extra: [['classifiers', 'Programming Language :: Cobol :: 2077']] }),
      /^Invalid value for classifiers\. Error: Classifier 'Programming Language :: Cobol :: 2077' is not a valid classifier/,
      'bad-classifier',
    ],
    [
      'an invalid classifier in the METADATA',
      async (name) => ({
        path: await build(name, '1.0', { meta: `Metadata-Version: 2.1\nName: ${name}\nVersion: 1.0\nClassifier: Made Up :: Thing\n\n` }),
      }),
      /Classifier 'Made Up :: Thing' is not a valid classifier/,
      'bad-classifier',
    ],
    [
      'requires_dist=this is not ( a requirement',
      async (name) => ({ path: await build(name, '1.0', {}), extra: [['requires_dist', 'this is not ( a requirement']] }),
      /^Invalid value for requires_dist\. Error: Can't parse 'this is not \( a requirement'/,
      'bad-requires-dist',
    ],
    [
      'metadata_version=9.9',
      async (name) => ({ path: await build(name, '1.0', {}), overrides: { metadata_version: '9.9' } }),
      /^'9\.9' is an invalid value for Metadata-Version/,
      'bad-metadata-version',
    ],
    [
      'an invalid Requires-Python',
      async (name) => ({ path: await build(name, '1.0', {}), overrides: { requires_python: '>=3.x' } }),
      /^'>=3\.x' is an invalid value for Requires-Python/,
      'bad-requires-python',
    ],
    [
      'a 300 KB wheel that unpacks to 300 MiB',
      async (name) => ({ path: await build(name, '1.0', { bomb: 300 }) }),
      /^Invalid distribution file: it unpacks to more than 256 MiB/,
      'archive-too-large',
    ],
    [
      'a wheel of 20,001 members',
      async (name) => ({ path: await build(name, '1.0', { members: 20_001 }) }),
      /^Invalid distribution file: 20004 members, over the limit of 20000/,
      'archive-too-large',
    ],
  ];

  for (const [what, make, message, reason] of cases) {
    it(`refuses ${what} with its own message and metric reason, and stores nothing`, async () => {
      const name = fresh();
      const made = await make(name);
      const version = made.version ?? '1.0';
      const res = await upload(made.path, { name, version }, made.overrides ?? {}, made.extra ?? []);
      expect(res.status, res.text).to.equal(400);
      expect(res.reason).to.match(message);
      expect(await stored(name)).to.deep.equal([]);
      expect(await failures()).to.match(new RegExp(`^banyan_upload_failures_total\\{reason="${reason}"\\} [1-9]`, 'm'));
    });
  }

  it('refuses a second sdist in one release', async () => {
    const name = fresh();
    expect((await upload(await build(name, '1.0', { kind: 'sdist' }), { name, version: '1.0' })).status).to.equal(200);
    const second = await upload(await build(name, '1.0.0', { kind: 'sdist' }), { name, version: '1.0.0' });
    expect([second.status, second.reason]).to.deep.equal([
      400,
      `Only one sdist may be uploaded per release: ${name.replace(/-/g, '_')}-1.0.tar.gz is already there.`,
    ]);
    expect(await stored(name)).to.deep.equal([`${name.replace(/-/g, '_')}-1.0.tar.gz`]);
  });

  it('accepts valid requirements, markers, classifiers and specifiers', async () => {
    const name = fresh();
    const path = await build(name, '2.0', {
      meta:
        `Metadata-Version: 2.3\nName: ${name}\nVersion: 2.0\nRequires-Python: >=3.8, !=3.9.*\nClassifier: Programming Language :: Python :: 3\n` +
        'Requires-Dist: requests[socks]>=2.8,<3; python_version >= "3.8" and (sys_platform == "linux" or extra == "net")\n' +
        'Requires-Dist: attrs (>=21)\nRequires-Dist: pkg @ https://example.org/pkg-1.0.tar.gz ; os_name == "posix"\n\n',
    });
    const res = await upload(path, { name, version: '2.0' }, { requires_python: '>=3.8, !=3.9.*' }, [
      ['classifiers', 'License :: OSI Approved :: MIT License'],
      ['requires_dist', 'idna~=3.4'],
    ]);
    expect(res.status, res.reason).to.equal(200);
  });

  describe('core metadata (PEP 658/714)', () => {
    it("serves each wheel's METADATA at <url>.metadata and advertises its sha256 in both simple formats", async () => {
      const name = fresh();
      const dir = join(work, `pep658-${n}`);
      mkdirSync(dir);
      const [wheel, sdist] = await buildDists(dir, name, '1.0', ['py3-none-any', 'sdist']);
      for (const file of [wheel!, sdist!]) expect((await upload(file, { name, version: '1.0' })).status).to.equal(200);
      const html = await (await fetch(`${backends.urls.proxy}/simple/${name}/`)).text();
      const link =
        /<a href="([^"#]+)#sha256=[0-9a-f]+"[^>]*data-core-metadata="sha256=([0-9a-f]{64})" data-dist-info-metadata="sha256=\2"/.exec(html);
      expect(link, html).to.not.equal(null);
      const metadata = Buffer.from(await (await fetch(`${backends.urls.proxy}${link![1]}.metadata`)).arrayBuffer());
      expect(createHash('sha256').update(metadata).digest('hex')).to.equal(link![2]);
      expect(metadata.toString()).to.match(new RegExp(`^Metadata-Version: 2\\.1\\nName: ${name}\\nVersion: 1\\.0\\n`));
      const json = (await (
        await fetch(`${backends.urls.proxy}/simple/${name}/`, { headers: { accept: 'application/vnd.pypi.simple.v1+json' } })
      ).json()) as { files: { filename: string; 'core-metadata': unknown; 'dist-info-metadata': unknown }[] };
      const byName = Object.fromEntries(json.files.map((f) => [f.filename, [f['core-metadata'], f['dist-info-metadata']]]));
      expect(byName[wheel!.split('/').pop()!]).to.deep.equal([{ sha256: link![2] }, { sha256: link![2] }]);
      expect(byName[sdist!.split('/').pop()!], 'sdists have none').to.deep.equal([false, false]);
    });

    it("pip reads candidates' .metadata while resolving and downloads only the wheel it installs (the app's request log)", async () => {
      const name = fresh();
      const dir = join(work, `pip658-${n}`);
      mkdirSync(dir);
      const dist = name.replace(/-/g, '_');
      // 2.0 needs a project the index does not have: pip must reject it, from its metadata alone, and take 1.0.
      const newer = await build(name, '2.0', {
        meta: `Metadata-Version: 2.1\nName: ${name}\nVersion: 2.0\nRequires-Dist: no-such-dependency-${process.pid}\n\n`,
      });
      const older = await build(name, '1.0', {});
      for (const [file, version] of [
        [older, '1.0'],
        [newer, '2.0'],
      ] as const)
        expect((await upload(file, { name, version })).status).to.equal(200);
      // A logging hop in front of the app: every path pip asks for.
      const asked: string[] = [];
      const app = new URL(backends.urls.app);
      const recorder = await listen(
        createServer((req, res) => {
          asked.push(req.url!);
          fetch(`${backends.urls.app}${req.url}`, { headers: { accept: req.headers.accept ?? '*/*' } }).then(
            async (r) => {
              res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'application/octet-stream' });
              res.end(Buffer.from(await r.arrayBuffer()));
            },
            () => {
              res.writeHead(502);
              res.end();
            },
          );
        }),
        0,
        app.hostname,
        'test',
      );
      try {
        const r = await run(
          'python3',
          ['-m', 'pip', 'download', '--dest', join(dir, 'got'), '--index-url', `${recorder.url}/simple/`, name],
          {
            allowFailure: true,
            env: { PIP_DISABLE_PIP_VERSION_CHECK: '1', PIP_NO_CACHE_DIR: '1', PIP_CONFIG_FILE: '/dev/null', HOME: work },
          },
        );
        expect(r.code, `${r.stdout}\n${r.stderr}`).to.equal(0);
        expect(readdirSync(join(dir, 'got'))).to.deep.equal([`${dist}-1.0-py3-none-any.whl`]);
        const files = asked.filter((p) => p.startsWith('/packages/')).map((p) => p.slice(p.lastIndexOf('/') + 1));
        expect(files, asked.join('\n')).to.include(`${dist}-2.0-py3-none-any.whl.metadata`);
        expect(files, "the rejected candidate's wheel was never downloaded").to.not.include(`${dist}-2.0-py3-none-any.whl`);
      } finally {
        await recorder.close();
      }
    });
  });

  it('banyan backfill metadata serves METADATA for wheels uploaded before, and the cached simple page shows it at once', async () => {
    const s = await services();
    const name = fresh();
    const wheel = await build(name, '1.0', {});
    expect((await upload(wheel, { name, version: '1.0' })).status).to.equal(200);
    // As if uploaded before PEP 658 support: no hash, no file beside it.
    const path = await withClient(
      s.primaryUrl,
      async (c) =>
        (await c.query(`UPDATE files SET metadata_sha256 = NULL WHERE filename = $1 RETURNING path`, [wheel.split('/').pop()])).rows[0]
          .path as string,
    );
    rmSync(join(work, 'files', `${path}.metadata`));
    const page = () => fetch(`${backends.urls.proxy}/simple/${name}/`).then((r) => r.text());
    expect(await page()).to.not.contain('data-core-metadata');
    const r = await runBanyanAsync(['backfill', 'metadata', '--project', name, '--json'], {
      env: { DATABASE_URL: s.primaryUrl, BANYAN_STORAGE: join(work, 'files'), REDIS_URL: s.redisUrl! },
    });
    expect(r.status, r.stderr).to.equal(0);
    const result = JSON.parse(r.stdout) as { extracted: number; skipped: unknown[] };
    expect(result).to.deep.equal({ extracted: 1, skipped: [] });
    expect(await page(), 'the cached page was refreshed').to.contain('data-core-metadata="sha256=');
    const served = await fetch(`${backends.urls.proxy}/packages/${path}.metadata`);
    expect([served.status, (await served.text()).split('\n')[1]]).to.deep.equal([200, `Name: ${name}`]);
    const again = await runBanyanAsync(['backfill', 'metadata', '--project', name], {
      env: { DATABASE_URL: s.primaryUrl, BANYAN_STORAGE: join(work, 'files') },
    });
    expect(again.stdout, 'a second run has nothing left to do').to.equal(
      'Extracted METADATA from 0 wheels; pip now reads them without downloading.\n',
    );
  });

  it('leaves no temp file behind after any of the refusals', () => {
    expect(readdirSync(join(work, 'files', '.incoming'))).to.deep.equal([]);
  });
});
