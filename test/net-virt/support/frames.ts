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
