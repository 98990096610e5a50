/**
 * Writes Ethernet frames as a classic libpcap file (version 2.4, microsecond
 * timestamps, LINKTYPE_ETHERNET), which tshark and pcap-parser both read.
 */
import { createWriteStream, type WriteStream } from 'node:fs';

const LINKTYPE_ETHERNET = 1;
const SNAPLEN = 65_535;

export function pcapGlobalHeader(): Buffer {
  const h = Buffer.alloc(24);
  h.writeUInt32LE(0xa1b2c3d4, 0);
  h.writeUInt16LE(2, 4);
  h.writeUInt16LE(4, 6);
  h.writeInt32LE(0, 8);
  h.writeUInt32LE(0, 12);
  h.writeUInt32LE(SNAPLEN, 16);
  h.writeUInt32LE(LINKTYPE_ETHERNET, 20);
  return h;
}

export function pcapRecord(frame: Buffer, timeMs: number): Buffer {
  const captured = Math.min(frame.length, SNAPLEN);
  const out = Buffer.allocUnsafe(16 + captured);
  const seconds = Math.floor(timeMs / 1000);
  out.writeUInt32LE(seconds >>> 0, 0);
  out.writeUInt32LE(Math.floor((timeMs - seconds * 1000) * 1000), 4);
  out.writeUInt32LE(captured, 8);
  out.writeUInt32LE(frame.length, 12);
  frame.copy(out, 16, 0, captured);
  return out;
}

export class PcapWriter {
  private readonly stream: WriteStream;
  private frames_ = 0;
  private bytes = 24;
  /** Frames not written because the file reached maxBytes. */
  truncated = 0;

  constructor(
    readonly path: string,
    private readonly maxBytes = Number.POSITIVE_INFINITY,
  ) {
    this.stream = createWriteStream(path);
    this.stream.on('error', () => undefined);
    this.stream.write(pcapGlobalHeader());
  }

  get frames(): number {
    return this.frames_;
  }

  write(frame: Buffer): void {
    const record = pcapRecord(frame, performance.timeOrigin + performance.now());
    if (this.bytes + record.length > this.maxBytes) {
      this.truncated++;
      return;
    }
    this.bytes += record.length;
    this.frames_++;
    this.stream.write(record);
  }

  close(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.stream.once('error', reject);
      this.stream.end(() => resolve());
    });
  }
}
