import { expect } from 'chai';
import { checkAnswer, decodeChapValue, chapResponse, parseSendTargets, respond } from '@motus/storage-iscsi';

const answer = (key: string, offered: string, got: string): string | undefined => {
  const r = checkAnswer(key, offered, got);
  return r.ok ? r.value : undefined;
};
const reply = (key: string, theirs: string, ours: string): string | undefined => {
  const r = respond(key, theirs, ours);
  return r.ok ? r.value : undefined;
};

describe('RFC 7143 negotiation rules', () => {
  it('MaxBurstLength, FirstBurstLength, MaxOutstandingR2T, ErrorRecoveryLevel, DefaultTime2Retain take the minimum', () => {
    expect(reply('MaxBurstLength', '1048576', '262144')).to.equal('262144');
    expect(reply('FirstBurstLength', '8192', '65536')).to.equal('8192');
    expect(reply('MaxOutstandingR2T', '4', '1')).to.equal('1');
    expect(reply('ErrorRecoveryLevel', '2', '0')).to.equal('0');
    expect(reply('DefaultTime2Retain', '20', '0')).to.equal('0');
    expect(answer('MaxBurstLength', '262144', '65536')).to.equal('65536');
    expect(answer('MaxBurstLength', '262144', '262145'), 'an answer above the offer breaks the min rule').to.equal(undefined);
  });

  it('DefaultTime2Wait takes the maximum', () => {
    expect(reply('DefaultTime2Wait', '0', '2')).to.equal('2');
    expect(answer('DefaultTime2Wait', '2', '0')).to.equal(undefined);
    expect(answer('DefaultTime2Wait', '0', '2')).to.equal('2');
  });

  it('InitialR2T, DataPDUInOrder, DataSequenceInOrder are a Boolean OR; ImmediateData an AND', () => {
    expect(reply('InitialR2T', 'No', 'Yes')).to.equal('Yes');
    expect(reply('InitialR2T', 'No', 'No')).to.equal('No');
    expect(answer('InitialR2T', 'Yes', 'No')).to.equal(undefined);
    expect(answer('InitialR2T', 'No', 'Yes')).to.equal('Yes');
    expect(reply('DataPDUInOrder', 'No', 'Yes')).to.equal('Yes');
    expect(reply('DataSequenceInOrder', 'Yes', 'No')).to.equal('Yes');
    expect(reply('ImmediateData', 'Yes', 'No')).to.equal('No');
    expect(answer('ImmediateData', 'No', 'Yes')).to.equal(undefined);
    expect(answer('ImmediateData', 'Yes', 'No')).to.equal('No');
  });

  it('digests pick the first of the offerer list the responder accepts', () => {
    expect(reply('HeaderDigest', 'CRC32C,None', 'None,CRC32C')).to.equal('None');
    expect(reply('HeaderDigest', 'CRC32C,None', 'CRC32C')).to.equal('CRC32C');
    expect(reply('DataDigest', 'CRC32C', 'None')).to.equal('Reject');
    expect(answer('HeaderDigest', 'CRC32C', 'None')).to.equal(undefined);
    expect(answer('HeaderDigest', 'CRC32C,None', 'None')).to.equal('None');
  });

  it('MaxRecvDataSegmentLength is declarative and range-checked', () => {
    expect(reply('MaxRecvDataSegmentLength', '65536', '8192')).to.equal('65536');
    expect(reply('MaxRecvDataSegmentLength', '511', '8192')).to.equal(undefined);
    expect(reply('MaxRecvDataSegmentLength', '16777216', '8192')).to.equal(undefined);
  });

  it('MaxConnections takes the minimum; garbage and out-of-range numbers fail', () => {
    expect(reply('MaxConnections', '8', '1')).to.equal('1');
    expect(reply('MaxBurstLength', 'lots', '1')).to.equal(undefined);
    expect(reply('MaxBurstLength', '100', '262144')).to.equal(undefined);
    expect(reply('InitialR2T', 'Maybe', 'Yes')).to.equal(undefined);
    expect(reply('X-vendor-key', 'v', 'v')).to.equal('NotUnderstood');
  });

  it('Irrelevant keeps the offer, NotUnderstood falls back to the default', () => {
    expect(answer('FirstBurstLength', '65536', 'Irrelevant')).to.equal('65536');
    expect(answer('MaxBurstLength', '1048576', 'NotUnderstood')).to.equal('262144');
  });
});

describe('CHAP', () => {
  it('computes MD5(id || secret || challenge) as RFC 1994 defines', () => {
    // id 0x01, secret "secret", challenge 00 01 02 03: md5(01 73 65 63 72 65 74 00 01 02 03)
    const r = chapResponse(1, 'secret', Buffer.from([0, 1, 2, 3]));
    // Value from Python's hashlib over the same bytes.
    expect(r.toString('hex')).to.equal('e82cb2ed1efe04893c9cf73d4dd12e2d');
  });

  it('decodes hex and base64 binary values, and refuses anything else', () => {
    expect(decodeChapValue('0x0a0B')!.toString('hex')).to.equal('0a0b');
    expect(decodeChapValue('0xabc')!.toString('hex')).to.equal('0abc');
    expect(decodeChapValue('0bAAEC')!.toString('hex')).to.equal('000102');
    expect(decodeChapValue('abc')).to.equal(undefined);
    expect(decodeChapValue('0x')).to.equal(undefined);
    expect(decodeChapValue('0xzz')).to.equal(undefined);
  });
});

describe('SendTargets answers', () => {
  it('groups addresses under their target, IPv6 and default port included', () => {
    expect(parseSendTargets([
      ['TargetAddress', 'orphan:1'],
      ['TargetName', 'iqn.a'], ['TargetAddress', '10.0.0.1:3261,2'], ['TargetAddress', '[fe80::1]:3260,1'],
      ['TargetName', 'iqn.b'], ['TargetAddress', 'host'], ['TargetAddress', 'bad:addr:x,y'],
    ])).to.deep.equal([
      { name: 'iqn.a', portals: [{ host: '10.0.0.1', port: 3261, tpgt: 2 }, { host: 'fe80::1', port: 3260, tpgt: 1 }] },
      { name: 'iqn.b', portals: [{ host: 'host', port: 3260 }] },
    ]);
  });
});
