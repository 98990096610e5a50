import { expect } from 'chai';
import { decodeLock, encodeLock, isNasError } from '@motus/storage-nas';
import { prng, randomBytes } from '../../support/index.js';

describe('storage-nas lock file format', () => {
  it('round-trips and always has the same size, so a refresh is one WRITE', () => {
    const a = encodeLock({ owner: 'host-a', token: 'ab12', seq: 0 });
    const b = encodeLock({ owner: 'a-much-longer-host-name.example.org', token: 'ffffffffffffffffffffffff', seq: 123456789 });
    expect(a.length).to.equal(256);
    expect(b.length).to.equal(256);
    expect(decodeLock(a)).to.deep.equal({ owner: 'host-a', token: 'ab12', seq: 0 });
    expect(decodeLock(b)!.seq).to.equal(123456789);
  });

  it('reads torn, empty, foreign or garbage files as no valid lock, never throwing', () => {
    const good = encodeLock({ owner: 'h', token: 't', seq: 1 });
    const jsonEnd = good.indexOf('}') + 1;
    for (let cut = 0; cut < jsonEnd; cut++) expect(decodeLock(good.subarray(0, cut)), `cut ${cut}`).to.equal(undefined);
    expect(decodeLock(good.subarray(0, jsonEnd))).to.deep.equal({ owner: 'h', token: 't', seq: 1 });
    expect(decodeLock(Buffer.from('{"v":2,"owner":"h","token":"t","seq":1}'))).to.equal(undefined);
    expect(decodeLock(Buffer.from('{"v":1,"owner":5,"token":"t","seq":1}'))).to.equal(undefined);
    const next = prng(9);
    for (let i = 0; i < 500; i++) expect(decodeLock(randomBytes(next, Math.floor(next() * 300)))).to.equal(undefined);
  });

  it('refuses a host name too long for the fixed-size file', () => {
    let err: unknown;
    try {
      encodeLock({ owner: 'x'.repeat(300), token: 't', seq: 0 });
    } catch (e) {
      err = e;
    }
    expect(isNasError(err, 'MOTUS_E_INVALID_REQUEST')).to.equal(true);
  });
});
