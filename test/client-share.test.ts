import { expect } from 'chai';
import { clientKey } from '../proxy/client-key.js';
import { ClientShares } from '../proxy/client-share.js';
import { trustedProxies } from '../proxy/headers.js';

describe('client shares: one client address holds at most a share of a service', () => {
  it('counts an IPv6 address by its /64 and an IPv4 address as it is', () => {
    expect(clientKey('203.0.113.7')).to.equal('203.0.113.7');
    expect(clientKey('::ffff:203.0.113.7')).to.equal('::ffff:203.0.113.7');
    expect(clientKey('2001:db8:1:2:aaaa:bbbb:cccc:dddd')).to.equal('2001:db8:1:2::/64');
    expect(clientKey('2001:0db8:0001:0002::1')).to.equal('2001:db8:1:2::/64');
    expect(clientKey('2001:db8::1')).to.equal('2001:db8:0:0::/64');
    expect(clientKey('::1')).to.equal('0:0:0:0::/64');
  });

  it('admits a client up to its share of the capacity, per service, and again when one ends', () => {
    const shares = new ClientShares(25, trustedProxies(undefined));
    const held = Array.from({ length: 32 }, () => shares.enter('legacy', '10.0.0.1', 128));
    expect(held.every((k) => typeof k === 'string')).to.equal(true);
    expect(shares.enter('legacy', '10.0.0.1', 128), 'the 33rd of 128').to.equal(false);
    expect(shares.enter('legacy', '10.0.0.2', 128), 'another client').to.be.a('string');
    expect(shares.enter('app', '10.0.0.1', 128), 'another service').to.be.a('string');
    expect(shares.enter('legacy', '2001:db8:1:2::1', 4)).to.be.a('string');
    expect(shares.enter('legacy', '2001:db8:1:2::2', 4), 'the same /64, over a share of 1').to.equal(false);
    shares.leave(held[0] as string);
    expect(shares.enter('legacy', '10.0.0.1', 128)).to.be.a('string');
  });

  it("does not limit a trusted proxy's own address, nor anyone at 100 %", () => {
    expect(new ClientShares(25, trustedProxies('10.0.0.9')).enter('legacy', '10.0.0.9', 1)).to.equal(undefined);
    expect(new ClientShares(100, trustedProxies(undefined)).enter('legacy', '10.0.0.1', 1)).to.equal(undefined);
  });
});
