import { expect } from 'chai';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { ProxyRuntime } from '../proxy/runtime.js';
import type { Route } from '../routing/table/index.js';
import { ADMIN_TOKEN, setRoutes, startTestProxy, TEST_SECRET } from './support/proxy.js';
import { newSession, SESSION_COOKIE } from '../proxy/canary-session.js';
import { runBanyanAsync } from './support/cli.js';
import { services, tempDir } from './support/services.js';
import { fakeBackend, type FakeBackend } from './support/upstreams.js';
import { ARTIFACTS } from './support/artifacts.js';

const CHROMIUM = process.env['BANYAN_CHROMIUM'] ?? '/usr/bin/chromium';

const ROUTES: Route[] = [
  { name: 'dashboard.home', match: { path: '/' }, mode: 'legacy' },
  { name: 'legacy.pypi', match: { path: '/pypi' }, mode: 'legacy' },
  { name: 'new.simple', match: { path: '/simple/*' }, mode: 'new' },
  {
    name: 'dashboard.page',
    match: { path: '/page/*' },
    mode: 'shadow',
    shadow: { html: { compare: { version: 'h1|version', offered: 'a#download@href|basename' } } },
  },
];

describe('the built-in dashboard, in headless Chromium', () => {
  let legacy: FakeBackend;
  let app: FakeBackend;
  let proxy: ProxyRuntime;
  let browser: Browser;
  let page: Page;

  before(async function () {
    this.timeout(60_000);
    if (!existsSync(CHROMIUM)) throw new Error(`chromium is not installed at ${CHROMIUM}; .ci/run installs it (apt-get install chromium)`);
    const s = await services();
    await setRoutes(s, ROUTES, 'dashboard test');
    legacy = await fakeBackend('legacy');
    app = await fakeBackend('new');
    proxy = await startTestProxy(s, legacy.url, app.url, { pollMs: 200 });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    });
    page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  });

  after(async () => {
    await browser?.close();
    await proxy?.stop();
    await legacy?.close();
    await app?.close();
  });

  const cell = (route: string, column: string) => page.locator(`tr[data-route="${route}"] .${column}`);

  it('asks for the token, and refuses a wrong one', async function () {
    this.timeout(30_000);
    await page.goto(`${proxy.adminUrl}/`);
    await page.locator('#login').waitFor({ state: 'visible' });
    expect(await page.locator('#board').isHidden()).to.equal(true);
    await page.fill('#token', 'not-the-token');
    await page.click('#login button[type=submit]');
    await page.waitForFunction("document.getElementById('login-error').textContent !== ''");
    expect(await page.textContent('#login-error')).to.equal('missing or wrong admin token');
  });

  it('lists every route with its mode and live numbers once traffic has been sent', async function () {
    this.timeout(30_000);
    for (let i = 0; i < 30; i++) await (await fetch(`${proxy.url}/`)).text();
    for (let i = 0; i < 20; i++) await (await fetch(`${proxy.url}/simple/x/`)).text();
    await page.fill('#token', ADMIN_TOKEN);
    await page.click('#login button[type=submit]');
    await page.locator('#board').waitFor({ state: 'visible' });
    expect(await page.locator('#routes tbody tr').count()).to.equal(4);
    expect(await cell('dashboard.home', 'mode-cell').textContent()).to.equal('legacy');
    expect(await cell('new.simple', 'mode-cell').textContent()).to.equal('new');
    expect(await cell('dashboard.home', 'h-legacy').textContent()).to.equal('30');
    expect(await cell('new.simple', 'h-new').textContent()).to.equal('20');
    expect(await cell('legacy.pypi', 'h-legacy').textContent()).to.equal('0');
    expect(await cell('legacy.pypi', 'seen').textContent()).to.equal('never');
    expect(await cell('dashboard.home', 'errors').textContent()).to.equal('0.0%');
    expect(await cell('new.simple', 'service').textContent(), 'the service its new side goes to').to.equal('app');
    // Endpoint health per service: legacy and the app, each endpoint with its state and the requests it took.
    const endpoints = await page.locator('#endpoints tbody tr').allTextContents();
    expect(endpoints.map((row) => row.replace(/http:\/\/127\.0\.0\.1:\d+/, 'URL').replace(/\d{1,2}:\d\d:\d\d.*$/, ''))).to.deep.equal([
      'legacyURLhealthy03000closed–',
      'appURLhealthy02000closed–',
    ]);
    // More traffic shows up on the next refresh, without reloading the page.
    for (let i = 0; i < 5; i++) await (await fetch(`${proxy.url}/`)).text();
    await page.waitForFunction(`document.querySelector('tr[data-route="dashboard.home"] .h-legacy').textContent === '35'`, undefined, {
      timeout: 15_000,
    });
  });

  it('cuts a route over to the new app, with a required reason that is audited, and the proxy follows', async function () {
    this.timeout(30_000);
    expect((await fetch(`${proxy.url}/pypi`)).headers.get('x-backend')).to.equal('legacy');
    const row = page.locator('tr[data-route="legacy.pypi"]');
    await row.locator('select.mode').selectOption('new');
    await row.locator('button.apply').click();
    await page.waitForFunction("document.getElementById('message').className === 'error'");
    expect(await page.textContent('#message')).to.contain('Say why legacy.pypi should change');
    expect((await fetch(`${proxy.url}/pypi`)).headers.get('x-backend'), 'nothing changed without a reason').to.equal('legacy');

    await row.locator('input.reason').fill('rewritten: cut over from the dashboard');
    await row.locator('button.apply').click();
    await page.waitForFunction("document.getElementById('message').className === 'ok'");
    expect(await page.textContent('#message')).to.match(/^Version \d+: change\s+legacy\.pypi: legacy → new/);
    await page.waitForFunction(`document.querySelector('tr[data-route="legacy.pypi"] .mode-cell').textContent === 'new'`);
    expect((await fetch(`${proxy.url}/pypi`)).headers.get('x-backend')).to.equal('new');

    const history = (await (
      await fetch(`${proxy.adminUrl}/api/routes/history?limit=1`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
    ).json()) as { actor: string; reason: string }[];
    expect(history[0]).to.include({ actor: 'dashboard', reason: 'rewritten: cut over from the dashboard' });
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true });
  });

  it('shows shadow differences grouped by the page field that differs, with one example each', async function () {
    this.timeout(30_000);
    expect(await page.locator('#shadow').isHidden(), 'no differences yet, no card').to.equal(true);
    const html = (body: string) => (_req: unknown, res: import('node:http').ServerResponse) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(body);
    };
    legacy.answer(
      '/page/',
      html(
        '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01//EN"><H1>demo 1.0</H1><TABLE><TR><TD><A ID=download HREF="/packages/a/demo-1.0.tar.gz">x</A></TABLE>',
      ),
    );
    app.answer(
      '/page/',
      html(
        '<!DOCTYPE html><h1>demo <span>1.0</span></h1><a id="download" class="button" href="/packages/b/demo-1.0-py3-none-any.whl">Download</a>',
      ),
    );
    for (let i = 0; i < 3; i++) await (await fetch(`${proxy.url}/page/demo/`)).text();
    await page.locator('#shadow').waitFor({ state: 'visible', timeout: 15_000 });
    await page.waitForFunction(`document.querySelector('#shadow-groups tbody td.num')?.textContent === '3'`, undefined, {
      timeout: 15_000,
    });
    const rows = await page
      .locator('#shadow-groups tbody tr')
      .evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)));
    expect(rows, 'the version matches, so only the offered file is a group').to.deep.equal([
      ['dashboard.page', 'html offered (a#download@href|basename)', '3', 'GET /page/demo/', 'demo-1.0.tar.gz', 'demo-1.0-py3-none-any.whl'],
    ]);
    expect(await cell('dashboard.page', 'mismatch').textContent()).to.equal('100.0%');
  });

  it('charts the legacy/new share as stacked bars per minute, and fallbacks and unmatched requests', async function () {
    this.timeout(30_000);
    for (let i = 0; i < 3; i++) await (await fetch(`${proxy.url}/nowhere-${i}`)).text();
    await page.waitForFunction('window.Chart !== undefined');
    // A string, not a function: the test's compiler would add helpers the page does not have.
    const charts = (await page.evaluate(`(() => {
      const read = (id) => { const c = Chart.getChart(id); return { type: c.config.type, stacked: c.config.options.scales.y.stacked === true, labels: c.data.datasets.map((d) => d.label) }; };
      return { share: read('share'), faults: read('faults') };
    })()`)) as Record<string, { type: string; stacked: boolean; labels: string[] }>;
    expect(charts.share).to.deep.equal({ type: 'bar', stacked: true, labels: ['legacy %', 'new app %'] });
    expect(charts.faults).to.deep.include({ type: 'bar', labels: ['fallbacks', 'unmatched'] });
  });

  it('shows a cutover plan in progress: its step, the budgets against the live numbers, and the time to the next step', async function () {
    this.timeout(60_000);
    const s = await services();
    const file = join(tempDir('banyan-dashboard-plan-'), 'plan.json');
    writeFileSync(
      file,
      JSON.stringify({
        steps: [
          { mode: 'canary', percent: 25, hold: '30m', minRequests: 500 },
          { mode: 'new', hold: '1h', minRequests: 1000 },
        ],
        budgets: { minRequests: 10, window: '5m' },
      }),
    );
    const started = await runBanyanAsync(['routes', 'promote', 'dashboard.home', '--plan', file], {
      env: { DATABASE_URL: s.primaryUrl, REDIS_URL: s.redisUrl ?? '' },
    });
    expect(started.status, started.stderr).to.equal(0);
    try {
      await page.waitForFunction(
        `document.querySelector('tr[data-route="dashboard.home"] .mode-cell').textContent === 'canary 25%'`,
        undefined,
        { timeout: 15_000 },
      );
      // Sessions in every canary bucket: a quarter of them go to the new app.
      for (let i = 0; i < 80; i++)
        await (await fetch(`${proxy.url}/`, { headers: { cookie: `${SESSION_COOKIE}=${newSession(i * 125, TEST_SECRET)}` } })).text();
      await page.locator('#plans').waitFor({ state: 'visible' });
      await page.waitForFunction(
        `(() => { const row = [...document.querySelectorAll('#plans .checks tr')].find((tr) => tr.firstChild.textContent === 'new 5xx rate');
        return row !== undefined && row.lastChild.textContent === 'within'; })()`,
        undefined,
        { timeout: 15_000 },
      );
      const text = (await page.textContent('#plans'))!;
      expect(text).to.match(/dashboard\.home promote · running · step 1\/2: canary 25%/);
      expect(text).to.match(/next step in \d+m\d*s? at the earliest/);
      expect(text).to.contain('time on step');
      expect(text).to.match(/new 5xx rate0\.00 % \(0 of \d+\)≤ 0\.50 % \(legacy/);
      await page.screenshot({ path: join(ARTIFACTS, 'dashboard-plan.png'), fullPage: true });
    } finally {
      await runBanyanAsync(['routes', 'promote', 'dashboard.home', '--abort'], {
        env: { DATABASE_URL: s.primaryUrl, REDIS_URL: s.redisUrl ?? '' },
      });
    }
  });

  it('shows a dry-run plan waiting at a gate, and what to type to let it on', async function () {
    this.timeout(60_000);
    const s = await services();
    const env = { DATABASE_URL: s.primaryUrl, REDIS_URL: s.redisUrl ?? '' };
    const file = join(tempDir('banyan-dashboard-gate-'), 'plan.json');
    writeFileSync(
      file,
      JSON.stringify({
        steps: [
          { mode: 'canary', percent: 25, hold: '1s', minRequests: 5 },
          { mode: 'new', hold: '1h', approve: true },
        ],
        budgets: { minRequests: 5, window: '5m' },
      }),
    );
    const started = await runBanyanAsync(['routes', 'promote', 'dashboard.home', '--plan', file, '--dry-run'], { env });
    expect(started.status, started.stderr).to.equal(0);
    try {
      // Visitors until the gate: the cell may still show the last plan's canary, so traffic goes on until the step has its evidence.
      const deadline = Date.now() + 30_000;
      while (!(await page.textContent('#plans'))!.includes('Waiting for approval')) {
        expect(
          Date.now(),
          `the plan reaches the gate:\n${(await runBanyanAsync(['routes', 'promote', 'dashboard.home', '--status'], { env })).stdout}`,
        ).to.be.below(deadline);
        for (let i = 0; i < 40; i++)
          await (await fetch(`${proxy.url}/`, { headers: { cookie: `${SESSION_COOKIE}=${newSession(i * 250, TEST_SECRET)}` } })).text();
        await new Promise((r) => setTimeout(r, 500));
      }
      const text = (await page.textContent('#plans'))!;
      expect(text).to.contain('dashboard.home promote · running · step 1/2: canary 25% · ');
      expect(text).to.contain(' · dry run: budgets only watched');
      expect(text).to.contain('Waiting for approval before step 2 (new): banyan routes promote dashboard.home --approve');
      expect(text).to.match(/new 5xx rate0\.00 % \(0 of \d+\)≤ 0\.50 % \(legacy [^)]*\)within \(dry run\)/);
      await page.screenshot({ path: join(ARTIFACTS, 'dashboard-gate.png'), fullPage: true });
    } finally {
      await runBanyanAsync(['routes', 'promote', 'dashboard.home', '--abort'], { env });
    }
  });
});
