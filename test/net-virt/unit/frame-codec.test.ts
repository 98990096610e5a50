import { expect } from 'chai';
import { encodeFrame, FrameDecoder, MAX_FRAME_BYTES, MAX_SKIP_BYTES } from '@motus/net-virt';
import { ethFrame } from '../support/frames.js';
import { prng, randomBytes } from '../../support/index.js';

describe('net-virt frame codec (QEMU stream framing)', () => {
  it('round-trips frames whatever the cut of the chunks', () => {
    const frames = [ethFrame('02:00:00:00:00:01', '02:00:00:00:00:02', 60), ethFrame('ff:ff:ff:ff:ff:ff', '02:00:00:00:00:03', 1514, 0x0800, 7), ethFrame('02:00:00:00:00:04', '02:00:00:00:00:05', 14)];
    const stream = Buffer.concat(frames.map(encodeFrame));
    for (let cut = 1; cut <= stream.length; cut += 37) {
      const decoder = new FrameDecoder();
      const out: Buffer[] = [];
      for (let i = 0; i < stream.length; i += cut) {
        const r = decoder.push(stream.subarray(i, i + cut));
        expect(r.errors).to.deep.equal([]);
        out.push(...r.frames);
      }
      expect(out.map((f) => f.toString('hex'))).to.deep.equal(frames.map((f) => f.toString('hex')));
      expect(decoder.buffered).to.equal(0);
    }
  });

  it('byte by byte, too', () => {
    const frame = ethFrame('02:00:00:00:00:01', '02:00:00:00:00:02', 100);
    const decoder = new FrameDecoder();
    const out: Buffer[] = [];
    for (const byte of encodeFrame(frame)) out.push(...decoder.push(Buffer.from([byte])).frames);
    expect(out).to.have.length(1);
    expect(out[0]!.equals(frame)).to.equal(true);
  });

  it('drops a zero length and runts, and stays in step for the next frame', () => {
    const good = ethFrame('02:00:00:00:00:01', '02:00:00:00:00:02', 64);
    const zero = Buffer.from([0, 0, 0, 0]);
    const runt = Buffer.concat([Buffer.from([0, 0, 0, 5]), Buffer.from('abcde')]);
    const r = new FrameDecoder().push(Buffer.concat([zero, runt, encodeFrame(good)]));
    expect(r.errors).to.deep.equal([{ kind: 'empty', length: 0 }, { kind: 'runt', length: 5 }]);
    expect(r.frames).to.have.length(1);
    expect(r.frames[0]!.equals(good)).to.equal(true);
  });

  it('skips an oversize frame, even spread over later chunks, and decodes what follows', () => {
    const good = ethFrame('02:00:00:00:00:01', '02:00:00:00:00:02', 64);
    const big = MAX_FRAME_BYTES + 1;
    const header = Buffer.alloc(4);
    header.writeUInt32BE(big);
    const decoder = new FrameDecoder();
    const first = decoder.push(Buffer.concat([header, Buffer.alloc(1000)]));
    expect(first.errors).to.deep.equal([{ kind: 'oversize', length: big }]);
    expect(first.frames).to.deep.equal([]);
    const second = decoder.push(Buffer.concat([Buffer.alloc(big - 1000), encodeFrame(good)]));
    expect(second.errors).to.deep.equal([]);
    expect(second.frames).to.have.length(1);
    expect(second.frames[0]!.equals(good)).to.equal(true);
  });

  it('gives up on a stream announcing a length past any frame, once, and yields nothing after it', () => {
    const good = encodeFrame(ethFrame('02:00:00:00:00:01', '02:00:00:00:00:02', 64));
    const header = Buffer.alloc(4);
    header.writeUInt32BE(MAX_SKIP_BYTES + 1);
    const decoder = new FrameDecoder();
    const r = decoder.push(Buffer.concat([good, header, good]));
    expect(r.frames).to.have.length(1);
    expect(r.errors).to.deep.equal([{ kind: 'desync', length: MAX_SKIP_BYTES + 1 }]);
    expect(decoder.push(good)).to.deep.equal({ frames: [], errors: [] });
  });

  it('holds a frame cut short until the rest comes, and yields nothing from a lone partial header', () => {
    const good = encodeFrame(ethFrame('02:00:00:00:00:01', '02:00:00:00:00:02', 64));
    const decoder = new FrameDecoder();
    expect(decoder.push(good.subarray(0, 3))).to.deep.equal({ frames: [], errors: [] });
    expect(decoder.push(good.subarray(3, 40))).to.deep.equal({ frames: [], errors: [] });
    expect(decoder.buffered).to.equal(40);
    expect(decoder.push(good.subarray(40)).frames).to.have.length(1);
  });

  it('never throws on 2,000 generated garbage streams, and every frame it yields is within bounds', () => {
    const next = prng(0x5eed);
    for (let run = 0; run < 2000; run++) {
      const decoder = new FrameDecoder();
      const chunks = Math.floor(next() * 6) + 1;
      for (let c = 0; c < chunks; c++) {
        let chunk = randomBytes(next, Math.floor(next() * 300));
        // Some headers with small plausible lengths, so real frames interleave with garbage.
        if (next() < 0.5 && chunk.length >= 4) chunk.writeUInt32BE(Math.floor(next() * 120), 0);
        const r = decoder.push(chunk);
        for (const f of r.frames) expect(f.length).to.be.within(14, MAX_FRAME_BYTES);
        for (const e of r.errors) expect(['empty', 'runt', 'oversize', 'desync']).to.include(e.kind);
      }
    }
  });
});
