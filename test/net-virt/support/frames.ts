import { macToBytes } from '@motus/net-virt';

/** A plain Ethernet II frame of `size` bytes (header included) with a recognisable payload. */
export function ethFrame(dst: string, src: string, size = 64, etherType = 0x88b5, fill = 0): Buffer {
  const frame = Buffer.alloc(Math.max(14, size), fill);
  macToBytes(dst).copy(frame, 0);
  macToBytes(src).copy(frame, 6);
  frame.writeUInt16BE(etherType, 12);
  return frame;
}

export const BROADCAST = 'ff:ff:ff:ff:ff:ff';

/** A small deterministic PRNG, so generated inputs are the same at every run. */
export function prng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x1_0000_0000;
  };
}

export function randomBytes(next: () => number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(next() * 256);
  return b;
}

/** A FrameSink that records what it is given and pushes back when told to. */
export class RecordingSink {
  written: Buffer[] = [];
  writableNeedDrain = false;
  write(data: Buffer): boolean {
    this.written.push(data);
    return !this.writableNeedDrain;
  }
  /** Frames without their 4-byte length prefix. */
  frames(): Buffer[] {
    return this.written.map((b) => b.subarray(4));
  }
}
