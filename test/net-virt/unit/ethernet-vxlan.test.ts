import { expect } from 'chai';
import { decodeVxlan, encodeVxlan, isGroupAddress, normalizeMac, parseEthernet, popVlanTag, pushVlanTag } from '@motus/net-virt';
import { ethFrame } from '../support/frames.js';
import { prng, randomBytes } from '../../support/index.js';

describe('net-virt Ethernet and 802.1Q', () => {
  it('parses untagged and tagged headers', () => {
    const frame = ethFrame('ff:ff:ff:ff:ff:ff', '52:54:00:12:34:56', 60, 0x8035);
    expect(parseEthernet(frame)).to.deep.equal({ dst: 'ff:ff:ff:ff:ff:ff', src: '52:54:00:12:34:56', etherType: 0x8035, payloadOffset: 14 });
    const tagged = pushVlanTag(frame, 42);
    expect(tagged.length).to.equal(64);
    expect(parseEthernet(tagged)).to.deep.equal({ dst: 'ff:ff:ff:ff:ff:ff', src: '52:54:00:12:34:56', vlan: 42, etherType: 0x8035, payloadOffset: 18 });
    expect(popVlanTag(tagged).equals(frame)).to.equal(true);
    expect(popVlanTag(frame)).to.equal(frame);
  });

  it('answers undefined, never throws, for frames too short', () => {
    for (let n = 0; n < 14; n++) expect(parseEthernet(Buffer.alloc(n))).to.equal(undefined);
    const cutTag = Buffer.alloc(16);
    cutTag.writeUInt16BE(0x8100, 12);
    expect(parseEthernet(cutTag)).to.equal(undefined);
  });

  it('tells group addresses and normalises MACs', () => {
    expect(isGroupAddress(ethFrame('01:00:5e:00:00:01', '02:00:00:00:00:01'))).to.equal(true);
    expect(isGroupAddress(ethFrame('02:00:00:00:00:02', '02:00:00:00:00:01'))).to.equal(false);
    expect(normalizeMac('52-54-00-AB-CD-EF')).to.equal('52:54:00:ab:cd:ef');
    expect(normalizeMac('52:54:00:ab:cd')).to.equal(undefined);
  });
});

describe('net-virt VXLAN header (RFC 7348)', () => {
  it('encodes flags, VNI and reserved bits as the RFC lays them out', () => {
    const frame = ethFrame('02:00:00:00:00:01', '02:00:00:00:00:02', 60);
    const d = encodeVxlan(0xabcdef, frame);
    expect(d.subarray(0, 8).toString('hex')).to.equal('08000000abcdef00');
    const back = decodeVxlan(d);
    expect(back.ok).to.equal(true);
    if (back.ok) {
      expect(back.vni).to.equal(0xabcdef);
      expect(back.frame.equals(frame)).to.equal(true);
    }
  });

  it('refuses short datagrams, a missing I flag and inner frames too short, with a typed error', () => {
    expect(decodeVxlan(Buffer.alloc(7))).to.deep.equal({ ok: false, error: 'short' });
    expect(decodeVxlan(Buffer.alloc(30))).to.deep.equal({ ok: false, error: 'no-vni-flag' });
    expect(decodeVxlan(encodeVxlan(1, Buffer.alloc(0)))).to.deep.equal({ ok: false, error: 'short-inner-frame' });
  });

  it('never throws on generated garbage datagrams', () => {
    const next = prng(7);
    for (let i = 0; i < 5000; i++) {
      const r = decodeVxlan(randomBytes(next, Math.floor(next() * 80)));
      if (r.ok) {
        expect(r.vni).to.be.within(0, 0xffffff);
        expect(r.frame.length).to.be.at.least(14);
      }
    }
  });
});
