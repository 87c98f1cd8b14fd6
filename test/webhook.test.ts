import { expect } from 'chai';
import { createHmac } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import { listen, type Listening } from '../lib/http-server.js';
import { loggableUrl, postEvent, SIGNATURE_HEADER } from '../autopilot/webhook.js';

async function receiver(
  answer: (req: IncomingMessage) => { status: number; location?: string },
): Promise<{ url: string; got: { headers: IncomingMessage['headers']; body: string }[]; listening: Listening }> {
  const got: { headers: IncomingMessage['headers']; body: string }[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => {
      body += d;
    });
    req.on('end', () => {
      got.push({ headers: req.headers, body });
      const a = answer(req);
      res.writeHead(a.status, a.location ? { location: a.location } : {});
      res.end();
    });
  });
  const listening = await listen(server, 0, '127.0.0.1', 'webhook', 200);
  return { url: listening.url, got, listening };
}

describe('autopilot webhooks: signed, never redirected, logged without secrets', () => {
  it('signs each body with BANYAN_SECRET: Banyan-Signature t=<unix>,v1=<HMAC-SHA256 of "t.body">', async () => {
    const hook = await receiver(() => ({ status: 200 }));
    try {
      await postEvent(
        `${hook.url}/hook`,
        { event: 'step', route: 'r' },
        { secret: 'webhook-secret-0123456789', log: () => {}, what: 'a test' },
      );
      const { headers, body } = hook.got[0]!;
      const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(String(headers[SIGNATURE_HEADER]))!;
      expect(m, String(headers[SIGNATURE_HEADER])).to.not.equal(null);
      expect(Math.abs(Number(m[1]) - Date.now() / 1000)).to.be.below(5);
      expect(m[2]).to.equal(createHmac('sha256', 'webhook-secret-0123456789').update(`${m[1]}.${body}`).digest('hex'));
      expect(JSON.parse(body)).to.deep.equal({ event: 'step', route: 'r' });
    } finally {
      await hook.listening.close();
    }
  });

  it('follows no redirect, and logs the URL without its query string', async () => {
    const elsewhere = await receiver(() => ({ status: 200 }));
    const hook = await receiver(() => ({ status: 307, location: `${elsewhere.url}/stolen` }));
    const lines: string[] = [];
    try {
      await postEvent(`${hook.url}/hook?token=s3cr3t`, { event: 'done' }, { log: (l) => lines.push(l), what: 'the done event of r' });
      expect(elsewhere.got, 'the redirect was not followed').to.have.length(0);
      expect(lines).to.deep.equal([`autopilot: webhook ${hook.url}/hook answered 307 (a redirect, not followed) to the done event of r`]);
      await postEvent(`http://127.0.0.1:1/hook?token=s3cr3t`, { event: 'done' }, { log: (l) => lines.push(l), what: 'x' });
      expect(lines[1]).to.match(/^autopilot: webhook http:\/\/127\.0\.0\.1:1\/hook failed for x: /);
      expect(lines.join('\n')).to.not.contain('s3cr3t');
    } finally {
      await hook.listening.close();
      await elsewhere.listening.close();
    }
    expect(loggableUrl('https://user:pw@hooks.example/a/b?k=v#f')).to.equal('https://hooks.example/a/b');
  });
});
