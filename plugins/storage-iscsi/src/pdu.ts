import type { MotusError } from '@motus/sdk';
import { crc32c, crc32cOf } from './crc32c.js';
import { iscsiError } from './errors.js';

/** RFC 7143 section 11: the opcodes of both directions. */
export const PduOpcode = {
  NopOut: 0x00,
  ScsiCommand: 0x01,
  TaskMgmtRequest: 0x02,
  LoginRequest: 0x03,
  TextRequest: 0x04,
  DataOut: 0x05,
  LogoutRequest: 0x06,
  NopIn: 0x20,
  ScsiResponse: 0x21,
  TaskMgmtResponse: 0x22,
  LoginResponse: 0x23,
  TextResponse: 0x24,
  DataIn: 0x25,
  LogoutResponse: 0x26,
  R2T: 0x31,
  AsyncMessage: 0x32,
  Reject: 0x3f,
} as const;

export const BHS_LENGTH = 48;
/** The reserved tag: "no task" for ITT, "no transfer" for TTT. */
export const RESERVED_TAG = 0xffffffff;

interface Common {
  immediate: boolean;
  itt: number;
  /** Additional header segments, kept as received (4-byte multiples). */
  ahs: Buffer;
  data: Buffer;
}

export interface NopOutPdu extends Common { opcode: 0x00; lun: Buffer; ttt: number; cmdSN: number; expStatSN: number }
export interface ScsiCommandPdu extends Common {
  opcode: 0x01; final: boolean; read: boolean; write: boolean; attr: number; lun: Buffer;
  expectedDataTransferLength: number; cmdSN: number; expStatSN: number; cdb: Buffer;
}
export interface TaskMgmtRequestPdu extends Common {
  opcode: 0x02; function: number; lun: Buffer; referencedTaskTag: number; cmdSN: number; expStatSN: number; refCmdSN: number; expDataSN: number;
}
export interface LoginRequestPdu extends Common {
  opcode: 0x03; transit: boolean; cont: boolean; csg: number; nsg: number; versionMax: number; versionMin: number;
  isid: Buffer; tsih: number; cid: number; cmdSN: number; expStatSN: number;
}
export interface TextRequestPdu extends Common { opcode: 0x04; final: boolean; cont: boolean; lun: Buffer; ttt: number; cmdSN: number; expStatSN: number }
export interface DataOutPdu extends Common { opcode: 0x05; final: boolean; lun: Buffer; ttt: number; expStatSN: number; dataSN: number; bufferOffset: number }
export interface LogoutRequestPdu extends Common { opcode: 0x06; reason: number; cid: number; cmdSN: number; expStatSN: number }
export interface NopInPdu extends Common { opcode: 0x20; lun: Buffer; ttt: number; statSN: number; expCmdSN: number; maxCmdSN: number }
export interface ScsiResponsePdu extends Common {
  opcode: 0x21; bidiOverflow: boolean; bidiUnderflow: boolean; overflow: boolean; underflow: boolean; response: number; status: number;
  snackTag: number; statSN: number; expCmdSN: number; maxCmdSN: number; expDataSN: number; bidiResidual: number; residual: number;
}
export interface TaskMgmtResponsePdu extends Common { opcode: 0x22; response: number; statSN: number; expCmdSN: number; maxCmdSN: number }
export interface LoginResponsePdu extends Common {
  opcode: 0x23; transit: boolean; cont: boolean; csg: number; nsg: number; versionMax: number; versionActive: number;
  isid: Buffer; tsih: number; statSN: number; expCmdSN: number; maxCmdSN: number; statusClass: number; statusDetail: number;
}
export interface TextResponsePdu extends Common { opcode: 0x24; final: boolean; cont: boolean; lun: Buffer; ttt: number; statSN: number; expCmdSN: number; maxCmdSN: number }
export interface DataInPdu extends Common {
  opcode: 0x25; final: boolean; ack: boolean; overflow: boolean; underflow: boolean; hasStatus: boolean; status: number; lun: Buffer;
  ttt: number; statSN: number; expCmdSN: number; maxCmdSN: number; dataSN: number; bufferOffset: number; residual: number;
}
export interface LogoutResponsePdu extends Common { opcode: 0x26; response: number; statSN: number; expCmdSN: number; maxCmdSN: number; time2Wait: number; time2Retain: number }
export interface R2TPdu extends Common {
  opcode: 0x31; lun: Buffer; ttt: number; statSN: number; expCmdSN: number; maxCmdSN: number; r2tSN: number; bufferOffset: number; desiredLength: number;
}
export interface AsyncMessagePdu extends Common {
  opcode: 0x32; lun: Buffer; statSN: number; expCmdSN: number; maxCmdSN: number; asyncEvent: number; asyncVCode: number;
  parameter1: number; parameter2: number; parameter3: number;
}
export interface RejectPdu extends Common { opcode: 0x3f; reason: number; statSN: number; expCmdSN: number; maxCmdSN: number; dataSN: number }

export type InitiatorPdu = NopOutPdu | ScsiCommandPdu | TaskMgmtRequestPdu | LoginRequestPdu | TextRequestPdu | DataOutPdu | LogoutRequestPdu;
export type TargetPdu = NopInPdu | ScsiResponsePdu | TaskMgmtResponsePdu | LoginResponsePdu | TextResponsePdu | DataInPdu | LogoutResponsePdu | R2TPdu | AsyncMessagePdu | RejectPdu;
export type Pdu = InitiatorPdu | TargetPdu;

/** What a caller gives to encodePdu: the opcode, and any fields that are not zero. */
export type PduInit = { [K in Pdu['opcode']]: Partial<Extract<Pdu, { opcode: K }>> & { opcode: K } }[Pdu['opcode']];

type Field =
  | { kind: 'u8' | 'u16' | 'u32'; at: number }
  | { kind: 'bytes'; at: number; length: number }
  | { kind: 'bits'; at: number; mask: number; shift: number }
  | { kind: 'flag'; at: number; mask: number };

const u8 = (at: number): Field => ({ kind: 'u8', at });
const u16 = (at: number): Field => ({ kind: 'u16', at });
const u32 = (at: number): Field => ({ kind: 'u32', at });
const bytes = (at: number, length: number): Field => ({ kind: 'bytes', at, length });
const flag = (mask: number): Field => ({ kind: 'flag', at: 1, mask });
const bits = (mask: number, shift = 0): Field => ({ kind: 'bits', at: 1, mask, shift });

const ITT = { itt: u32(16) };
const LUN = { lun: bytes(8, 8) };
const TARGET_SN = { statSN: u32(24), expCmdSN: u32(28), maxCmdSN: u32(32) };
const LOGIN_FLAGS = { transit: flag(0x80), cont: flag(0x40), csg: bits(0x0c, 2), nsg: bits(0x03) };

/**
 * Where each field of each PDU lives in the BHS. `fixed` is what byte 1 must carry
 * for opcodes whose F bit is always set.
 */
const LAYOUTS: Record<number, { name: string; fixed?: number; fields: Record<string, Field> }> = {
  0x00: { name: 'NOP-Out', fixed: 0x80, fields: { ...LUN, ...ITT, ttt: u32(20), cmdSN: u32(24), expStatSN: u32(28) } },
  0x01: {
    name: 'SCSI Command',
    fields: { final: flag(0x80), read: flag(0x40), write: flag(0x20), attr: bits(0x07), ...LUN, ...ITT, expectedDataTransferLength: u32(20), cmdSN: u32(24), expStatSN: u32(28), cdb: bytes(32, 16) },
  },
  0x02: {
    name: 'Task Management Request', fixed: 0x80,
    fields: { function: bits(0x7f), ...LUN, ...ITT, referencedTaskTag: u32(20), cmdSN: u32(24), expStatSN: u32(28), refCmdSN: u32(32), expDataSN: u32(36) },
  },
  0x03: {
    name: 'Login Request',
    fields: { ...LOGIN_FLAGS, versionMax: u8(2), versionMin: u8(3), isid: bytes(8, 6), tsih: u16(14), ...ITT, cid: u16(20), cmdSN: u32(24), expStatSN: u32(28) },
  },
  0x04: { name: 'Text Request', fields: { final: flag(0x80), cont: flag(0x40), ...LUN, ...ITT, ttt: u32(20), cmdSN: u32(24), expStatSN: u32(28) } },
  0x05: { name: 'SCSI Data-Out', fields: { final: flag(0x80), ...LUN, ...ITT, ttt: u32(20), expStatSN: u32(28), dataSN: u32(36), bufferOffset: u32(40) } },
  0x06: { name: 'Logout Request', fixed: 0x80, fields: { reason: bits(0x7f), ...ITT, cid: u16(20), cmdSN: u32(24), expStatSN: u32(28) } },
  0x20: { name: 'NOP-In', fixed: 0x80, fields: { ...LUN, ...ITT, ttt: u32(20), ...TARGET_SN } },
  0x21: {
    name: 'SCSI Response', fixed: 0x80,
    fields: {
      bidiOverflow: flag(0x10), bidiUnderflow: flag(0x08), overflow: flag(0x04), underflow: flag(0x02), response: u8(2), status: u8(3), ...ITT,
      snackTag: u32(20), ...TARGET_SN, expDataSN: u32(36), bidiResidual: u32(40), residual: u32(44),
    },
  },
  0x22: { name: 'Task Management Response', fixed: 0x80, fields: { response: u8(2), ...ITT, ...TARGET_SN } },
  0x23: {
    name: 'Login Response',
    fields: { ...LOGIN_FLAGS, versionMax: u8(2), versionActive: u8(3), isid: bytes(8, 6), tsih: u16(14), ...ITT, ...TARGET_SN, statusClass: u8(36), statusDetail: u8(37) },
  },
  0x24: { name: 'Text Response', fields: { final: flag(0x80), cont: flag(0x40), ...LUN, ...ITT, ttt: u32(20), ...TARGET_SN } },
  0x25: {
    name: 'SCSI Data-In',
    fields: {
      final: flag(0x80), ack: flag(0x40), overflow: flag(0x04), underflow: flag(0x02), hasStatus: flag(0x01), status: u8(3), ...LUN, ...ITT,
      ttt: u32(20), ...TARGET_SN, dataSN: u32(36), bufferOffset: u32(40), residual: u32(44),
    },
  },
  0x26: { name: 'Logout Response', fixed: 0x80, fields: { response: u8(2), ...ITT, ...TARGET_SN, time2Wait: u16(40), time2Retain: u16(42) } },
  0x31: { name: 'R2T', fixed: 0x80, fields: { ...LUN, ...ITT, ttt: u32(20), ...TARGET_SN, r2tSN: u32(36), bufferOffset: u32(40), desiredLength: u32(44) } },
  0x32: {
    name: 'Asynchronous Message', fixed: 0x80,
    fields: { ...LUN, ...ITT, ...TARGET_SN, asyncEvent: u8(36), asyncVCode: u8(37), parameter1: u16(38), parameter2: u16(40), parameter3: u16(42) },
  },
  0x3f: { name: 'Reject', fixed: 0x80, fields: { reason: u8(2), ...ITT, ...TARGET_SN, dataSN: u32(36) } },
};

export function opcodeName(opcode: number): string {
  return LAYOUTS[opcode]?.name ?? `opcode 0x${opcode.toString(16).padStart(2, '0')}`;
}

export interface DigestOptions {
  headerDigest: boolean;
  dataDigest: boolean;
}

export const NO_DIGESTS: DigestOptions = { headerDigest: false, dataDigest: false };

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

/** Builds the bytes of one PDU: BHS, AHS, header digest, data, padding, data digest. */
export function encodePdu(init: PduInit, digests: DigestOptions = NO_DIGESTS): Buffer {
  return Buffer.concat(encodePduParts(init, digests));
}

/**
 * The same bytes as encodePdu in up to three pieces (header, data, padding and
 * digest), the data being the caller's buffer uncopied: a socket can write them
 * in turn, which saves copying every byte of a large write.
 */
export function encodePduParts(init: PduInit, digests: DigestOptions = NO_DIGESTS): Buffer[] {
  const layout = LAYOUTS[init.opcode];
  if (!layout) throw new RangeError(`cannot encode ${opcodeName(init.opcode)}`);
  const values = init as unknown as Record<string, unknown>;
  const ahs = (values['ahs'] as Buffer | undefined) ?? Buffer.alloc(0);
  const data = (values['data'] as Buffer | undefined) ?? Buffer.alloc(0);
  if (ahs.length % 4 !== 0 || ahs.length > 255 * 4) throw new RangeError('AHS length must be a multiple of 4, at most 1020');
  if (data.length > 0xffffff) throw new RangeError('data segment longer than 2^24-1 bytes');
  const header = Buffer.alloc(BHS_LENGTH + ahs.length + (digests.headerDigest ? 4 : 0));
  header[0] = (init.opcode & 0x3f) | (values['immediate'] ? 0x40 : 0);
  header[1] = layout.fixed ?? 0;
  header[4] = ahs.length / 4;
  header.writeUIntBE(data.length, 5, 3);
  for (const [name, field] of Object.entries(layout.fields)) {
    const v = values[name];
    if (v === undefined) continue;
    switch (field.kind) {
      case 'u8': header[field.at] = Number(v) & 0xff; break;
      case 'u16': header.writeUInt16BE(Number(v) & 0xffff, field.at); break;
      case 'u32': header.writeUInt32BE(Number(v) >>> 0, field.at); break;
      case 'bytes': (v as Buffer).copy(header, field.at, 0, Math.min(field.length, (v as Buffer).length)); break;
      case 'bits': header[field.at] = header[field.at]! | ((Number(v) << field.shift) & field.mask); break;
      case 'flag': if (v) header[field.at] = header[field.at]! | field.mask; break;
    }
  }
  ahs.copy(header, BHS_LENGTH);
  if (digests.headerDigest) header.writeUInt32LE(crc32c(header, 0, BHS_LENGTH + ahs.length), BHS_LENGTH + ahs.length);
  if (data.length === 0) return [header];
  const pad = pad4(data.length);
  const trailer = Buffer.alloc(pad + (digests.dataDigest ? 4 : 0));
  if (digests.dataDigest) trailer.writeUInt32LE(crc32cOf([data, trailer.subarray(0, pad)]), pad);
  return trailer.length > 0 ? [header, data, trailer] : [header, data];
}

/** Reads the BHS fields of a PDU that arrived whole; total over the 48 bytes. */
export function parseBhs(bhs: Buffer, ahs: Buffer, data: Buffer): { ok: true; pdu: Pdu } | { ok: false; error: MotusError } {
  if (bhs.length < BHS_LENGTH) return { ok: false, error: iscsiError('MOTUS_E_ISCSI_PROTOCOL', `BHS of ${bhs.length} bytes, 48 needed`) };
  const opcode = bhs[0]! & 0x3f;
  const layout = LAYOUTS[opcode];
  if (!layout) return { ok: false, error: iscsiError('MOTUS_E_ISCSI_PROTOCOL', `unknown iSCSI ${opcodeName(opcode)}`, { opcode }) };
  const pdu: Record<string, unknown> = { opcode, immediate: (bhs[0]! & 0x40) !== 0, ahs, data };
  for (const [name, field] of Object.entries(layout.fields)) {
    switch (field.kind) {
      case 'u8': pdu[name] = bhs[field.at]; break;
      case 'u16': pdu[name] = bhs.readUInt16BE(field.at); break;
      case 'u32': pdu[name] = bhs.readUInt32BE(field.at); break;
      case 'bytes': pdu[name] = Buffer.from(bhs.subarray(field.at, field.at + field.length)); break;
      case 'bits': pdu[name] = (bhs[field.at]! & field.mask) >> field.shift; break;
      case 'flag': pdu[name] = (bhs[field.at]! & field.mask) !== 0; break;
    }
  }
  return { ok: true, pdu: pdu as unknown as Pdu };
}

export interface FrameOptions extends DigestOptions {
  /** Largest data segment accepted; anything larger is a protocol error, not an allocation. */
  maxDataSegmentLength: number;
}

export type FrameResult =
  | { kind: 'pdu'; pdu: Pdu; length: number }
  | { kind: 'need'; length: number }
  | { kind: 'error'; error: MotusError };

/**
 * Length of the frame whose BHS starts at `buf[0]`, from its header alone, or an
 * error when the declared data segment is over the limit.
 */
export function frameLength(buf: Buffer, options: FrameOptions): { ok: true; length: number; ahsLength: number; dataLength: number } | { ok: false; error: MotusError } {
  const ahsLength = buf[4]! * 4;
  const dataLength = buf.readUIntBE(5, 3);
  if (dataLength > options.maxDataSegmentLength) {
    return { ok: false, error: iscsiError('MOTUS_E_ISCSI_PROTOCOL', `${opcodeName(buf[0]! & 0x3f)} declares a data segment of ${dataLength} bytes, more than the negotiated ${options.maxDataSegmentLength}`, { dataLength }) };
  }
  const length = BHS_LENGTH + ahsLength + (options.headerDigest ? 4 : 0) + dataLength + pad4(dataLength) + (options.dataDigest && dataLength > 0 ? 4 : 0);
  return { ok: true, length, ahsLength, dataLength };
}

/** Decodes one frame at the start of `buf`: a PDU, how many more bytes are needed, or a typed error. */
export function decodeFrame(buf: Buffer, options: FrameOptions): FrameResult {
  if (buf.length < BHS_LENGTH) return { kind: 'need', length: BHS_LENGTH };
  const f = frameLength(buf, options);
  if (!f.ok) return { kind: 'error', error: f.error };
  if (buf.length < f.length) return { kind: 'need', length: f.length };
  const headerEnd = BHS_LENGTH + f.ahsLength;
  if (options.headerDigest) {
    const got = buf.readUInt32LE(headerEnd);
    const want = crc32c(buf, 0, headerEnd);
    if (got !== want) return { kind: 'error', error: iscsiError('MOTUS_E_ISCSI_DIGEST', `header digest mismatch on ${opcodeName(buf[0]! & 0x3f)}`, { got, want }) };
  }
  const dataStart = headerEnd + (options.headerDigest ? 4 : 0);
  const dataEnd = dataStart + f.dataLength;
  if (options.dataDigest && f.dataLength > 0) {
    const padded = dataEnd + pad4(f.dataLength);
    const got = buf.readUInt32LE(padded);
    const want = crc32cOf([buf.subarray(dataStart, padded)]);
    if (got !== want) return { kind: 'error', error: iscsiError('MOTUS_E_ISCSI_DIGEST', `data digest mismatch on ${opcodeName(buf[0]! & 0x3f)}`, { got, want }) };
  }
  const parsed = parseBhs(buf.subarray(0, BHS_LENGTH), buf.subarray(BHS_LENGTH, headerEnd), buf.subarray(dataStart, dataEnd));
  if (!parsed.ok) return { kind: 'error', error: parsed.error };
  return { kind: 'pdu', pdu: parsed.pdu, length: f.length };
}

/**
 * Cuts a byte stream into PDUs: chunks may split a PDU anywhere or carry several.
 * Bytes are copied once per PDU, however the stream was chunked. After an error it
 * yields nothing more: the stream has lost its framing.
 */
export class PduReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private failed: MotusError | undefined;
  /** Sees every whole frame (with digests) before it is decoded: for traffic captures. */
  onFrame: ((frame: Buffer) => void) | undefined;

  constructor(public options: FrameOptions) {}

  get pendingBytes(): number {
    return this.buffered;
  }

  push(chunk: Buffer): { pdus: Pdu[]; error?: MotusError } {
    const pdus: Pdu[] = [];
    if (this.failed) return { pdus, error: this.failed };
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    for (;;) {
      if (this.buffered < BHS_LENGTH) return { pdus };
      const head = this.take(BHS_LENGTH, false);
      const f = frameLength(head, this.options);
      if (!f.ok) return this.fail(pdus, f.error);
      if (this.buffered < f.length) return { pdus };
      const frame = this.take(f.length, true);
      this.onFrame?.(frame);
      const r = decodeFrame(frame, this.options);
      if (r.kind === 'error') return this.fail(pdus, r.error);
      if (r.kind === 'need') return this.fail(pdus, iscsiError('MOTUS_E_ISCSI_PROTOCOL', 'frame length disagreement'));
      pdus.push(r.pdu);
    }
  }

  private fail(pdus: Pdu[], error: MotusError): { pdus: Pdu[]; error: MotusError } {
    this.failed = error;
    this.chunks = [];
    this.buffered = 0;
    return { pdus, error };
  }

  /** The first n buffered bytes, removed from the queue when `consume`. */
  private take(n: number, consume: boolean): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length >= n) out = first.subarray(0, n);
    else {
      out = Buffer.allocUnsafe(n);
      let copied = 0;
      for (const c of this.chunks) {
        const k = Math.min(c.length, n - copied);
        c.copy(out, copied, 0, k);
        copied += k;
        if (copied === n) break;
      }
    }
    if (consume) {
      let left = n;
      while (left > 0) {
        const c = this.chunks[0]!;
        if (c.length <= left) {
          this.chunks.shift();
          left -= c.length;
        } else {
          this.chunks[0] = c.subarray(left);
          left = 0;
        }
      }
      this.buffered -= n;
    }
    return out;
  }
}
