import { expect } from 'chai';
import { signPreview } from '../proxy/preview.js';
import type { ProxyRuntime } from '../proxy/runtime.js';
import { runBanyanAsync } from './support/cli.js';
import { setRoutes, startTestProxy, TEST_SECRET } from './support/proxy.js';
import { services } from './support/services.js';
import { fakeBackend, type FakeBackend } from './support/upstreams.js';

/**
 * Tester targeting: `banyan routes preview NAME` prints a link; the browser
 * that opens it goes to the new app on that route only, until it expires.
 */
describe('banyan routes preview: one browser tries one route on the new app before anyone else', function () {
  this.timeout(60_000);
  let legacy: FakeBackend;
  let app: FakeBackend;
  let proxy: ProxyRuntime;

  before(async () => {
    const s = await services();
    legacy = await fakeBackend('legacy');
    app = await fakeBackend('new');
    await setRoutes(
      s,
      [
        { name: 'shop.page', match: { path: '/shop/:item' }, mode: 'legacy' },
        { name: 'cart', match: { path: '/cart' }, mode: 'legacy' },
      ],
      'preview',
    );
    proxy = await startTestProxy(s, legacy.url, app.url);
  });

  after(async () => {
    await proxy.stop();
    await legacy.close();
    await app.close();
  });

  const who = async (path: string, cookie?: string) => {
    await fetch(`${proxy.url}${path}`, { headers: cookie ? { cookie } : {} }).then((r) => r.text());
  };
  /** How many requests for `path` each backend has seen. */
  const whoAnswered = (path: string) => {
    const l = legacy.seen.filter((r) => r.path === path).length;
    const a = app.seen.filter((r) => r.path === path).length;
    return { legacy: l, new: a };
  };

  it('prints a link that gives its browser a cookie sending it to the new app on that route only', async () => {
    const s = await services();
    const r = await runBanyanAsync(
      ['routes', 'preview', 'shop.page', '--for', '10m', '--path', '/shop/lamp', '--base', proxy.url, '--json'],
      { env: { DATABASE_URL: s.primaryUrl, BANYAN_SECRET: TEST_SECRET } },
    );
    expect(r.status, r.stderr).to.equal(0);
    const { link, route, expires } = JSON.parse(r.stdout) as { link: string; route: string; expires: string };
    expect(route).to.equal('shop.page');
    expect(Date.parse(expires) - Date.now()).to.be.within(9 * 60_000, 10 * 60_000);
    expect(link).to.match(new RegExp(`^${proxy.url}/_banyan/preview\\?token=p1\\.[^&]+&next=%2Fshop%2Flamp$`));

    const opened = await fetch(link, { redirect: 'manual' });
    expect([opened.status, opened.headers.get('location')]).to.deep.equal([303, '/shop/lamp']);
    const cookie = opened.headers.get('set-cookie')!.split(';')[0]!;
    expect(opened.headers.get('set-cookie')).to.match(/^banyan_preview=p1\.[^;]+; Path=\/; Max-Age=\d+; HttpOnly; SameSite=Lax$/);

    await who('/shop/lamp');
    expect(whoAnswered('/shop/lamp'), 'everyone else: legacy').to.deep.equal({ legacy: 1, new: 0 });
    await who('/shop/lamp', cookie);
    expect(whoAnswered('/shop/lamp'), 'the previewing browser: the new app').to.deep.equal({ legacy: 1, new: 1 });
    await who('/cart', cookie);
    expect(whoAnswered('/cart'), 'only on the previewed route').to.deep.equal({ legacy: 1, new: 0 });
  });

  it('refuses a tampered or expired link, ignores such a cookie, and never redirects off the site', async () => {
    const expired = signPreview('shop.page', Date.now() - 1_000, TEST_SECRET);
    const tampered = signPreview('shop.page', Date.now() + 60_000, 'another-secret-0123456789');
    for (const token of [expired, tampered, 'nonsense']) {
      const res = await fetch(`${proxy.url}/_banyan/preview?token=${encodeURIComponent(token)}&next=/shop/x`, { redirect: 'manual' });
      expect(res.status).to.equal(400);
      expect(await res.text()).to.match(
        /^400 This preview link is not valid or has expired\. Ask for a new one: banyan routes preview ROUTE\./,
      );
    }
    await who('/shop/old', `banyan_preview=${expired}`);
    expect(whoAnswered('/shop/old'), 'an expired cookie is ignored').to.deep.equal({ legacy: 1, new: 0 });
    const valid = signPreview('shop.page', Date.now() + 60_000, TEST_SECRET);
    const off = await fetch(
      `${proxy.url}/_banyan/preview?token=${encodeURIComponent(valid)}&next=${encodeURIComponent('//evil.example/x')}`,
      { redirect: 'manual' },
    );
    expect([off.status, off.headers.get('location')]).to.deep.equal([303, '/']);
    for (const next of ['/%09/evil.example', '/%0a/evil.example', '/\\evil.example', '/%5Cevil.example', '/ /evil.example']) {
      const res = await fetch(`${proxy.url}/_banyan/preview?token=${encodeURIComponent(valid)}&next=${next}`, { redirect: 'manual' });
      expect([res.status, res.headers.get('location')], next).to.deep.equal([303, '/']);
    }
  });

  it('sets only the token it verified, exactly: anything after it is refused, never added to the cookie', async () => {
    const valid = signPreview('shop.page', Date.now() + 60_000, TEST_SECRET);
    for (const token of [`${valid}; Domain=evil.example`, `${valid};Max-Age=99999999`, `${valid}=`]) {
      const res = await fetch(`${proxy.url}/_banyan/preview?token=${encodeURIComponent(token)}&next=/shop/x`, { redirect: 'manual' });
      expect(res.status, token).to.equal(400);
      expect(res.headers.get('set-cookie')).to.equal(null);
    }
  });

  it('makes the preview cookie Secure when the client came over TLS (X-Forwarded-Proto from a trusted balancer)', async () => {
    const s = await services();
    const behindTls = await startTestProxy(s, legacy.url, app.url, { trustedProxies: '127.0.0.1' });
    try {
      const valid = signPreview('shop.page', Date.now() + 60_000, TEST_SECRET);
      const res = await fetch(`${behindTls.url}/_banyan/preview?token=${encodeURIComponent(valid)}&next=/shop/x`, {
        redirect: 'manual',
        headers: { 'x-forwarded-proto': 'https' },
      });
      expect(res.headers.get('set-cookie')).to.match(/; HttpOnly; SameSite=Lax; Secure$/);
    } finally {
      await behindTls.stop();
    }
  });

  it('needs the secret to sign, and an existing route', async () => {
    const s = await services();
    const noSecret = await runBanyanAsync(['routes', 'preview', 'shop.page'], {
      env: { DATABASE_URL: s.primaryUrl, BANYAN_SECRET: '' },
      cwd: '/tmp',
    });
    expect([noSecret.status, noSecret.stderr.split(' (')[0]]).to.deep.equal([
      1,
      'banyan: BANYAN_SECRET is not set; preview links are signed with it',
    ]);
    const unknown = await runBanyanAsync(['routes', 'preview', 'no.such'], {
      env: { DATABASE_URL: s.primaryUrl, BANYAN_SECRET: TEST_SECRET },
    });
    expect(unknown.status).to.equal(1);
  });
});
