import { expect } from 'chai';
import {
  decodeCall,
  decodeReply,
  decodeXdr,
  encodeCall,
  encodeReply,
  readFattr3,
  readPostOpAttr,
  readWccData,
  XdrWriter,
  type XdrReader,
} from '@motus/storage-nas';
import { prng, randomBytes } from '../../support/index.js';

function fattr3(w: XdrWriter, size: number): XdrWriter {
  w.uint32(1).uint32(0o100644).uint32(1).uint32(1000).uint32(1000).uint64(size).uint64(size).uint32(0).uint32(0).uint64(42n).uint64(7n);
  for (let i = 0; i < 3; i++) w.uint32(1_700_000_000 + i).uint32(500);
  return w;
}

/** A message using every XDR shape the client decodes. */
function sampleMessage(): { buf: Buffer; decode: (r: XdrReader) => unknown } {
  const w = new XdrWriter().uint32(7).int32(-3).uint64(2n ** 40n).bool(true).string('disk.img').opaque(Buffer.from([1, 2, 3])).fixedOpaque(Buffer.alloc(8, 9));
  w.uint32(2).uint32(11).uint32(12);
  fattr3(w.bool(true), 4096);
  const buf = w.toBuffer();
  const decode = (r: XdrReader) => ({
    a: r.uint32(),
    b: r.int32(),
    c: r.uint64(),
    d: r.bool(),
    e: r.string(255),
    f: r.opaque(64),
    g: r.fixedOpaque(8),
    h: r.array(16, (x) => x.uint32()),
    i: readPostOpAttr(r),
  });
  return { buf, decode };
}

describe('storage-nas XDR codec', () => {
  it('round-trips every primitive with padding', () => {
    const { buf, decode } = sampleMessage();
    const res = decodeXdr(buf, decode, true);
    expect(res.ok).to.equal(true);
    if (!res.ok) return;
    const v = res.value as Record<string, unknown>;
    expect(v.a).to.equal(7);
    expect(v.b).to.equal(-3);
    expect(v.c).to.equal(2n ** 40n);
    expect(v.d).to.equal(true);
    expect(v.e).to.equal('disk.img');
    expect(v.f).to.deep.equal(Buffer.from([1, 2, 3]));
    expect(v.h).to.deep.equal([11, 12]);
    expect((v.i as { size: number }).size).to.equal(4096);
    // 'disk.img' is 8 bytes: no pad; 3-byte opaque pads to 4.
    expect(buf.length % 4).to.equal(0);
  });

  it('returns a truncated error, never throws, for the message cut at every offset', () => {
    const { buf, decode } = sampleMessage();
    for (let cut = 0; cut < buf.length; cut++) {
      const res = decodeXdr(buf.subarray(0, cut), decode);
      expect(res.ok, `cut at ${cut}`).to.equal(false);
      if (!res.ok) {
        expect(res.error.kind, `cut at ${cut}`).to.equal('truncated');
        expect(res.error.offset).to.be.at.most(cut);
      }
    }
  });

  it('refuses lengths past the limit or the buffer without allocating them', () => {
    const huge = new XdrWriter().uint32(0xffffffff).toBuffer();
    const r1 = decodeXdr(huge, (r) => r.opaque(1024));
    expect(r1.ok === false && r1.error.kind).to.equal('too-long');
    const r2 = decodeXdr(huge, (r) => r.opaque());
    expect(r2.ok === false && r2.error.kind).to.equal('too-long');
    const r3 = decodeXdr(new XdrWriter().uint32(1000).uint32(1).toBuffer(), (r) => r.opaque(4096));
    expect(r3.ok === false && r3.error.kind).to.equal('truncated');
    const r4 = decodeXdr(new XdrWriter().uint32(0x10000000).toBuffer(), (r) => r.array(0x7fffffff, (x) => x.uint32()));
    expect(r4.ok === false && r4.error.kind).to.equal('truncated');
    const r5 = decodeXdr(new XdrWriter().uint32(20).toBuffer(), (r) => r.array(16, (x) => x.uint32()));
    expect(r5.ok === false && r5.error.kind).to.equal('too-long');
  });

  it('rejects bad booleans, unknown enum values, unsafe 64-bit sizes and trailing bytes', () => {
    expect(decodeXdr(new XdrWriter().uint32(2).toBuffer(), (r) => r.bool()).ok).to.equal(false);
    const badType = new XdrWriter().uint32(9).toBuffer();
    const t = decodeXdr(badType, readFattr3);
    expect(t.ok === false && t.error.kind).to.equal('bad-value');
    const big = decodeXdr(new XdrWriter().uint64(2n ** 60n).toBuffer(), (r) => r.uint64Number('size'));
    expect(big.ok === false && big.error.kind).to.equal('bad-value');
    const trailing = decodeXdr(new XdrWriter().uint32(1).uint32(2).toBuffer(), (r) => r.uint32(), true);
    expect(trailing.ok === false && trailing.error.kind).to.equal('trailing-bytes');
  });

  it('reports a throwing decode function as a decoder-bug result instead of throwing', () => {
    const res = decodeXdr(Buffer.alloc(4), () => {
      throw new TypeError('oops');
    });
    expect(res.ok === false && res.error.kind).to.equal('decoder-bug');
  });

  it('refuses to encode values out of range', () => {
    expect(() => new XdrWriter().uint32(-1)).to.throw(RangeError);
    expect(() => new XdrWriter().uint32(2 ** 32)).to.throw(RangeError);
    expect(() => new XdrWriter().int32(2 ** 31)).to.throw(RangeError);
    expect(() => new XdrWriter().uint64(-1n)).to.throw(RangeError);
  });

  for (const seed of [1, 2, 3, 4, 5]) {
    it(`decodes 2000 garbage buffers (seed ${seed}) through every decoder without throwing`, () => {
      const next = prng(seed);
      const decoders: ((b: Buffer) => unknown)[] = [
        (b) => decodeReply(b),
        (b) => decodeCall(b),
        (b) => decodeXdr(b, readFattr3),
        (b) => decodeXdr(b, readWccData),
        (b) => decodeXdr(b, (r) => r.array(1000, (x) => x.string(255))),
        (b) => decodeXdr(b, (r) => {
          const out = [];
          while (r.bool()) out.push({ id: r.uint64(), name: r.string(255), cookie: r.uint64(), attrs: readPostOpAttr(r) });
          return out;
        }),
      ];
      for (let i = 0; i < 2000; i++) {
        const len = Math.floor(next() * 200);
        const buf = randomBytes(next, len);
        // Small numbers make lengths and booleans plausible, so decoders go deeper.
        for (let j = 0; j + 4 <= len; j += 4) if (next() < 0.5) buf.writeUInt32BE(Math.floor(next() * 4), j);
        for (const d of decoders) {
          const res = d(buf) as { ok: boolean };
          expect(res.ok).to.be.a('boolean');
        }
      }
    });
  }

  it('decodes replies: success, every accept_stat, and denials', () => {
    const cases = [
      { status: 'success', results: Buffer.alloc(8, 1) },
      { status: 'prog-unavail' },
      { status: 'prog-mismatch', low: 2, high: 4 },
      { status: 'proc-unavail' },
      { status: 'garbage-args' },
      { status: 'system-err' },
      { status: 'rpc-mismatch', low: 2, high: 2 },
      { status: 'auth-error', authStat: 5 },
    ] as const;
    for (const body of cases) {
      const res = decodeReply(encodeReply(77, body));
      expect(res.ok, body.status).to.equal(true);
      if (res.ok) {
        expect(res.reply.xid).to.equal(77);
        expect(res.reply.body).to.deep.equal(body);
      }
    }
  });

  it('refuses a CALL where a reply is expected, and keeps its xid', () => {
    const call = encodeCall({ xid: 99, prog: 100003, vers: 3, proc: 0, auth: { flavor: 'sys', uid: 0, gid: 0 }, args: Buffer.alloc(0) });
    const res = decodeReply(call);
    expect(res.ok).to.equal(false);
    if (!res.ok) expect(res.xid).to.equal(99);
    const back = decodeCall(call);
    expect(back.ok && back.value.prog).to.equal(100003);
  });
});
