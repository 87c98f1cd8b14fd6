import { expect } from 'chai';
import { gzipSync } from 'node:zlib';
import type { ProxyRuntime } from '../proxy/runtime.js';
import { ADMIN_TOKEN, call, setRoutes, startTestProxy } from './support/proxy.js';
import { services } from './support/services.js';
import { fakeBackend, type FakeBackend } from './support/upstreams.js';

interface Report {
  counts: Record<string, number>;
  groups: { where: string; count: number; example: { path: string; legacy: string; new: string } }[];
  samples: { path: string; requestId: string; differences: { where: string; legacy: string; new: string }[] }[];
}

describe('shadow mode: legacy answers, the new app is compared', () => {
  let legacy: FakeBackend;
  let app: FakeBackend;
  let proxy: ProxyRuntime;
  let tick = 0;

  const json = (body: unknown) => (_req: unknown, res: import('node:http').ServerResponse) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };

  before(async () => {
    const s = await services();
    legacy = await fakeBackend('legacy');
    app = await fakeBackend('new');
    // Legacy stamps every answer with a changing serial: noise, not a difference.
    legacy.answer('/pypi/', (req, res) => json({ name: req.url!.split('/')[2], version: '1.0', serial: ++tick })(req, res));
    app.answer('/pypi/same', json({ name: 'same', version: '1.0', serial: 0 }));
    app.answer('/pypi/diff', json({ name: 'diff', version: '2.0', serial: 0 }));
    app.answer('/pypi/slow', (_req, res) => {
      setTimeout(() => json({ name: 'slow', version: '1.0', serial: 0 })(_req, res), 1_500);
    });
    app.answer('/plain/', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('<h1>new</h1>\n');
    });
    legacy.answer('/plain/', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('<h1>old</h1>\n');
    });
    // Pages: legacy's HTML 4, stamped with the time it was made; the rewrite's HTML5. `other` offers another file.
    const page = (type: string, body: string) => (_req: unknown, res: import('node:http').ServerResponse) => {
      res.writeHead(200, { 'content-type': type });
      res.end(body);
    };
    const legacyPage = () =>
      '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN">\n<HTML><BODY><!-- old -->' +
      `<H1>demo 1.0</H1><P CLASS=stamp>made ${++tick}</P><TABLE><TR><TD><A ID=download HREF="/packages/a/demo-1.0.tar.gz#sha256=ff">demo-1.0.tar.gz</A></TABLE></BODY></HTML>`;
    const newPage = (file: string, dir = 'b') =>
      `<!DOCTYPE html><html lang="en"><body><h1>demo <span class="version">1.0</span></h1><p class="stamp">made 0</p>\n` +
      `<a class="button" id="download" href="/packages/${dir}/${file}">demo-1.0.tar.gz</a></body></html>`;
    legacy.answer('/pages/', (req, res) =>
      page('text/html', legacyPage().replace(/made \d+/, req.url!.includes('stamped') ? '$&' : 'made 0'))(req, res),
    );
    app.answer('/pages/same', page('text/html', newPage('demo-1.0.tar.gz#sha256=ff', 'a')));
    app.answer('/pages/other', page('text/html', newPage('demo-1.0-py3-none-win_amd64.whl', 'a')));
    app.answer('/pages/stamped', page('text/html', newPage('demo-1.0.tar.gz#sha256=ff', 'a')));
    legacy.answer('/fields/', (req, res) => page('text/html', legacyPage())(req, res));
    app.answer('/fields/same', page('text/html', newPage('demo-1.0.tar.gz')));
    app.answer('/fields/other', page('text/html', newPage('demo-1.0-py3-none-win_amd64.whl')));
    // Big bodies: 5,000 bytes alike except where the path says.
    const big = (differAt: number | undefined, side: string) => (_req: unknown, res: import('node:http').ServerResponse) => {
      const body = Buffer.alloc(5_000, 'a');
      if (differAt !== undefined) body.write(side, differAt);
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(body);
    };
    // A legacy behind gzip, a new app that sends plain JSON (to the copy, which asks for identity): the same answer.
    legacy.answer('/zipped/', (req, res) => {
      const body = Buffer.from(JSON.stringify({ name: 'zipped', versions: Array.from({ length: 50 }, (_, i) => `1.${i}`) }));
      const zip = /gzip/.test(String(req.headers['accept-encoding']));
      res.writeHead(200, { 'content-type': 'application/json', ...(zip ? { 'content-encoding': 'gzip' } : {}) });
      res.end(zip ? gzipSync(body) : body);
    });
    app.answer('/zipped/', (req, res) => {
      const zip = /gzip/.test(String(req.headers['accept-encoding']));
      res.writeHead(200, { 'content-type': 'application/json', 'x-asked': String(req.headers['accept-encoding']) });
      res.end(
        zip
          ? 'the copy should have asked for identity'
          : JSON.stringify({ name: 'zipped', versions: Array.from({ length: 50 }, (_, i) => `1.${i}`) }),
      );
    });
    // 64 MiB that gzip to 64 KiB, alike in their first 32 MiB: a comparison of 100 KB must not inflate them whole.
    const bomb = (side: string) => {
      const body = Buffer.alloc(64 * 1024 * 1024, 'a');
      body.write(side, 32 * 1024 * 1024);
      return gzipSync(body);
    };
    const bombs = { old: bomb('old'), new: bomb('new') };
    legacy.answer('/bomb', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-encoding': 'gzip' });
      res.end(bombs.old);
    });
    app.answer('/bomb', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-encoding': 'gzip' });
      res.end(bombs.new);
    });
    legacy.answer('/big/early', big(10, 'old'));
    app.answer('/big/early', big(10, 'new'));
    legacy.answer('/big/late', big(3_000, 'old'));
    app.answer('/big/late', big(3_000, 'new'));
    await setRoutes(s, [
      { name: 'legacy.json', match: { path: '/pypi/:project' }, mode: 'shadow', shadow: { calibrate: true } },
      { name: 'legacy.plain', match: { path: '/plain/*' }, mode: 'shadow' },
      { name: 'legacy.pages', match: { path: '/pages/*' }, mode: 'shadow' },
      {
        name: 'legacy.fields',
        match: { path: '/fields/*' },
        mode: 'shadow',
        shadow: {
          calibrate: true,
          html: {
            compare: {
              offered: 'a#download@href|basename',
              version: 'h1|version',
              stamp: 'p.stamp',
            },
          },
        },
      },
      { name: 'legacy.big', match: { path: '/big/*' }, mode: 'shadow', shadow: { maxBodyBytes: 1_000 } },
      { name: 'legacy.zipped', match: { path: '/zipped/*' }, mode: 'shadow' },
      { name: 'legacy.bomb', match: { path: '/bomb' }, mode: 'shadow', shadow: { maxBodyBytes: 100_000 } },
    ]);
    proxy = await startTestProxy(s, legacy.url, app.url);
  });

  after(async () => {
    await proxy.stop();
    await legacy.close();
    await app.close();
  });

  const report = async (route: string): Promise<Report> =>
    (
      await fetch(`${proxy.adminUrl}/api/shadow/${route}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
    ).json() as Promise<Report>;
  const settle = async (route: string, total: number) => {
    const deadline = Date.now() + 5_000;
    for (;;) {
      const r = await report(route);
      if (Object.values(r.counts).reduce((a, b) => a + b, 0) >= total || Date.now() > deadline) return r;
      await new Promise((res) => setTimeout(res, 20));
    }
  };

  it('serves the client from legacy without waiting for the shadow', async () => {
    const t0 = Date.now();
    const r = await call(`${proxy.url}/pypi/slow`);
    expect(Date.now() - t0, 'the slow new app must not delay the client').to.be.below(1_000);
    expect(JSON.parse(r.text)).to.deep.include({ name: 'slow' });
    expect(app.seen.some((s) => s.path === '/pypi/slow' && s.headers['x-banyan-shadow'] === '1')).to.equal(true);
    const settled = await settle('legacy.json', 1);
    expect(settled.counts['noise'], 'the late answer is still compared').to.equal(1);
  });

  it('counts matches, calls legacy-vs-legacy differences noise, and samples real mismatches with a diff', async () => {
    for (let i = 0; i < 3; i++) await call(`${proxy.url}/pypi/same`);
    const diff = await call(`${proxy.url}/pypi/diff`, { headers: { 'x-request-id': 'shadow-diff-1' } });
    expect(JSON.parse(diff.text).version, 'the client gets legacy').to.equal('1.0');
    const r = await settle('legacy.json', 1 + 4);
    expect(r.counts['noise']).to.equal(1 + 3);
    expect(r.counts['match'], 'with calibration, serial differences are noise, not matches').to.equal(0);
    expect(r.counts['mismatch']).to.equal(1);
    expect(r.samples[0]).to.deep.include({ path: '/pypi/diff', requestId: 'shadow-diff-1' });
    expect(r.samples[0]!.differences).to.deep.equal([{ where: 'body.version', legacy: '"1.0"', new: '"2.0"' }]);
  });

  it('compares text bodies line by line when there is no calibration', async () => {
    await call(`${proxy.url}/plain/page`);
    const r = await settle('legacy.plain', 1);
    expect(r.counts['mismatch']).to.equal(1);
    expect(r.samples[0]!.differences).to.deep.equal([{ where: 'body line 1', legacy: '<h1>old</h1>', new: '<h1>new</h1>' }]);
  });

  it('compares pages by their words and links: HTML 4 and HTML5 that say the same match', async () => {
    await call(`${proxy.url}/pages/same`);
    await call(`${proxy.url}/pages/other`);
    await call(`${proxy.url}/pages/stamped`);
    const r = await settle('legacy.pages', 3);
    expect(r.counts, JSON.stringify(r.samples)).to.include({ match: 1, mismatch: 2 });
    expect(r.groups.map((g) => [g.where, g.count, g.example.path]).sort()).to.deep.equal([
      ['html links', 1, '/pages/other'],
      ['html text', 1, '/pages/stamped'],
    ]);
    expect(r.groups.find((g) => g.where === 'html links')!.example).to.deep.include({
      legacy: 'link 1: /packages/a/demo-1.0.tar.gz#sha256=ff',
      new: 'link 1: /packages/a/demo-1.0-py3-none-win_amd64.whl',
    });
  });

  it("compares only a page's named fields, grouped by field, and calls what legacy disagrees with itself about noise", async () => {
    for (let i = 0; i < 2; i++) await call(`${proxy.url}/fields/same`);
    await call(`${proxy.url}/fields/other`);
    const r = await settle('legacy.fields', 3);
    expect(r.counts, "the stamp differs on every answer, legacy's own too: noise").to.include({ noise: 2, mismatch: 1, match: 0 });
    expect(r.groups).to.have.length(1);
    expect(r.groups[0]).to.deep.include({ where: 'html offered (a#download@href|basename)', count: 1 });
    expect(r.groups[0]!.example).to.deep.include({
      path: '/fields/other',
      legacy: 'demo-1.0.tar.gz',
      new: 'demo-1.0-py3-none-win_amd64.whl',
    });
  });

  it("compares at most the route's maxBodyBytes of each body, and the client still gets all of it", async () => {
    const early = await call(`${proxy.url}/big/early`);
    const late = await call(`${proxy.url}/big/late`);
    expect([early.text.length, late.text.length]).to.deep.equal([5_000, 5_000]);
    const r = await settle('legacy.big', 2);
    expect(r.counts, 'a difference past the first 1,000 bytes is not seen; one before is').to.include({ match: 1, mismatch: 1 });
    expect(r.samples.map((x) => x.path)).to.deep.equal(['/big/early']);
  });

  it('compares what answers say, not their encoding: a gzipped legacy answer matches the same plain JSON', async () => {
    const res = await fetch(`${proxy.url}/zipped/x`, { headers: { 'accept-encoding': 'gzip' } });
    expect(res.headers.get('content-encoding'), "the client gets legacy's answer as it was").to.equal('gzip');
    await res.arrayBuffer();
    const r = await settle('legacy.zipped', 1);
    expect(r.counts).to.include({ match: 1, mismatch: 0 });
  });

  it('inflates a gzipped answer only up to maxBodyBytes: a body 1,000 times its capture is compared on its first bytes', async () => {
    const res = await fetch(`${proxy.url}/bomb`, { headers: { 'accept-encoding': 'gzip' } });
    await res.arrayBuffer();
    const r = await settle('legacy.bomb', 1);
    expect(r.counts, 'the difference 32 MiB in is past what is compared').to.include({ match: 1, mismatch: 0, error: 0 });
  });

  it('never shadows unsafe methods', async () => {
    const before = app.seen.length;
    const r = await call(`${proxy.url}/pypi/same`, { method: 'POST', body: 'x=1' });
    expect(r.status).to.equal(200);
    await new Promise((res) => setTimeout(res, 200));
    expect(app.seen.length).to.equal(before);
  });

  it('exports the results as metrics', async () => {
    const metrics = await (await fetch(`${proxy.adminUrl}/metrics`)).text();
    expect(metrics).to.match(/banyan_proxy_shadow_results_total\{route="legacy.json",result="mismatch"\} 1/);
    expect(metrics).to.match(/banyan_proxy_shadow_results_total\{route="legacy.json",result="noise"\} 4/);
  });
});

describe('shadow mode with a new app that is dead or breaks the connection: the proxy stays up', () => {
  for (const failure of ['refused', 'reset'] as const) {
    it(`answers every shadowed GET from legacy and counts the copies as errors (${failure})`, async () => {
      const s = await services();
      const legacy = await fakeBackend('legacy');
      // Legacy is slower than the failing copy: the copy's failure comes before anyone waits for it.
      legacy.answer('/dead/', (_req, res) => {
        setTimeout(() => {
          res.writeHead(200);
          res.end('old');
        }, 100);
      });
      const { createServer } = await import('node:net');
      const breaker = createServer((socket) => socket.resetAndDestroy());
      await new Promise<void>((resolve) => breaker.listen(0, '127.0.0.1', resolve));
      const port = (breaker.address() as { port: number }).port;
      if (failure === 'refused') await new Promise<void>((resolve) => breaker.close(() => resolve()));
      await setRoutes(s, [{ name: 'shadow.dead', match: { path: '/dead/*' }, mode: 'shadow' }], `shadow to a ${failure} app`);
      const proxy = await startTestProxy(s, legacy.url, `http://127.0.0.1:${port}`);
      // An unhandled rejection is what ends a real proxy process (Node's default); count them here.
      const unhandled: unknown[] = [];
      const onUnhandled = (reason: unknown) => {
        unhandled.push(reason);
      };
      process.on('unhandledRejection', onUnhandled);
      try {
        const statuses = [];
        for (let i = 0; i < 20; i++) statuses.push((await call(`${proxy.url}/dead/${i}`)).status);
        expect(statuses).to.deep.equal(new Array(20).fill(200));
        await new Promise((resolve) => setTimeout(resolve, 200));
        expect(proxy.proxy.shadow.report('shadow.dead').counts).to.include({ error: 20, match: 0 });
        expect((await call(`${proxy.url}/dead/after`)).status, 'still serving').to.equal(200);
        expect(unhandled.map(String), 'no rejection left unhandled').to.deep.equal([]);
      } finally {
        process.off('unhandledRejection', onUnhandled);
        await proxy.stop();
        await legacy.close();
        if (failure === 'reset') breaker.close();
      }
    });
  }
});
