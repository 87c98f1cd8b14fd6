import { expect } from 'chai';
import { quoted } from '../lib/quoted.js';

describe("quoted: client text in an operator's message", () => {
  it('quotes ordinary text as it is, non-ASCII letters included', () => {
    expect(quoted('pip/24.0 {"python":"3.12"}')).to.equal('"pip/24.0 {\\"python\\":\\"3.12\\"}"');
    expect(quoted('curl/8.5 café 日本')).to.equal('"curl/8.5 café 日本"');
    expect(quoted('')).to.equal('""');
  });

  it('cannot forge a line: newlines, carriage returns and separators are escaped', () => {
    const forged = quoted('pip/24\nautopilot: plan 7 finished\r\u2028done\u2029');
    expect(forged).to.equal('"pip/24\\nautopilot: plan 7 finished\\r\\u{2028}done\\u{2029}"');
    expect(forged).to.not.match(/[\n\r\u2028\u2029]/);
  });

  it('escapes ANSI escapes, every other control character, DEL and C1', () => {
    expect(quoted('\x1b[2J\x1b[31mred\x07\x00\x7f\x9b')).to.equal('"\\x1b[2J\\x1b[31mred\\x07\\x00\\x7f\\x9b"');
    expect(quoted('a\tb\\c')).to.equal('"a\\tb\\\\c"');
  });

  it('escapes bidirectional overrides and invisible characters, which reorder or hide text', () => {
    expect(quoted('abc\u202edcba\u2066x\u200by\ufeff')).to.equal('"abc\\u{202e}dcba\\u{2066}x\\u{200b}y\\u{feff}"');
  });

  it('cuts long text to max characters, counted in code points, and says so', () => {
    expect(quoted('x'.repeat(300))).to.equal(`"${'x'.repeat(200)}…"`);
    expect(quoted('😀😀😀', 2)).to.equal('"😀😀…"');
    expect(quoted('ab', 2)).to.equal('"ab"');
  });
});
