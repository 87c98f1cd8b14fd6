import { expect } from 'chai';
import { parseArgs } from '../bin/args.js';

describe('command-line arguments', () => {
  it('separates words, valued flags and switches', () => {
    const a = parseArgs(['up', '--since', '30d', '--json', '--replica-delay=2s'], ['since', 'replica-delay'], ['json']);
    expect(a.words).to.deep.equal(['up']);
    expect(a.flags.get('since')).to.equal('30d');
    expect(a.flags.get('replica-delay')).to.equal('2s');
    expect(a.flags.get('json')).to.equal(true);
  });

  it('rejects unknown flags and lists the known ones', () => {
    expect(() => parseArgs(['--jsn'], [], ['json'])).to.throw('unknown option --jsn').with.property('hint', 'options here: --json');
  });

  it('rejects a valued flag without a value', () => {
    expect(() => parseArgs(['--since'], ['since'], [])).to.throw('--since needs a value');
  });
});
