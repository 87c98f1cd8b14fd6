import { expect } from 'chai';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';
import { LoadShedder } from '../proxy/load-shedder.js';
import { loadSettings } from '../lib/config.js';

/** Keeps the event loop busy `ms` at a time, back to back, as a proxy past its capacity is: a standing queue. */
function saturate(ms: number): () => void {
  let on = true;
  const spin = () => {
    if (!on) return;
    const until = performance.now() + ms;
    while (performance.now() < until) {
      /* busy */
    }
    setImmediate(spin);
  };
  setImmediate(spin);
  return () => {
    on = false;
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('load shedding: past capacity, the excess gets a fast 503 instead of everyone waiting', function () {
  this.timeout(30_000);
  let server: Server;
  let shedder: LoadShedder;
  let url: string;
  let shedCount = 0;
  const agent = new Agent({ connections: 16 });

  before(async () => {
    shedder = new LoadShedder(20, () => shedCount++);
    server = createServer((req, res) => {
      if (!shedder.admit(req, res)) return;
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('served\n');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    shedder.close();
    await agent.close();
    await new Promise((resolve) => server.close(resolve));
  });

  async function statuses(n: number): Promise<{ codes: number[]; retryAfter: Set<string>; bodies: Set<string> }> {
    const answers = await Promise.all(
      Array.from({ length: n }, async () => {
        const res = await request(`${url}/`, { dispatcher: agent });
        return { status: res.statusCode, retryAfter: String(res.headers['retry-after'] ?? ''), body: await res.body.text() };
      }),
    );
    return {
      codes: answers.map((a) => a.status),
      retryAfter: new Set(answers.filter((a) => a.status === 503).map((a) => a.retryAfter)),
      bodies: new Set(answers.filter((a) => a.status === 503).map((a) => a.body)),
    };
  }

  it('serves everything while the loop keeps up, and a single long pause (a GC, a big parse) sheds nothing', async () => {
    const before = (await statuses(40)).codes;
    expect(
      before.every((c) => c === 200),
      `${before} (share ${shedder.share})`,
    ).to.equal(true);
    const until = performance.now() + 300;
    while (performance.now() < until) {
      /* one 300 ms stall */
    }
    await sleep(250);
    expect(shedder.share, 'one late timer is not a standing queue').to.equal(0);
    expect((await statuses(40)).codes.every((c) => c === 200)).to.equal(true);
    expect(shedCount).to.equal(0);
  });

  it('under a standing queue answers a growing share 503 with Retry-After, and serves everything again once it drains', async () => {
    const stop = saturate(80);
    try {
      await sleep(600);
      expect(shedder.share).to.be.above(0.3);
      const { codes, retryAfter, bodies } = await statuses(60);
      expect(codes.filter((c) => c === 503).length, 'some are shed').to.be.above(5);
      expect(codes.filter((c) => c === 200).length, 'never all').to.be.above(0);
      expect([...retryAfter]).to.deep.equal(['1']);
      expect([...bodies]).to.deep.equal(['503 Service Unavailable: this proxy is over its capacity. Retry after 1 s.\n']);
      expect(shedCount).to.be.above(5);
    } finally {
      stop();
    }
    // The share steps down 5 points every 100 ms once the loop keeps up.
    for (let i = 0; i < 50 && shedder.share > 0; i++) await sleep(100);
    expect(shedder.share).to.equal(0);
    expect((await statuses(60)).codes.every((c) => c === 200)).to.equal(true);
  });

  it('is a setting: BANYAN_SHED_LAG takes a duration or off, and refuses anything else by name', () => {
    const base = { DATABASE_URL: 'postgres://localhost/x' };
    expect(loadSettings(base).shedLagMs).to.equal(25);
    expect(loadSettings({ ...base, BANYAN_SHED_LAG: '40ms' }).shedLagMs).to.equal(40);
    expect(loadSettings({ ...base, BANYAN_SHED_LAG: 'off' }).shedLagMs).to.equal(0);
    expect(() => loadSettings({ ...base, BANYAN_SHED_LAG: 'soon' })).to.throw(/BANYAN_SHED_LAG/);
  });
});
