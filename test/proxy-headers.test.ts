import { expect } from 'chai';
import { acceptableRequestId, clientInfo, clientResponseHeaders, trustedProxies, upstreamRequestHeaders } from '../proxy/headers.js';

const client = {
  ip: '127.0.0.7',
  forwardedFor: '127.0.0.7',
  proto: 'http',
  host: 'index.example',
  forwardedHost: 'index.example',
  requestId: 'req-1',
};

describe('proxy headers', () => {
  it('drops hop-by-hop headers, including those named in Connection', () => {
    const out = upstreamRequestHeaders(
      {
        connection: 'keep-alive, x-secret-hop',
        'keep-alive': 'timeout=5',
        'x-secret-hop': '1',
        te: 'trailers',
        'transfer-encoding': 'chunked',
        upgrade: 'h2c',
        expect: '100-continue',
        accept: 'text/html',
      },
      client,
    );
    expect(out).to.not.have.any.keys('connection', 'keep-alive', 'x-secret-hop', 'te', 'transfer-encoding', 'upgrade', 'expect');
    expect(out['accept']).to.equal('text/html');
  });

  it('removes every client-sent X-Banyan-* and forwarding header and sets its own', () => {
    const out = upstreamRequestHeaders(
      {
        'x-banyan-min-lsn': '0/FFFFFFFF',
        'x-banyan-anything': 'x',
        'x-forwarded-for': '6.6.6.6',
        forwarded: 'for=6.6.6.6',
        'x-forwarded-host': 'evil',
        'x-request-id': 'client-id',
        host: 'index.example',
        'banyan-pin': 'v1.the-proxy-reads-this',
        'x-banyan-client': '6.6.6.6',
      },
      client,
    );
    expect(out, 'the pin header is for the proxy, not the backends').to.not.have.any.keys(
      'x-banyan-min-lsn',
      'x-banyan-anything',
      'forwarded',
      'banyan-pin',
    );
    expect(out['x-forwarded-for']).to.equal('127.0.0.7');
    expect(out['x-forwarded-proto']).to.equal('http');
    expect(out['x-forwarded-host']).to.equal('index.example');
    expect(out['x-request-id']).to.equal('req-1');
    expect(out['x-banyan-client'], 'logins are counted by the address the proxy saw').to.equal('127.0.0.7');
  });

  it('keeps the write LSN away from clients and adds the request id', () => {
    const raw = [
      'X-Banyan-Write-Lsn',
      '0/1',
      'Content-Type',
      'text/html',
      'Connection',
      'close',
      'Transfer-Encoding',
      'chunked',
      'X-Request-Id',
      'backend-id',
    ];
    expect(
      clientResponseHeaders(
        raw.map((h) => Buffer.from(h, 'latin1')),
        'req-1',
      ),
    ).to.deep.equal({ 'Content-Type': 'text/html', 'x-request-id': 'req-1' });
  });

  it("keeps the backend's spelling and repeats of response headers, and drops the ones Connection names", () => {
    const raw = [
      'Set-Cookie',
      'a=1',
      'set-cookie',
      'b=2',
      'Set-Cookie',
      'c=3',
      'Connection',
      'close, X-Hop',
      'x-hop',
      'secret',
      'ETag',
      '"v1"',
    ];
    expect(clientResponseHeaders(raw, 'req-1')).to.deep.equal({
      'Set-Cookie': ['a=1', 'c=3'],
      'set-cookie': 'b=2',
      ETag: '"v1"',
      'x-request-id': 'req-1',
    });
  });

  it('accepts only short, plain request ids from clients', () => {
    expect(acceptableRequestId('abc-123_x.y:z')).to.equal('abc-123_x.y:z');
    expect(acceptableRequestId('has space')).to.equal(undefined);
    expect(acceptableRequestId('x'.repeat(129))).to.equal(undefined);
    expect(acceptableRequestId(['a', 'b'])).to.equal(undefined);
  });
});

describe('trusted proxies', () => {
  const trusted = trustedProxies('10.0.0.0/8, 127.0.0.1, ::1');
  const headers = {
    host: 'pypi.example.org',
    'x-forwarded-for': '203.0.113.9, 10.1.1.1',
    'x-forwarded-proto': 'https',
    'x-forwarded-host': 'pypi.org',
  };

  it('believes forwarding headers from a trusted hop and extends the chain', () => {
    const c = clientInfo(headers, '10.2.3.4', false, trusted, 'r');
    expect(c).to.deep.equal({
      ip: '203.0.113.9',
      forwardedFor: '203.0.113.9, 10.1.1.1, 10.2.3.4',
      proto: 'https',
      host: 'pypi.example.org',
      forwardedHost: 'pypi.org',
      requestId: 'r',
    });
    expect(clientInfo(headers, '::ffff:10.9.9.9', false, trusted, 'r').ip).to.equal('203.0.113.9');
  });

  it('takes the client as the rightmost untrusted hop, so an address the client wrote itself is not believed', () => {
    const forged = { ...headers, 'x-forwarded-for': '1.2.3.4, 198.51.100.7, 10.1.1.1' };
    const c = clientInfo(forged, '10.2.3.4', false, trusted, 'r');
    expect(c.ip, 'the balancer saw 198.51.100.7; 1.2.3.4 came from the client').to.equal('198.51.100.7');
    expect(c.forwardedFor).to.equal('1.2.3.4, 198.51.100.7, 10.1.1.1, 10.2.3.4');
    expect(
      clientInfo({ ...headers, 'x-forwarded-for': '10.1.1.1, 127.0.0.1' }, '10.2.3.4', false, trusted, 'r').ip,
      'all trusted: the leftmost',
    ).to.equal('10.1.1.1');
    expect(clientInfo({ ...headers, 'x-forwarded-for': ' , ' }, '10.2.3.4', false, trusted, 'r').ip, 'an empty chain: the peer').to.equal(
      '10.2.3.4',
    );
  });

  it('discards them from anyone else', () => {
    const c = clientInfo(headers, '192.0.2.1', false, trusted, 'r');
    expect(c).to.deep.equal({
      ip: '192.0.2.1',
      forwardedFor: '192.0.2.1',
      proto: 'http',
      host: 'pypi.example.org',
      forwardedHost: 'pypi.example.org',
      requestId: 'r',
    });
  });

  it('rejects a malformed entry, naming it', () => {
    expect(() => trustedProxies('10.0.0.0/40')).to.throw('"10.0.0.0/40" is not an address or an IPv4 CIDR block');
  });
});
