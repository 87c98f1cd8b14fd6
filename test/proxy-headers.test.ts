import { expect } from 'chai';
import { acceptableRequestId, clientResponseHeaders, upstreamRequestHeaders } from '../proxy/headers.js';
import { decide, DEFAULT_ROUTES } from '../proxy/route-table.js';

const client = { ip: '127.0.0.7', proto: 'http' as const, host: 'index.example', requestId: 'req-1' };

describe('proxy headers', () => {
  it('drops hop-by-hop headers, including those named in Connection', () => {
    const out = upstreamRequestHeaders({
      connection: 'keep-alive, x-secret-hop', 'keep-alive': 'timeout=5', 'x-secret-hop': '1', te: 'trailers',
      'transfer-encoding': 'chunked', upgrade: 'h2c', expect: '100-continue', accept: 'text/html',
    }, client);
    expect(out).to.not.have.any.keys('connection', 'keep-alive', 'x-secret-hop', 'te', 'transfer-encoding', 'upgrade', 'expect');
    expect(out['accept']).to.equal('text/html');
  });

  it('removes every client-sent X-Banyan-* and forwarding header and sets its own', () => {
    const out = upstreamRequestHeaders({
      'x-banyan-min-lsn': '0/FFFFFFFF', 'x-banyan-anything': 'x', 'x-forwarded-for': '6.6.6.6', forwarded: 'for=6.6.6.6',
      'x-forwarded-host': 'evil', 'x-request-id': 'client-id', host: 'index.example',
    }, client);
    expect(out).to.not.have.any.keys('x-banyan-min-lsn', 'x-banyan-anything', 'forwarded');
    expect(out['x-forwarded-for']).to.equal('127.0.0.7');
    expect(out['x-forwarded-proto']).to.equal('http');
    expect(out['x-forwarded-host']).to.equal('index.example');
    expect(out['x-request-id']).to.equal('req-1');
  });

  it('keeps the write LSN away from clients and adds the request id', () => {
    const out = clientResponseHeaders({ 'x-banyan-write-lsn': '0/1', 'content-type': 'text/html', connection: 'close', 'transfer-encoding': 'chunked' }, 'req-1');
    expect(out).to.deep.equal({ 'content-type': 'text/html', 'x-request-id': 'req-1' });
  });

  it('accepts only short, plain request ids from clients', () => {
    expect(acceptableRequestId('abc-123_x.y:z')).to.equal('abc-123_x.y:z');
    expect(acceptableRequestId('has space')).to.equal(undefined);
    expect(acceptableRequestId('x'.repeat(129))).to.equal(undefined);
    expect(acceptableRequestId(['a', 'b'])).to.equal(undefined);
  });
});

describe('skeleton route table', () => {
  it('sends the simple API to the new app and everything else to legacy', () => {
    expect(decide(DEFAULT_ROUTES, '/simple/')).to.deep.equal({ route: 'simple', backend: 'new' });
    expect(decide(DEFAULT_ROUTES, '/simple/requests/')).to.deep.equal({ route: 'simple', backend: 'new' });
    expect(decide(DEFAULT_ROUTES, '/simple')).to.deep.equal({ route: 'simple', backend: 'new' });
    expect(decide(DEFAULT_ROUTES, '/')).to.deep.equal({ route: 'legacy.other', backend: 'legacy' });
    expect(decide(DEFAULT_ROUTES, '/simplex')).to.deep.equal({ route: 'legacy.other', backend: 'legacy' });
  });
});
