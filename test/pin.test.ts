import { expect } from 'chai';
import { cookieValue, signPin, verifyPin } from '../proxy/pin.js';
import { formatLsn, parseLsn } from '../lib/lsn.js';

describe('LSNs', () => {
  it('parse and format PostgreSQL WAL positions, and compare as numbers', () => {
    expect(parseLsn('16/B374D848')).to.equal(0x16b374d848n);
    expect(formatLsn(0x16b374d848n)).to.equal('16/B374D848');
    expect(parseLsn('0/0')).to.equal(0n);
    expect(parseLsn('1/0')! > parseLsn('0/FFFFFFFF')!).to.equal(true);
    for (const bad of ['', '16', '16/', 'x/1', '1/2/3', '123456789/0']) expect(parseLsn(bad), bad).to.equal(undefined);
  });
});

describe('pin cookies', () => {
  const now = Date.parse('2026-11-21T12:00:00Z');
  const pin = { id: 'abcdefgh12345678', lsn: 0x3000060n, expires: now + 30_000 };

  it('round-trips through signing and verification', () => {
    const value = signPin(pin, 'secret-one-1234567890');
    expect(value).to.match(/^v1\.abcdefgh12345678\.0\/3000060\.\d+\.[A-Za-z0-9_-]{43}$/);
    expect(verifyPin(value, ['secret-one-1234567890'], now)).to.deep.equal({ ok: true, pin });
  });

  it('accepts the previous secret during rotation', () => {
    const value = signPin(pin, 'old-secret-1234567890');
    expect(verifyPin(value, ['new-secret-1234567890', 'old-secret-1234567890'], now).ok).to.equal(true);
    expect(verifyPin(value, ['new-secret-1234567890'], now)).to.deep.equal({ ok: false, reason: 'forged' });
  });

  it('rejects tampering, expiry and garbage', () => {
    const value = signPin(pin, 's-1234567890123456');
    const tampered = value.replace('0/3000060', '0/3000061');
    expect(verifyPin(tampered, ['s-1234567890123456'], now)).to.deep.equal({ ok: false, reason: 'forged' });
    const later = value.replace(String(pin.expires), String(pin.expires + 1_000_000));
    expect(verifyPin(later, ['s-1234567890123456'], now)).to.deep.equal({ ok: false, reason: 'forged' });
    expect(verifyPin(value, ['s-1234567890123456'], pin.expires)).to.deep.equal({ ok: false, reason: 'expired' });
    expect(verifyPin('nonsense', ['s-1234567890123456'], now)).to.deep.equal({ ok: false, reason: 'malformed' });
  });

  it('supports timed pins, which carry no LSN', () => {
    const value = signPin({ ...pin, lsn: undefined }, 's-1234567890123456');
    expect(verifyPin(value, ['s-1234567890123456'], now)).to.deep.equal({ ok: true, pin: { ...pin, lsn: undefined } });
  });

  it('finds one cookie in a Cookie header', () => {
    expect(cookieValue('a=1; banyan_pin=v1.x; b=2', 'banyan_pin')).to.equal('v1.x');
    expect(cookieValue('xbanyan_pin=no; banyan_pin=yes', 'banyan_pin')).to.equal('yes');
    expect(cookieValue('a=1', 'banyan_pin')).to.equal(undefined);
    expect(cookieValue(undefined, 'banyan_pin')).to.equal(undefined);
  });
});

describe('pins with a timeline', () => {
  const now = Date.parse('2026-11-21T12:00:00Z');
  const pin = { id: 'abcdefgh12345678', lsn: 0x3000060n, timeline: 3, expires: now + 30_000 };
  const secret = 's-1234567890123456';

  it('carry the timeline with the LSN, signed with it', () => {
    const value = signPin(pin, secret);
    expect(value.startsWith('v2.abcdefgh12345678.0/3000060.3.')).to.equal(true);
    expect(verifyPin(value, [secret], now)).to.deep.equal({ ok: true, pin });
    const otherTimeline = value.replace('.3.', '.4.');
    expect(verifyPin(otherTimeline, [secret], now)).to.deep.equal({ ok: false, reason: 'forged' });
  });

  it('still read the pins issued before timelines (v1), with no timeline', () => {
    const { timeline: _, ...old } = pin;
    const value = signPin(old, secret);
    expect(value.startsWith('v1.')).to.equal(true);
    expect(verifyPin(value, [secret], now)).to.deep.equal({ ok: true, pin: old });
  });
});
