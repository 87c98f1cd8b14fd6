import { expect } from 'chai';
import { BanyanError, httpStatusOf } from '../lib/errors.js';
import { rawAnswer } from '../proxy/raw-answer.js';

describe('answers written straight to a socket, and the status of each error', () => {
  it('sends the standard reason, the body length in bytes (not characters), extra headers, and closes', () => {
    const body = '503 Service Unavailable: no endpoint of the café service is taking requests.\n';
    const answer = rawAnswer(503, body, { 'Retry-After': '5' });
    const [head, sent] = answer.split('\r\n\r\n') as [string, string];
    expect(head.split('\r\n')).to.deep.equal([
      'HTTP/1.1 503 Service Unavailable',
      'Content-Type: text/plain; charset=utf-8',
      `Content-Length: ${Buffer.byteLength(body)}`,
      'Retry-After: 5',
      'Connection: close',
    ]);
    expect(Buffer.byteLength(body)).to.equal(body.length + 1);
    expect(sent).to.equal(body);
    expect(rawAnswer(410, 'gone\n').split('\r\n')[0]).to.equal('HTTP/1.1 410 Gone');
  });

  it('gives each refusal one HTTP status, whichever listener answers, and none to other errors', () => {
    const status = (code: string) => httpStatusOf(new BanyanError(code, 'x'));
    expect(
      ['bad-request', 'unauthorized', 'forbidden', 'no-such-route', 'version-conflict', 'too-large', 'reason-required'].map(status),
    ).to.deep.equal([400, 401, 403, 404, 409, 413, 422]);
    expect(status('already-paused'), 'a plan already paused conflicts with the request').to.equal(409);
    expect(status('migration-failed'), 'an error with no status of its own').to.equal(undefined);
    expect(httpStatusOf(new Error('bad-request'))).to.equal(undefined);
  });
});
