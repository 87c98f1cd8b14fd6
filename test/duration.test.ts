import { expect } from 'chai';
import { parseDuration } from '../lib/duration.js';

describe('parseDuration', () => {
  it('reads each unit, and bare numbers as milliseconds', () => {
    expect(parseDuration('250ms', 'x')).to.equal(250);
    expect(parseDuration('2s', 'x')).to.equal(2_000);
    expect(parseDuration('1.5m', 'x')).to.equal(90_000);
    expect(parseDuration('1h', 'x')).to.equal(3_600_000);
    expect(parseDuration('30d', 'x')).to.equal(2_592_000_000);
    expect(parseDuration('40', 'x')).to.equal(40);
  });

  it('names the setting and shows the bad value', () => {
    expect(() => parseDuration('two seconds', '--replica-delay')).to.throw(
      '--replica-delay must be a duration like 500ms, 2s or 1m, not "two seconds"',
    );
    expect(() => parseDuration('-1s', '--replica-delay')).to.throw(/--replica-delay/);
  });
});
