import { expect } from 'chai';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { startAppRuntime, type AppRuntime } from '../app/runtime.js';
import { formBombs } from '../chaos/attacks.js';
import type { ProxyRuntime } from '../proxy/runtime.js';
import { basicAuth, newUploader } from './support/packages.js';
import { ADMIN_TOKEN, setRoutes, startTestProxy } from './support/proxy.js';
import { services, tempDir } from './support/services.js';
import { fakeBackend, type FakeBackend } from './support/upstreams.js';

/**
 * A form bomb through the proxy: the app refuses it with 413 while the proxy
 * is still forwarding the body. The app's answer ends with a FIN, not a
 * reset, so the proxy reads it and passes it on: the attacker gets 413 every
 * time, and the app is not counted as failing (which opened its breaker and
 * turned later answers, anyone's, into 503).
 */
describe('a form bomb through the proxy is answered 413, every time', function () {
  this.timeout(180_000);
  let dir: string;
  let app: AppRuntime;
  let legacy: FakeBackend;
  let proxy: ProxyRuntime;

  before(async () => {
    const s = await services();
    dir = tempDir('banyan-bomb-');
    app = await startAppRuntime({
      primaryUrl: s.primaryUrl,
      replicaUrls: s.replicaUrls,
      redisUrl: s.redisUrl!,
      storageDir: join(dir, 'files'),
      host: '127.0.0.1',
      port: 0,
    });
    legacy = await fakeBackend('legacy');
    await setRoutes(s, [{ name: 'upload', match: { path: '/legacy/', methods: ['POST'] }, mode: 'new' }], 'form bombs');
    proxy = await startTestProxy(s, legacy.url, app.url);
  });

  after(async () => {
    await proxy?.stop();
    await app?.close();
    await legacy?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('answers three rounds of four concurrent bombs 413, and the app endpoint records no failure', async () => {
    const s = await services();
    const auth = basicAuth('__token__', (await newUploader(s.primaryUrl)).token);
    const answers: string[] = [];
    for (let round = 0; round < 3; round++) {
      const result = await formBombs(proxy.url, auth, 4, []);
      answers.push(...result.answers.map((a) => `${a.status} ${a.message.slice(0, 46)}`));
    }
    expect(answers).to.deep.equal(Array(12).fill('413 Invalid upload form: its fields are over 8 MiB'));
    const { upstreams } = (await (
      await fetch(`${proxy.adminUrl}/api/upstreams`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
    ).json()) as { upstreams: { name: string; endpoints: { failures: number; breaker: string }[] }[] };
    expect(upstreams.find((u) => u.name === 'app')!.endpoints.map((e) => [e.failures, e.breaker])).to.deep.equal([[0, 'closed']]);
  });
});
