import { expect } from 'chai';
import { Agent, request } from 'undici';
import { signPin } from '../proxy/pin.js';
import type { ProxyRuntime } from '../proxy/runtime.js';
import { setRoutes, startTestProxy, TEST_SECRET } from './support/proxy.js';
import { services } from './support/services.js';
import { fakeBackend, type FakeBackend } from './support/upstreams.js';

/** A canary keeps each session on one side for the session's life: through writes, and after its pin expires. */
describe("canary: a side per session, for the session's life", () => {
  let legacy: FakeBackend;
  let app: FakeBackend;
  let proxy: ProxyRuntime;
  const agent = new Agent({ connections: 64 });

  before(async () => {
    const s = await services();
    legacy = await fakeBackend('legacy');
    app = await fakeBackend('new');
    await setRoutes(s, [{ name: 'canary.page', match: { path: '/page/*' }, mode: 'canary', percent: 10 }], 'canary sessions');
    // Sessions come from many addresses, told by a trusted front proxy.
    proxy = await startTestProxy(s, legacy.url, app.url, { trustedProxies: '127.0.0.1' });
  });

  after(async () => {
    await proxy.stop();
    await legacy.close();
    await app.close();
    await agent.close();
  });

  async function side(address: string, cookie?: string): Promise<{ side: string; setCookie: string | null }> {
    const res = await request(`${proxy.url}/page/x`, {
      headers: { 'x-forwarded-for': address, ...(cookie ? { cookie } : {}) },
      dispatcher: agent,
    });
    await res.body.dump();
    const set = res.headers['set-cookie'];
    return { side: String(res.headers['x-backend']), setCookie: set === undefined ? null : [set].flat().join(', ') };
  }

  it('10,000 sessions that write and outlive their pin keep their side, and 10 ± 1 % of them are on the new app', async function () {
    this.timeout(120_000);
    const sessions = 10_000;
    let onNew = 0;
    const moved: string[] = [];
    let next = 0;
    const worker = async () => {
      while (next < sessions) {
        const i = next++;
        const address = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
        const first = await side(address);
        const sid = /banyan_sid=([^;]+)/.exec(first.setCookie ?? '')?.[1];
        if (!sid) throw new Error(`session ${i} got no banyan_sid cookie (set-cookie: ${first.setCookie})`);
        // After a write the session carries a pin with an id of its own; later the pin expires.
        const pinned = signPin({ id: `pin${i}xxxxxxxxxxxxx`, lsn: 1n, expires: Date.now() + 30_000 }, TEST_SECRET);
        const expired = signPin({ id: `pin${i}xxxxxxxxxxxxx`, lsn: 1n, expires: Date.now() - 1 }, TEST_SECRET);
        const afterWrite = await side(`192.0.2.${i & 255}`, `banyan_sid=${sid}; banyan_pin=${pinned}`);
        const afterExpiry = await side(address, `banyan_pin=${expired}; banyan_sid=${sid}`);
        if (afterWrite.side !== first.side || afterExpiry.side !== first.side)
          moved.push(`${i}: ${first.side} → ${afterWrite.side} → ${afterExpiry.side}`);
        if (afterWrite.setCookie?.includes('banyan_sid')) throw new Error('a session that has its cookie got another');
        if (first.side === 'new') onNew++;
      }
    };
    await Promise.all(Array.from({ length: 32 }, worker));
    expect(moved.slice(0, 5), `${moved.length} sessions changed side`).to.deep.equal([]);
    expect(onNew / sessions).to.be.within(0.09, 0.11);
  });

  it('a hand-made banyan_sid picks no side: it is ignored and a signed one minted', async () => {
    let onNew = 0;
    for (let i = 0; i < 40; i++) {
      // Bucket 0 is inside any canary; the id is well formed, the signature made up.
      const forged = await side(`198.51.100.${i}`, `banyan_sid=0.${'A'.repeat(16)}.${'B'.repeat(22)}`);
      const unsigned = await side(`198.51.100.${i}`, `banyan_sid=0.${'A'.repeat(16)}`);
      expect(forged.setCookie, 'a real session is minted').to.match(/^banyan_sid=\d{1,4}\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{22};/);
      expect(unsigned.side, 'the address decides, not the cookie').to.equal(forged.side);
      if (forged.side === 'new') onNew++;
    }
    expect(onNew, 'about 10 % of addresses, not all 40').to.be.below(15);
    const genuine = /^banyan_sid=([^;]+)/.exec((await side('198.51.100.200')).setCookie!)![1]!;
    expect((await side('203.0.113.9', `banyan_sid=${genuine}`)).setCookie, 'a genuine one is kept').to.equal(null);
  });

  it('a client that keeps no cookies stays on the side of its address', async () => {
    for (let i = 0; i < 50; i++) {
      const address = `172.16.0.${i}`;
      const a = await side(address);
      const b = await side(address);
      expect(b.side, address).to.equal(a.side);
    }
  });
});
