/**
 * ONC RPC record marking over a byte stream (RFC 5531 §11): each record is one or
 * more fragments, each behind a 4-byte header whose top bit marks the last
 * fragment and whose low 31 bits give the fragment length.
 */

const LAST_FRAGMENT = 0x80000000;
const MAX_FRAGMENT = 0x7fffffff;

export type RecordError = { kind: 'record-too-large'; size: number; limit: number };

/** The record mark of a record sent as a single last fragment. */
export function recordMark(length: number): Buffer {
  if (length > MAX_FRAGMENT) throw new RangeError(`record of ${length} bytes is larger than one fragment can carry`);
  const header = Buffer.allocUnsafe(4);
  header.writeUInt32BE((LAST_FRAGMENT | length) >>> 0, 0);
  return header;
}

/** Frames one record as a single last fragment. */
export function encodeRecord(payload: Buffer): Buffer {
  return Buffer.concat([recordMark(payload.length), payload]);
}

/**
 * Reassembles records from chunks as they arrive. `push` returns the records
 * completed by the chunk, or an error once a record would pass `maxRecordSize`;
 * after an error the stream is out of step and the decoder stays failed, since
 * the only safe recovery is a new connection.
 */
export class RecordDecoder {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private fragments: Buffer[] = [];
  private recordBytes = 0;
  private failed: RecordError | undefined;

  constructor(readonly maxRecordSize: number) {}

  push(chunk: Buffer): { records: Buffer[]; error?: RecordError } {
    const records: Buffer[] = [];
    if (this.failed) return { records, error: this.failed };
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    for (;;) {
      if (this.pendingBytes < 4) break;
      const header = this.peek(4).readUInt32BE(0);
      const length = header & MAX_FRAGMENT;
      const last = (header & LAST_FRAGMENT) !== 0;
      if (this.recordBytes + length > this.maxRecordSize) {
        this.failed = { kind: 'record-too-large', size: this.recordBytes + length, limit: this.maxRecordSize };
        this.pending = [];
        this.fragments = [];
        return { records, error: this.failed };
      }
      if (this.pendingBytes < 4 + length) break;
      this.take(4);
      this.fragments.push(this.take(length));
      this.recordBytes += length;
      if (last) {
        records.push(this.fragments.length === 1 ? this.fragments[0]! : Buffer.concat(this.fragments, this.recordBytes));
        this.fragments = [];
        this.recordBytes = 0;
      }
    }
    return { records };
  }

  /** Bytes of an incomplete record held back; nonzero at end of stream means a cut record. */
  get buffered(): number {
    return this.pendingBytes + this.recordBytes;
  }

  private peek(n: number): Buffer {
    if (this.pending[0]!.length >= n) return this.pending[0]!.subarray(0, n);
    const joined = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [joined];
    return joined.subarray(0, n);
  }

  private take(n: number): Buffer {
    let out: Buffer;
    const first = this.pending[0];
    if (first !== undefined && first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.pending.shift();
      else this.pending[0] = first.subarray(n);
    } else {
      const parts: Buffer[] = [];
      let need = n;
      while (need > 0) {
        const head = this.pending[0]!;
        if (head.length <= need) {
          parts.push(head);
          need -= head.length;
          this.pending.shift();
        } else {
          parts.push(head.subarray(0, need));
          this.pending[0] = head.subarray(need);
          need = 0;
        }
      }
      out = Buffer.concat(parts, n);
    }
    this.pendingBytes -= n;
    return out;
  }
}
