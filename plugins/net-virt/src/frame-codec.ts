/**
 * Framing of QEMU `-netdev stream` sockets: each Ethernet frame is preceded by its
 * length as a 4-byte big-endian integer. The decoder is total: it never throws and
 * never reads past what it was given, so a QEMU (or anything else) writing garbage
 * into a port costs only that port's frames.
 */

/** The shortest frame worth forwarding: two MACs and an EtherType. */
export const MIN_FRAME_BYTES = 14;
/** QEMU's own ceiling for one packet on a stream netdev (NET_BUFSIZE is 69632, jumbo frames fit). */
export const MAX_FRAME_BYTES = 65_535;

/** Past this, an announced length is taken for garbage rather than a frame to skip. */
export const MAX_SKIP_BYTES = 1 << 20;

export type FrameDecodeError =
  | { kind: 'empty'; length: 0 }
  | { kind: 'runt'; length: number }
  | { kind: 'oversize'; length: number }
  /** The stream cannot be trusted any more; the decoder discards everything after it. */
  | { kind: 'desync'; length: number };

export interface FrameDecodeResult {
  frames: Buffer[];
  errors: FrameDecodeError[];
}

export function encodeFrame(frame: Buffer): Buffer {
  const out = Buffer.allocUnsafe(4 + frame.length);
  out.writeUInt32BE(frame.length, 0);
  frame.copy(out, 4);
  return out;
}

export function encodeFrameHeader(length: number): Buffer {
  const header = Buffer.allocUnsafe(4);
  header.writeUInt32BE(length >>> 0, 0);
  return header;
}

/**
 * Reassembles frames from the chunks a stream socket delivers, whatever their cut.
 * A length of 0 or below 14 bytes is dropped (its bytes skipped), so the stream
 * stays in step. A length over the frame limit but within MAX_SKIP_BYTES is
 * skipped the same way. A larger one means the stream is garbage (QEMU's framing
 * has no resynchronisation marker): the decoder reports 'desync' once and then
 * discards everything, and the port closes the connection so its QEMU reconnects
 * in step.
 */
export class FrameDecoder {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Bytes still to throw away from an oversize frame. */
  private discard = 0;
  private desynced = false;

  constructor(private readonly maxFrameBytes = MAX_FRAME_BYTES) {}

  /** Bytes held waiting for the rest of a frame. */
  get buffered(): number {
    return this.pendingBytes;
  }

  push(chunk: Buffer): FrameDecodeResult {
    const frames: Buffer[] = [];
    const errors: FrameDecodeError[] = [];
    if (this.desynced) return { frames, errors };
    let data = chunk;
    if (this.discard > 0) {
      const skip = Math.min(this.discard, data.length);
      this.discard -= skip;
      data = data.subarray(skip);
      if (data.length === 0) return { frames, errors };
    }
    if (this.pendingBytes > 0) {
      this.pending.push(data);
      data = Buffer.concat(this.pending, this.pendingBytes + data.length);
      this.pending = [];
      this.pendingBytes = 0;
    }
    let offset = 0;
    while (data.length - offset >= 4) {
      const length = data.readUInt32BE(offset);
      if (length > MAX_SKIP_BYTES) {
        errors.push({ kind: 'desync', length });
        this.desynced = true;
        this.pending = [];
        this.pendingBytes = 0;
        return { frames, errors };
      }
      if (length > this.maxFrameBytes) {
        errors.push({ kind: 'oversize', length });
        const available = data.length - offset - 4;
        if (available >= length) {
          offset += 4 + length;
          continue;
        }
        this.discard = length - available;
        offset = data.length;
        break;
      }
      if (data.length - offset - 4 < length) break;
      const start = offset + 4;
      offset = start + length;
      if (length === 0) errors.push({ kind: 'empty', length: 0 });
      else if (length < MIN_FRAME_BYTES) errors.push({ kind: 'runt', length });
      // Copied: a view would pin the whole read chunk (up to 64 KiB) while the frame waits in a port queue.
      else frames.push(Buffer.from(data.subarray(start, offset)));
    }
    if (offset < data.length) {
      const rest = data.subarray(offset);
      this.pending = [rest];
      this.pendingBytes = rest.length;
    }
    return { frames, errors };
  }
}
