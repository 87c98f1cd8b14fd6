import { expect } from 'chai';
import { PassThrough } from 'node:stream';
import { accessLog, type AccessEntry } from '../proxy/access-log.js';

const ENTRY: AccessEntry = {
  reqId: 'r-1',
  method: 'GET',
  url: '/simple/demo/',
  route: 'simple.detail',
  mode: 'new',
  backend: 'legacy',
  service: 'legacy',
  endpoint: 'http://127.0.0.1:8082',
  status: 200,
  ms: 12.3,
  bytes: 4_096,
  fallback: 'refused',
};

describe('access log (BANYAN_LOG)', () => {
  const capture = () => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (d) => {
      text += d;
    });
    return { out, text: () => text };
  };

  it('json: one pino line per request with every field, for log pipelines', async () => {
    const c = capture();
    accessLog('json', c.out)!(ENTRY);
    await new Promise((r) => setImmediate(r));
    const line = JSON.parse(c.text().trim()) as Record<string, unknown>;
    expect(line).to.include({ ...ENTRY, msg: 'request', level: 30 });
    expect(line['time']).to.match(/^\d{4}-\d\d-\d\dT/);
  });

  it('pretty: one short line for a terminal, with the fallback reason', () => {
    const c = capture();
    accessLog('pretty', c.out)!(ENTRY);
    expect(c.text()).to.match(
      /^\d\d:\d\d:\d\d\.\d{3} GET \/simple\/demo\/ 200 legacy http:\/\/127\.0\.0\.1:8082 \(simple\.detail, new\) 12\.3 ms 4096 B fallback: refused r-1\n$/,
    );
  });

  it('off: nothing at all', () => {
    expect(accessLog('off')).to.equal(undefined);
  });
});
