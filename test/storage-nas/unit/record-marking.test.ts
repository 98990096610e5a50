import { expect } from 'chai';
import { encodeRecord, RecordDecoder } from '@motus/storage-nas';
import { prng, randomBytes } from '../../support/index.js';

function fragment(payload: Buffer, last: boolean): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(((last ? 0x80000000 : 0) | payload.length) >>> 0, 0);
  return Buffer.concat([h, payload]);
}

describe('storage-nas RPC record marking', () => {
  it('frames a record as one last fragment', () => {
    const rec = encodeRecord(Buffer.from('abcd'));
    expect(rec.readUInt32BE(0)).to.equal(0x80000004);
    const d = new RecordDecoder(1024);
    expect(d.push(rec).records).to.deep.equal([Buffer.from('abcd')]);
  });

  it('reassembles multi-fragment records split at every byte offset', () => {
    const a = Buffer.from('first-fragment..');
    const b = Buffer.from('second');
    const stream = Buffer.concat([fragment(a, false), fragment(b, true), encodeRecord(Buffer.from('next'))]);
    for (let cut = 0; cut <= stream.length; cut++) {
      const d = new RecordDecoder(1024);
      const r1 = d.push(stream.subarray(0, cut));
      const r2 = d.push(stream.subarray(cut));
      const records = [...r1.records, ...r2.records];
      expect(records.map((r) => r.toString()), `cut ${cut}`).to.deep.equal(['first-fragment..second', 'next']);
      expect(d.buffered).to.equal(0);
    }
  });

  it('reassembles a stream fed one byte at a time and in random chunks', () => {
    const next = prng(11);
    const payloads = Array.from({ length: 20 }, (_, i) => randomBytes(next, i * 37));
    const stream = Buffer.concat(payloads.map((p) => encodeRecord(p)));
    const byByte = new RecordDecoder(4096);
    const got: Buffer[] = [];
    for (let i = 0; i < stream.length; i++) got.push(...byByte.push(stream.subarray(i, i + 1)).records);
    expect(got).to.deep.equal(payloads);
    const chunked = new RecordDecoder(4096);
    const got2: Buffer[] = [];
    for (let i = 0; i < stream.length; ) {
      const n = 1 + Math.floor(next() * 300);
      got2.push(...chunked.push(stream.subarray(i, i + n)).records);
      i += n;
    }
    expect(got2).to.deep.equal(payloads);
  });

  it('accepts zero-length fragments', () => {
    const d = new RecordDecoder(64);
    const res = d.push(Buffer.concat([fragment(Buffer.alloc(0), false), fragment(Buffer.from('ok!!'), true)]));
    expect(res.records.map(String)).to.deep.equal(['ok!!']);
  });

  it('fails once a record would pass the limit, from the header alone, and stays failed', () => {
    const d = new RecordDecoder(100);
    const res = d.push(Buffer.from([0xff, 0xff, 0xff, 0xff]));
    expect(res.error).to.deep.equal({ kind: 'record-too-large', size: 0x7fffffff, limit: 100 });
    expect(d.push(encodeRecord(Buffer.from('late'))).error?.kind).to.equal('record-too-large');
    // Fragments that add up past the limit fail too.
    const d2 = new RecordDecoder(100);
    const r2 = d2.push(Buffer.concat([fragment(Buffer.alloc(60), false), fragment(Buffer.alloc(60), true)]));
    expect(r2.error?.kind).to.equal('record-too-large');
  });

  it('never throws on garbage streams and holds back at most what it was given', () => {
    const next = prng(5);
    for (let i = 0; i < 3000; i++) {
      const d = new RecordDecoder(1 << 16);
      const buf = randomBytes(next, Math.floor(next() * 64));
      const res = d.push(buf);
      expect(res.records.length).to.be.at.most(16);
      expect(d.buffered).to.be.at.most(buf.length);
    }
  });
});
