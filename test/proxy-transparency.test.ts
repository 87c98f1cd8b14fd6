import { expect } from 'chai';
import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import { listen, type Listening } from '../lib/http-server.js';
import type { ProxyRuntime } from '../proxy/runtime.js';
import { setRoutes, startTestProxy } from './support/proxy.js';
import { services } from './support/services.js';

/** A backend that answers the way real ones do at the edges: its own reason phrases, 1xx, trailers, several cookies. */
function edgyBackend(): Server {
  return createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/reason') {
        res.writeHead(400, "File already exists ('x-1.0.tar.gz'). Use a new version number", { 'content-type': 'text/plain' });
        res.end('exists\n');
      } else if (req.url === '/hints') {
        res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
        setTimeout(() => {
          res.writeHead(200, { 'content-type': 'text/html' });
          res.end('<p>page</p>');
        }, 50);
      } else if (req.url === '/trailers') {
        res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
        res.write('part one, ');
        res.addTrailers({ 'x-checksum': 'abc123' });
        res.end('part two');
      } else if (req.url!.startsWith('/echo')) {
        // What arrived, for the other direction: the raw request line's target, raw headers, trailers and body.
        const body = JSON.stringify({
          url: req.url,
          headers: req.rawHeaders,
          trailers: req.rawTrailers,
          body: Buffer.concat(chunks).toString('base64'),
        });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(body);
      } else {
        res.writeHead(200, [
          ['Set-Cookie', 'a=1; Path=/'],
          ['Set-Cookie', 'b=2; Path=/'],
          ['X-Odd-Case', 'Value, with;  inner  spaces'],
          ['Content-Length', '2'],
        ]);
        res.end('ok');
      }
    });
  });
}

/** The whole raw response, as bytes a client would read. */
function rawExchange(url: string, request: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port) });
    let data = '';
    socket.setTimeout(5_000, () => {
      socket.destroy();
      resolve(data);
    });
    socket.on('data', (d) => {
      data += d;
    });
    socket.on('end', () => resolve(data));
    socket.on('error', reject);
    socket.write(request);
  });
}

describe('proxy transparency: what the route does not change reaches the client as the backend sent it', () => {
  let backend: Listening;
  let proxy: ProxyRuntime;

  before(async () => {
    const s = await services();
    backend = await listen(edgyBackend(), 0, '127.0.0.1', 'test');
    await setRoutes(
      s,
      [
        { name: 'edge', match: { path: '/' }, mode: 'legacy' },
        { name: 'edge.all', match: { path: '/*' }, mode: 'legacy' },
      ],
      'transparency',
    );
    proxy = await startTestProxy(s, backend.url, backend.url);
  });

  after(async () => {
    await proxy.stop();
    await backend.close();
  });

  const get = (path: string, method = 'GET') =>
    rawExchange(proxy.url, `${method} ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);

  it("passes the backend's reason phrase on, for reads and for writes (where it carries Warehouse-style errors)", async () => {
    expect((await get('/reason')).split('\r\n')[0]).to.equal("HTTP/1.1 400 File already exists ('x-1.0.tar.gz'). Use a new version number");
    expect((await get('/reason', 'POST')).split('\r\n')[0]).to.equal(
      "HTTP/1.1 400 File already exists ('x-1.0.tar.gz'). Use a new version number",
    );
    const res = await fetch(`${proxy.url}/reason`);
    expect(res.statusText).to.equal("File already exists ('x-1.0.tar.gz'). Use a new version number");
  });

  it('passes 103 Early Hints on before the final answer', async () => {
    const text = await get('/hints');
    expect(text).to.match(/^HTTP\/1\.1 103 Early Hints\r\n[Ll]ink: <\/style\.css>; rel=preload; as=style\r\n\r\nHTTP\/1\.1 200 OK\r\n/);
  });

  it('passes trailers on', async () => {
    const text = await get('/trailers');
    expect(text.toLowerCase()).to.contain('trailer: x-checksum');
    expect(text).to.match(/\r\n0\r\nx-checksum: abc123\r\n\r\n$/i);
  });

  it('keeps several Set-Cookie headers apart and header values byte for byte', async () => {
    // Header names are case-insensitive (the proxy writes them in lower case); values must arrive unchanged.
    const lines = (await get('/cookies'))
      .split('\r\n\r\n')[0]!
      .split('\r\n')
      .slice(1)
      .map((l) => {
        const colon = l.indexOf(':');
        return [l.slice(0, colon).toLowerCase(), l.slice(colon + 2)];
      });
    expect(lines.filter(([n]) => n === 'set-cookie').map(([, v]) => v)).to.deep.equal(['a=1; Path=/', 'b=2; Path=/']);
    expect(lines.find(([n]) => n === 'x-odd-case')?.[1]).to.equal('Value, with;  inner  spaces');
  });

  describe('and in the other direction: what the client sends reaches the backend as sent', () => {
    const echo = async (request: string) => {
      const raw = await rawExchange(proxy.url, request);
      let body = raw.slice(raw.indexOf('\r\n\r\n') + 4);
      // A chunked answer: one chunk of JSON.
      if (/\r\ntransfer-encoding: chunked\r\n/i.test(raw.slice(0, raw.indexOf('\r\n\r\n') + 2)))
        body = body.slice(body.indexOf('\r\n') + 2, body.lastIndexOf('\r\n0\r\n'));
      return JSON.parse(body) as { url: string; headers: string[]; trailers: string[]; body: string };
    };
    const pairs = (raw: string[]) =>
      raw.reduce<[string, string][]>(
        (out, v, i) => (i % 2 ? [...out.slice(0, -1), [out.at(-1)![0], v]] : [...out, [v.toLowerCase(), '']]),
        [],
      );

    it('keeps header values byte for byte, repeated headers in order, and the query string as written', async () => {
      const seen = await echo(
        'GET /echo/a?b=%2F&c=+&d=%7e&e=%zz&f=%C3%A9 HTTP/1.1\r\nHost: x\r\nX-Odd: Value, with;  inner  spaces\r\n' +
          'X-Thing: one\r\nX-Thing: two\r\nAccept: application/vnd.pypi.simple.v1+json;q=1.0, text/html;q=0.1\r\nUser-Agent: pip/23.2 {"ci":null}\r\nConnection: close\r\n\r\n',
      );
      expect(seen.url).to.equal('/echo/a?b=%2F&c=+&d=%7e&e=%zz&f=%C3%A9');
      const h = pairs(seen.headers);
      expect(h.find(([n]) => n === 'x-odd')?.[1]).to.equal('Value, with;  inner  spaces');
      expect(
        h
          .filter(([n]) => n === 'x-thing')
          .map(([, v]) => v)
          .join(', '),
        'both values, in order',
      ).to.equal('one, two');
      expect(h.find(([n]) => n === 'accept')?.[1]).to.equal('application/vnd.pypi.simple.v1+json;q=1.0, text/html;q=0.1');
      expect(h.find(([n]) => n === 'user-agent')?.[1]).to.equal('pip/23.2 {"ci":null}');
    });

    // Request trailers are not forwarded: undici cannot send them (no HTTP/1.1 client in use here reads them either).
    it('passes a chunked body byte for byte (framing is hop-by-hop; the bytes are not)', async () => {
      const seen = await echo(
        'POST /echo/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\nConnection: close\r\n\r\n' +
          '5\r\nab\r\nc\r\n3\r\n\x00\x7f\n\r\n0\r\nX-Checksum: sha256=abc\r\n\r\n',
      );
      expect(Buffer.from(seen.body, 'base64')).to.deep.equal(Buffer.from('ab\r\nc\x00\x7f\n', 'latin1'));
    });
  });

  it('adds Banyan-Route and Server-Timing only when BANYAN_DEBUG_HEADERS asks for them', async () => {
    const s = await services();
    const plain = (await rawExchange(proxy.url, 'GET /cookies HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).toLowerCase();
    expect(plain, 'off by default: nothing added').to.not.match(/\r\n(banyan-route|server-timing):/);
    const debugging = await startTestProxy(s, backend.url, 'http://127.0.0.1:1', { debugHeaders: true });
    try {
      const head = (path: string) =>
        rawExchange(debugging.url, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`).then((raw) =>
          Object.fromEntries(
            raw
              .split('\r\n\r\n')[0]!
              .split('\r\n')
              .slice(1)
              .map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 2)]),
          ),
        );
      const h = await head('/cookies');
      expect(h['banyan-route']).to.equal('edge.all; mode=legacy; backend=legacy; service=legacy');
      expect(h['server-timing']).to.match(/^legacy;dur=\d+\.\d;desc="edge\.all"$/);
    } finally {
      await debugging.stop();
    }
  });
});
