/**
 * XDR (RFC 4506) codec. Decoding is total: `decodeXdr` returns a value or an
 * `XdrError` for every input, and the reader never looks past its buffer. Readers
 * signal a problem by throwing an `XdrFault` internally; only `decodeXdr` catches
 * it, so decode functions stay straight-line code while callers see a result.
 */

export type XdrErrorKind = 'truncated' | 'too-long' | 'bad-value' | 'trailing-bytes' | 'decoder-bug';

export interface XdrError {
  readonly kind: XdrErrorKind;
  /** Byte offset in the buffer where decoding failed. */
  readonly offset: number;
  readonly message: string;
}

export type XdrResult<T> = { ok: true; value: T } | { ok: false; error: XdrError };

class XdrFault {
  constructor(readonly error: XdrError) {}
}

/** Upper bound on any variable-length item unless a field sets a smaller one. */
export const XDR_DEFAULT_MAX_LENGTH = 64 * 1024 * 1024;

export class XdrReader {
  private pos = 0;
  constructor(private readonly buf: Buffer) {}

  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  fail(kind: XdrErrorKind, message: string): never {
    throw new XdrFault({ kind, offset: this.pos, message });
  }

  private need(n: number, what: string): void {
    if (n > this.buf.length - this.pos) {
      this.fail('truncated', `${what} needs ${n} bytes but only ${this.buf.length - this.pos} remain`);
    }
  }

  uint32(what = 'uint32'): number {
    this.need(4, what);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  int32(what = 'int32'): number {
    this.need(4, what);
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  uint64(what = 'uint64'): bigint {
    this.need(8, what);
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  /** A uint64 as a JS number, for sizes and offsets; refuses values past 2^53. */
  uint64Number(what = 'uint64'): number {
    const v = this.uint64(what);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail('bad-value', `${what} ${v} does not fit a safe integer`);
    return Number(v);
  }

  bool(what = 'bool'): boolean {
    const v = this.uint32(what);
    if (v > 1) this.fail('bad-value', `${what} must be 0 or 1, got ${v}`);
    return v === 1;
  }

  /** An enum restricted to the values the caller lists. */
  enumOf<T extends number>(allowed: readonly T[], what: string): T {
    const v = this.int32(what);
    if (!(allowed as readonly number[]).includes(v)) this.fail('bad-value', `${what} has unknown value ${v}`);
    return v as T;
  }

  fixedOpaque(length: number, what = 'opaque'): Buffer {
    // A copy, so a small decoded value does not pin a large receive buffer.
    return Buffer.from(this.fixedOpaqueView(length, what));
  }

  /** Like fixedOpaque but shares the buffer: for bulk data that is most of the message anyway. */
  fixedOpaqueView(length: number, what = 'opaque'): Buffer {
    const padded = length + ((4 - (length % 4)) % 4);
    this.need(padded, what);
    const v = this.buf.subarray(this.pos, this.pos + length);
    this.pos += padded;
    return v;
  }

  opaqueView(maxLength = XDR_DEFAULT_MAX_LENGTH, what = 'opaque'): Buffer {
    const length = this.uint32(`${what} length`);
    if (length > maxLength) this.fail('too-long', `${what} length ${length} exceeds the limit of ${maxLength}`);
    return this.fixedOpaqueView(length, what);
  }

  opaque(maxLength = XDR_DEFAULT_MAX_LENGTH, what = 'opaque'): Buffer {
    const length = this.uint32(`${what} length`);
    if (length > maxLength) this.fail('too-long', `${what} length ${length} exceeds the limit of ${maxLength}`);
    return this.fixedOpaque(length, what);
  }

  string(maxLength = XDR_DEFAULT_MAX_LENGTH, what = 'string'): string {
    return this.opaque(maxLength, what).toString('utf8');
  }

  /** A counted array; `maxCount` bounds the allocation a hostile count could cause. */
  array<T>(maxCount: number, item: (r: XdrReader) => T, what = 'array'): T[] {
    const count = this.uint32(`${what} count`);
    if (count > maxCount) this.fail('too-long', `${what} count ${count} exceeds the limit of ${maxCount}`);
    // Each element takes at least 4 bytes, so a count past that is a lie.
    if (count * 4 > this.remaining) this.fail('truncated', `${what} claims ${count} items but only ${this.remaining} bytes remain`);
    const out: T[] = [];
    for (let i = 0; i < count; i++) out.push(item(this));
    return out;
  }

  /** An XDR optional-data value (`*T`). */
  optional<T>(item: (r: XdrReader) => T, what = 'optional'): T | undefined {
    return this.bool(`${what} presence`) ? item(this) : undefined;
  }

  /** The rest of the buffer, e.g. procedure results handed to the next layer. */
  rest(): Buffer {
    const v = this.buf.subarray(this.pos);
    this.pos = this.buf.length;
    return v;
  }
}

/**
 * Runs `decode` over `buf`. With `exact`, bytes left over are an error, which
 * catches a message that does not match the decoder's idea of its shape.
 */
export function decodeXdr<T>(buf: Buffer, decode: (r: XdrReader) => T, exact = false): XdrResult<T> {
  const reader = new XdrReader(buf);
  try {
    const value = decode(reader);
    if (exact && reader.remaining > 0) {
      return { ok: false, error: { kind: 'trailing-bytes', offset: reader.offset, message: `${reader.remaining} bytes left after the message` } };
    }
    return { ok: true, value };
  } catch (err) {
    if (err instanceof XdrFault) return { ok: false, error: err.error };
    // Totality is the contract: a bug in a decode function still comes back as a value.
    const message = err instanceof Error ? err.message : String(err);
    return { ok: false, error: { kind: 'decoder-bug', offset: reader.offset, message } };
  }
}

export class XdrWriter {
  private chunks: Buffer[] = [];
  private scratch = Buffer.alloc(8);
  private size = 0;

  get length(): number {
    return this.size;
  }

  private push(b: Buffer): this {
    this.chunks.push(b);
    this.size += b.length;
    return this;
  }

  uint32(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`uint32 out of range: ${v}`);
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(v, 0);
    return this.push(b);
  }

  int32(v: number): this {
    if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) throw new RangeError(`int32 out of range: ${v}`);
    const b = Buffer.allocUnsafe(4);
    b.writeInt32BE(v, 0);
    return this.push(b);
  }

  uint64(v: bigint | number): this {
    const big = typeof v === 'bigint' ? v : BigInt(v);
    if (big < 0n || big > 0xffffffffffffffffn) throw new RangeError(`uint64 out of range: ${v}`);
    this.scratch.writeBigUInt64BE(big, 0);
    return this.push(Buffer.from(this.scratch));
  }

  bool(v: boolean): this {
    return this.uint32(v ? 1 : 0);
  }

  fixedOpaque(data: Buffer, length = data.length): this {
    if (data.length !== length) throw new RangeError(`fixed opaque must be ${length} bytes, got ${data.length}`);
    this.push(data);
    const pad = (4 - (length % 4)) % 4;
    return pad > 0 ? this.push(Buffer.alloc(pad)) : this;
  }

  opaque(data: Buffer): this {
    this.uint32(data.length);
    return this.fixedOpaque(data);
  }

  string(s: string): this {
    return this.opaque(Buffer.from(s, 'utf8'));
  }

  /** Appends bytes already in XDR form (e.g. encoded procedure arguments). */
  raw(data: Buffer): this {
    if (data.length % 4 !== 0) throw new RangeError('raw XDR must be a multiple of 4 bytes');
    return this.push(data);
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.chunks, this.size);
  }

  /** The encoded bytes as the pieces appended, without copying large opaques. */
  toChunks(): Buffer[] {
    return [...this.chunks];
  }
}
