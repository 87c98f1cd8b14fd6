import { expect } from 'chai';
import { rmSync } from 'node:fs';
import { startAppRuntime, type AppRuntime } from '../app/runtime.js';
import { startLegacyRuntime, type LegacyRuntime } from '../legacy/runtime.js';
import { basicAuth, buildDists, newUploader, uploadForm } from './support/packages.js';
import { services, tempDir } from './support/services.js';

/** GET with a Host (and other headers) of the client's choosing: undici's fetch will not send a Host of its own choosing. */
async function getAs(
  url: string,
  headers: Record<string, string>,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }> {
  const { request } = await import('node:http');
  return new Promise((resolve, reject) => {
    const req = request(url, { headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => {
        text += d;
      });
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('no client-chosen absolute URLs: the Host header never lands in a cacheable answer', function () {
  this.timeout(60_000);
  let storage: string;
  let dists: string;
  let plain: AppRuntime;
  let pinned: AppRuntime;
  let trusting: AppRuntime;
  let legacy: LegacyRuntime;
  const name = `origin-${process.pid}`;

  before(async () => {
    const s = await services();
    storage = tempDir('banyan-origin-store-');
    dists = tempDir('banyan-origin-dists-');
    const data = { primaryUrl: s.primaryUrl, replicaUrls: [], storageDir: storage, host: '127.0.0.1', port: 0 };
    plain = await startAppRuntime(data);
    pinned = await startAppRuntime({ ...data, publicUrl: 'https://pypi.example.org' });
    trusting = await startAppRuntime({ ...data, trustForwardedHost: true });
    legacy = await startLegacyRuntime(data);
    const owner = await newUploader(s.primaryUrl);
    const [wheel] = await buildDists(dists, name, '1.0', ['py3-none-any']);
    const res = await fetch(`${plain.url}/legacy/`, {
      method: 'POST',
      body: uploadForm(wheel!, { name, version: '1.0' }),
      headers: { authorization: basicAuth('__token__', owner.token) },
    });
    expect(res.status, await res.text()).to.equal(200);
  });

  after(async () => {
    for (const runtime of [plain, pinned, trusting, legacy]) await runtime?.close();
    rmSync(storage, { recursive: true, force: true });
    rmSync(dists, { recursive: true, force: true });
  });

  const evil = { host: 'evil.example', 'x-forwarded-host': 'evil2.example' };

  it('writes BANYAN_PUBLIC_URL into file URLs and the install line, whatever Host says', async () => {
    const json = await getAs(`${pinned.url}/pypi/${name}/json`, evil);
    expect(json.status).to.equal(200);
    expect(json.text).to.not.match(/evil/);
    expect((JSON.parse(json.text) as { urls: { url: string }[] }).urls[0]!.url).to.match(/^https:\/\/pypi\.example\.org\/packages\//);
    const page = await getAs(`${pinned.url}/project/${name}/`, evil);
    expect(page.text).to.contain('--index-url https://pypi.example.org/simple/');
    expect(page.text).to.not.match(/evil/);
  });

  it('without it, follows Host and varies on it, and believes X-Forwarded-Host only when told to', async () => {
    const json = await getAs(`${plain.url}/pypi/${name}/json`, evil);
    expect(json.text, 'X-Forwarded-Host is not believed').to.not.contain('evil2.example');
    expect(json.headers['vary'], 'a cache keeps one copy per Host').to.match(/\bHost\b/);
    expect(json.headers['cache-control']).to.contain('public');
    const release = await getAs(`${plain.url}/pypi/${name}/1.0/json`, evil);
    expect(release.headers['vary']).to.match(/\bHost\b/);
    const page = await getAs(`${plain.url}/project/${name}/`, evil);
    expect(page.headers['vary']).to.match(/\bHost\b/);
    const trusted = await getAs(`${trusting.url}/pypi/${name}/json`, evil);
    expect(trusted.text).to.contain('http://evil2.example/packages/');
    expect(trusted.headers['vary']).to.match(/X-Forwarded-Host/);
  });

  it('legacy writes relative URLs only', async () => {
    for (const path of [`/pypi/${name}/json`, `/pypi/${name}`, `/project/${name}/`, `/simple/${name}/`]) {
      const answer = await getAs(`${legacy.url}${path}`, evil);
      expect(answer.text, path).to.not.match(/evil/);
    }
  });
});
