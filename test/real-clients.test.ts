import { expect } from 'chai';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { DEFAULT_ROUTES_FILE, readRoutesFile, type TableSpec } from '../routing/table/index.js';
import { startBackends, type Backends } from '../stack/local-stack.js';
import { ARTIFACTS } from './support/artifacts.js';
import { buildDists, newUploader, run } from './support/packages.js';
import { setRoutes, TEST_SECRET } from './support/proxy.js';
import { services, tempDir, waitForReplay, withClient } from './support/services.js';

const TWINE = process.env['BANYAN_TWINE'] ?? '/usr/bin/twine';
const FLIT = process.env['BANYAN_FLIT'] ?? '/usr/bin/flit';
const POETRY = process.env['BANYAN_POETRY'] ?? '/usr/bin/poetry';
const CHROMIUM = process.env['BANYAN_CHROMIUM'] ?? '/usr/bin/chromium';

const QUIET_PIP = { PIP_DISABLE_PIP_VERSION_CHECK: '1', PIP_NO_INPUT: '1', PIP_CONFIG_FILE: '/dev/null', PIP_NO_CACHE_DIR: '1' };

describe('real clients through the proxy: twine, flit, poetry, pip, xmlrpc.client and Chromium', () => {
  let backends: Backends;
  let proxy: string;
  let work: string;
  let uploader: Awaited<ReturnType<typeof newUploader>>;

  before(async function () {
    this.timeout(120_000);
    for (const [what, path] of [
      ['twine (Debian package twine)', TWINE],
      ['flit (Debian package flit)', FLIT],
      ['poetry (Debian package python3-poetry)', POETRY],
      ['chromium (Debian package chromium)', CHROMIUM],
    ]) {
      if (!existsSync(path!))
        throw new Error(`${what} is not installed at ${path}; .ci/run installs it (apt-get install twine flit python3-poetry chromium)`);
    }
    const s = await services();
    // The shipped table with the download pages cut over too: Chromium sees the new app's page.
    const shipped = readRoutesFile(DEFAULT_ROUTES_FILE) as TableSpec;
    await setRoutes(
      s,
      { ...shipped, routes: shipped.routes.map((r) => (r.name.startsWith('project.') ? { ...r, mode: 'new' as const } : r)) },
      'real clients: shipped routes, pages on new',
    );
    work = tempDir('banyan-clients-');
    backends = await startBackends(s, { adminToken: 't', secret: TEST_SECRET, redisUrl: s.redisUrl, storageDir: join(work, 'files') });
    proxy = backends.urls.proxy;
    uploader = await newUploader(s.primaryUrl);
  });

  after(async () => {
    const s = await services();
    await s.cluster.setReplicaDelay(0);
    await waitForReplay(s, 10_000);
    await backends?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  function twine(files: string[], extra: string[] = []) {
    return run(
      TWINE,
      [
        'upload',
        '--non-interactive',
        '--disable-progress-bar',
        '--repository-url',
        `${proxy}/legacy/`,
        '-u',
        '__token__',
        '-p',
        uploader.token,
        ...extra,
        ...files,
      ],
      { allowFailure: true, env: { HOME: work } },
    );
  }

  function pipDownload(spec: string, dest: string) {
    return run('python3', ['-m', 'pip', 'download', '--no-deps', '--index-url', `${proxy}/simple/`, '-d', dest, spec], {
      allowFailure: true,
      env: { ...QUIET_PIP, HOME: work },
    });
  }

  it('twine uploads, then pip downloads at once, every time, with the replica 2 s behind', async function () {
    this.timeout(240_000);
    const s = await services();
    await s.cluster.setReplicaDelay(2_000);
    const name = `ClientPkg-${process.pid}`;
    const rounds = 4;
    for (let i = 1; i <= rounds; i++) {
      const version = `1.${i}`;
      const dir = join(work, `dist-${i}`);
      mkdirSync(dir);
      const files = await buildDists(dir, name, version, ['py3-none-any', 'sdist']);
      const up = await twine(files);
      expect(up.code, `twine upload ${version}:\n${up.stdout}\n${up.stderr}`).to.equal(0);
      // The replica really is behind when pip asks: it has not replayed this release yet.
      const onReplica = await withClient(
        s.replicaUrls[0]!,
        async (c) =>
          (
            await c.query(
              'SELECT 1 FROM releases JOIN projects ON projects.id = releases.project_id WHERE projects.normalized_name = $1 AND releases.version = $2',
              [name.toLowerCase(), version],
            )
          ).rowCount,
      );
      expect(onReplica, `the replica already had ${version}: this round proves nothing`).to.equal(0);
      const dest = join(work, `got-${i}`);
      const down = await pipDownload(`${name}==${version}`, dest);
      expect(down.code, `pip download ${version} right after the upload:\n${down.stdout}\n${down.stderr}`).to.equal(0);
      expect(readdirSync(dest)).to.deep.equal([`${name.replace(/-/g, '_')}-${version}-py3-none-any.whl`]);
    }
  });

  it("twine shows the app's own refusal through the proxy: the reason phrase is passed on", async function () {
    this.timeout(60_000);
    const name = `ReasonPkg-${process.pid}`;
    const first = join(work, 'reason-1');
    const second = join(work, 'reason-2');
    mkdirSync(first);
    mkdirSync(second);
    const [original] = await buildDists(first, name, '1.0', ['sdist']);
    expect((await twine([original!])).code).to.equal(0);
    // The same file name with other contents: Warehouse's "File already exists" refusal.
    const [other] = await buildDists(second, `${name}`, '1.0', ['sdist']);
    await run('python3', [
      '-c',
      [
        'import io, sys, tarfile',
        'src = tarfile.open(sys.argv[1]); members = [(m, src.extractfile(m).read()) for m in src.getmembers()]; src.close()',
        'with tarfile.open(sys.argv[1], "w:gz") as t:',
        '    for m, data in members + [(tarfile.TarInfo(members[0][0].name.split("/")[0] + "/EXTRA.txt"), b"other contents")]:',
        '        m.size = len(data); t.addfile(m, io.BytesIO(data))',
      ].join('\n'),
      other!,
    ]);
    const refused = await twine([other!]);
    expect(refused.code).to.not.equal(0);
    expect(`${refused.stdout}\n${refused.stderr}`).to.contain('File already exists');
  });

  it("flit publishes through the proxy, and shows the app's own refusal when the file exists with other contents", async function () {
    this.timeout(120_000);
    const module = `flit_pkg_${process.pid}`;
    const dir = join(work, 'flit');
    mkdirSync(dir);
    writeFileSync(
      join(dir, 'pyproject.toml'),
      [
        '[build-system]',
        'requires = ["flit_core >=3.2,<4"]',
        'build-backend = "flit_core.buildapi"',
        '',
        '[project]',
        `name = "${module.replace(/_/g, '-')}"`,
        'authors = [{name = "Banyan tests"}]',
        'dynamic = ["version", "description"]',
        '',
      ].join('\n'),
    );
    const source = join(dir, `${module}.py`);
    const docstring = '"""A package published with flit."""\n__version__ = "1.0"\n';
    writeFileSync(source, docstring);
    const publish = () =>
      run(FLIT, ['publish', '--format', 'sdist'], {
        allowFailure: true,
        cwd: dir,
        env: { HOME: work, FLIT_INDEX_URL: `${proxy}/legacy/`, FLIT_USERNAME: '__token__', FLIT_PASSWORD: uploader.token },
      });
    const first = await publish();
    expect(first.code, `flit publish:\n${first.stdout}\n${first.stderr}`).to.equal(0);
    // Same version, other contents: Warehouse's refusal, in the reason phrase flit prints.
    writeFileSync(source, `${docstring}# changed\n`);
    const again = await publish();
    expect(again.code).to.not.equal(0);
    expect(`${again.stdout}\n${again.stderr}`).to.match(/400 Client Error: File already exists/);
  });

  it("poetry publishes through the proxy, shows the app's refusal, and installs from this index", async function () {
    this.timeout(240_000);
    const name = `poetry-pkg-${process.pid}`;
    const module = name.replace(/-/g, '_');
    const dir = join(work, 'poetry');
    mkdirSync(join(dir, module), { recursive: true });
    const pyproject = (version: string) =>
      [
        '[tool.poetry]',
        `name = "${name}"`,
        `version = "${version}"`,
        'description = "Published with poetry"',
        'authors = ["Banyan tests <tests@example.org>"]',
        '',
        '[tool.poetry.dependencies]',
        'python = ">=3.7"',
        '',
        '[build-system]',
        'requires = ["poetry-core"]',
        'build-backend = "poetry.core.masonry.api"',
        '',
      ].join('\n');
    writeFileSync(join(dir, 'pyproject.toml'), pyproject('1.0'));
    writeFileSync(join(dir, module, '__init__.py'), '__version__ = "1.0"\n');
    const env = {
      HOME: work,
      POETRY_REPOSITORIES_BANYAN_URL: `${proxy}/legacy/`,
      POETRY_HTTP_BASIC_BANYAN_USERNAME: '__token__',
      POETRY_HTTP_BASIC_BANYAN_PASSWORD: uploader.token,
      POETRY_VIRTUALENVS_IN_PROJECT: 'true',
      POETRY_NO_INTERACTION: '1',
    };
    const publish = () => run(POETRY, ['publish', '--build', '-r', 'banyan', '--no-interaction'], { allowFailure: true, cwd: dir, env });
    const first = await publish();
    expect(first.code, `poetry publish:\n${first.stdout}\n${first.stderr}`).to.equal(0);
    // Same version, other contents: poetry prints the app's reason.
    writeFileSync(join(dir, module, '__init__.py'), '__version__ = "1.0"\n# changed\n');
    rmSync(join(dir, 'dist'), { recursive: true, force: true });
    const again = await publish();
    expect(again.code).to.not.equal(0);
    expect(`${again.stdout}\n${again.stderr}`).to.contain('File already exists');

    // A consumer whose only source is this index: poetry locks and installs the package from it.
    const consumer = join(work, 'poetry-consumer');
    mkdirSync(consumer);
    writeFileSync(
      join(consumer, 'pyproject.toml'),
      [
        '[tool.poetry]',
        'name = "consumer"',
        'version = "0.1.0"',
        'description = ""',
        'authors = ["Banyan tests <tests@example.org>"]',
        '',
        '[tool.poetry.dependencies]',
        'python = ">=3.7"',
        `${name} = "1.0"`,
        '',
        '[[tool.poetry.source]]',
        'name = "banyan"',
        `url = "${proxy}/simple/"`,
        'default = true',
        '',
      ].join('\n'),
    );
    const install = await run(POETRY, ['install', '--no-root', '--no-interaction'], { allowFailure: true, cwd: consumer, env });
    expect(install.code, `poetry install:\n${install.stdout}\n${install.stderr}`).to.equal(0);
    expect(install.stdout).to.match(new RegExp(`Installing ${name} \\(1\\.0\\)`));
    expect(
      readdirSync(join(consumer, '.venv', 'lib'), { recursive: true }).some((p) => String(p).endsWith(`${module}/__init__.py`)),
    ).to.equal(true);
  });

  it('twine upload --skip-existing of the same files succeeds without storing anything again', async function () {
    this.timeout(60_000);
    const name = `SkipPkg-${process.pid}`;
    const dir = join(work, 'skip');
    mkdirSync(dir);
    const files = await buildDists(dir, name, '0.1', ['py3-none-any', 'sdist']);
    expect((await twine(files)).code).to.equal(0);
    const before = readdirSync(join(work, 'files'), { recursive: true }).length;
    const again = await twine(files, ['--skip-existing']);
    expect(again.code, `${again.stdout}\n${again.stderr}`).to.equal(0);
    expect(readdirSync(join(work, 'files'), { recursive: true }).length).to.equal(before);
  });

  it("an XML-RPC call from Python's xmlrpc.client through the proxy gets legacy's answer", async function () {
    this.timeout(60_000);
    const name = `ClientPkg-${process.pid}`;
    const script = [
      'import sys, xmlrpc.client',
      `p = xmlrpc.client.ServerProxy("${proxy}/pypi")`,
      `print(p.package_releases("${name}", True))`,
      'try:',
      '    p.no_such_method()',
      'except xmlrpc.client.Fault as f:',
      '    print("fault", f.faultCode)',
    ].join('\n');
    const out = await run('python3', ['-c', script]);
    expect(out.stdout.trim().split('\n')).to.deep.equal([`['1.4', '1.3', '1.2', '1.1']`, 'fault -32601']);
  });

  describe('the download page in headless Chromium', () => {
    let browser: Browser;
    let name: string;
    before(async function () {
      this.timeout(120_000);
      name = `PlatformPkg-${process.pid}`;
      const dir = join(work, 'platform');
      mkdirSync(dir);
      const files = await buildDists(dir, name, '2.0', ['cp311-cp311-win_amd64', 'cp311-cp311-macosx_10_9_x86_64', 'sdist']);
      const up = await twine(files);
      expect(up.code, `${up.stdout}\n${up.stderr}`).to.equal(0);
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
      });
    });
    after(async () => {
      await browser?.close();
    });

    const cases: [string, string, string][] = [
      [
        'Windows',
        'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
        '-2.0-cp311-cp311-win_amd64.whl',
      ],
      [
        'macOS',
        'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
        '-2.0-cp311-cp311-macosx_10_9_x86_64.whl',
      ],
      [
        'Linux (no wheel fits)',
        'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
        '-2.0.tar.gz',
      ],
    ];
    for (const [platform, userAgent, suffix] of cases) {
      it(`offers ${platform} visitors the ${suffix} file`, async function () {
        this.timeout(60_000);
        const context = await browser.newContext({ userAgent });
        try {
          const page = await context.newPage();
          const res = await page.goto(`${proxy}/project/${name}/`);
          expect(res?.status()).to.equal(200);
          const button = page.locator('#download');
          expect(await button.textContent()).to.equal(`Download ${name.replace(/-/g, '_')}${suffix}`);
          const href = await button.getAttribute('href');
          const download = await fetch(`${proxy}${href}`);
          expect(download.status).to.equal(200);
          mkdirSync(ARTIFACTS, { recursive: true });
          await page.screenshot({ path: join(ARTIFACTS, `download-page-${platform.split(' ')[0]!.toLowerCase()}.png`), fullPage: true });
        } finally {
          await context.close();
        }
      });
    }
  });
});
