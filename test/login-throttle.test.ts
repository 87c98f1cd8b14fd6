import { expect } from 'chai';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { startAppRuntime, type AppRuntime } from '../app/runtime.js';
import { startLegacyRuntime, type LegacyRuntime } from '../legacy/runtime.js';
import { DEFAULT_LOGIN_LIMITS } from '../lib/login-throttle.js';
import { findRedisServer, startRedis, type RedisServer } from '../stack/redis-server.js';
import { basicAuth, newUploader } from './support/packages.js';
import { services, tempDir } from './support/services.js';

/**
 * Password logins are throttled per account and per address, in Redis (so
 * the app and legacy count together), or in memory while Redis is dead. A
 * caller without the right password learns nothing: every wrong login is one
 * answer whatever the form, and a throttled one is 429 even with the right password.
 */
describe('login throttling: per account and per address, over Redis or in memory', function () {
  this.timeout(120_000);
  let dir: string;
  let redis: RedisServer;
  let app: AppRuntime;
  let legacy: LegacyRuntime;
  let address = 0;
  /** A client address of its own, as the proxy names it to the backends. */
  const newAddress = () => `198.51.100.${++address}`;

  before(async () => {
    const s = await services();
    dir = tempDir('banyan-logins-');
    redis = await startRedis(findRedisServer()!, join(dir, 'redis'));
    const common = {
      primaryUrl: s.primaryUrl,
      replicaUrls: s.replicaUrls,
      redisUrl: redis.url,
      storageDir: join(dir, 'files'),
      host: '127.0.0.1',
      port: 0,
    };
    app = await startAppRuntime(common);
    legacy = await startLegacyRuntime(common);
  });

  after(async () => {
    await app?.close();
    await legacy?.close();
    await redis?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** `POST /manage/projects` on the app, as `user` with `password`, from `from`. */
  async function register(user: string, password: string, from: string, name = `throttled-${process.pid}-${Date.now()}`) {
    const res = await fetch(`${app.url}/manage/projects`, {
      method: 'POST',
      body: new URLSearchParams({ name }),
      headers: { authorization: basicAuth(user, password), 'x-banyan-client': from },
    });
    return { status: res.status, retryAfter: res.headers.get('retry-after'), text: await res.text() };
  }

  /** The old `:action=submit` on legacy. */
  async function legacySubmit(user: string, password: string, from: string) {
    const res = await fetch(`${legacy.url}/pypi`, {
      method: 'POST',
      body: new URLSearchParams({ ':action': 'submit', name: `old-throttled-${process.pid}-${Date.now()}` }),
      headers: { authorization: basicAuth(user, password), 'x-banyan-client': from },
    });
    return { status: res.status, retryAfter: res.headers.get('retry-after'), text: await res.text() };
  }

  /** A twine-style upload form to the app's `/legacy/`, with `fields` (no file unless given). */
  async function upload(user: string, password: string, from: string, fields: Record<string, string>) {
    const form = new FormData();
    for (const [k, v] of Object.entries(fields)) form.append(k, v);
    const res = await fetch(`${app.url}/legacy/`, {
      method: 'POST',
      body: form,
      headers: { authorization: basicAuth(user, password), 'x-banyan-client': from },
    });
    return { status: res.status, statusText: res.statusText, text: await res.text() };
  }

  it('answers a wrong password the same whatever the form, and judges the form only for the right one', async () => {
    const s = await services();
    const user = await newUploader(s.primaryUrl);
    const from = newAddress();
    const bad = await upload(user.username, 'wrong password', from, { ':action': 'nonsense' });
    const good = await upload(user.username, 'wrong password', from, {
      ':action': 'file_upload',
      protocol_version: '1',
      name: 'pkg',
      version: '1.0',
    });
    const unknown = await upload(`nobody-${process.pid}`, 'wrong password', from, { ':action': 'nonsense' });
    expect(bad.status).to.equal(403);
    expect(good, 'a good form with a wrong password').to.deep.equal(bad);
    expect(unknown, 'an unknown user').to.deep.equal(bad);
    const right = await upload(user.username, user.password, from, { ':action': 'nonsense' });
    expect(right.status, right.text).to.equal(400);

    const badName = await register(user.username, 'wrong password', from, 'not a name!');
    const goodName = await register(user.username, 'wrong password', from);
    expect(badName.status).to.equal(403);
    expect(goodName.text).to.equal(badName.text);
  });

  it('throttles an account after its failures, from any address and on either backend, the right password too', async () => {
    const s = await services();
    const user = await newUploader(s.primaryUrl);
    for (let i = 0; i < DEFAULT_LOGIN_LIMITS.perAccount; i++) {
      // Half on the app and half on legacy, each from a new address: Redis counts them together, per account.
      const r =
        i % 2 === 0
          ? await register(user.username, `guess ${i}`, newAddress())
          : await legacySubmit(user.username, `guess ${i}`, newAddress());
      expect(r.status, r.text).to.be.oneOf([401, 403]);
    }
    for (const attempt of [
      () => register(user.username, user.password, newAddress()),
      () => legacySubmit(user.username, user.password, newAddress()),
      () => register(user.username, 'another guess', newAddress()),
    ]) {
      const r = await attempt();
      expect(r.status, r.text).to.equal(429);
      expect(r.text).to.match(/Too many failed logins/);
      expect(Number(r.retryAfter)).to.be.within(1, DEFAULT_LOGIN_LIMITS.windowSeconds);
    }
    const twine = await upload(user.username, user.password, newAddress(), { ':action': 'file_upload' });
    expect(twine.status, 'an upload (twine) is throttled too').to.equal(429);
    expect(twine.statusText, 'twine shows the status line').to.match(/Too many failed logins/);
    const other = await newUploader(s.primaryUrl);
    const fine = await register(other.username, other.password, newAddress());
    expect(fine.status, 'another account is not affected').to.equal(201);
  });

  it('throttles an address after its failures across accounts, and no other address', async () => {
    const s = await services();
    const attacker = newAddress();
    for (let i = 0; i < DEFAULT_LOGIN_LIMITS.perAddress; i++) {
      const r = await register(`sprayed-${process.pid}-${i}`, 'Summer2026!', attacker);
      expect(r.status).to.equal(403);
    }
    const user = await newUploader(s.primaryUrl);
    const blocked = await register(user.username, user.password, attacker);
    expect(blocked.status, 'the right password, from the address that sprayed').to.equal(429);
    const elsewhere = await register(user.username, user.password, newAddress());
    expect(elsewhere.status, elsewhere.text).to.equal(201);
  });

  it("a login that succeeds clears its account's failures", async () => {
    const s = await services();
    const user = await newUploader(s.primaryUrl);
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < DEFAULT_LOGIN_LIMITS.perAccount - 1; i++)
        expect((await register(user.username, 'typo', newAddress())).status).to.equal(403);
      expect((await register(user.username, user.password, newAddress())).status, `round ${round}`).to.equal(201);
    }
  });

  it("with Redis dead, still throttles, in each process's memory", async () => {
    const s = await services();
    const user = await newUploader(s.primaryUrl);
    await redis.stop();
    try {
      expect((await register(user.username, user.password, newAddress())).status, 'a login works without Redis').to.equal(201);
      for (let i = 0; i < DEFAULT_LOGIN_LIMITS.perAccount; i++)
        expect((await register(user.username, `guess ${i}`, newAddress())).status).to.equal(403);
      const r = await register(user.username, user.password, newAddress());
      expect(r.status, r.text).to.equal(429);
      expect(r.retryAfter).to.match(/^\d+$/);
    } finally {
      await redis.restart();
    }
  });
});
