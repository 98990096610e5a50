import { type ScsiResult, badResponse, ok } from './errors.js';

export interface Capacity {
  /** Address of the last logical block. */
  lastLba: bigint;
  blockSize: number;
  blocks: bigint;
  bytes: bigint;
  protectionEnabled: boolean;
  protectionType: number;
  logicalBlocksPerPhysicalExponent: number;
  /** Logical block provisioning (thin) enabled. */
  thinProvisioned: boolean;
  /** Unmapped blocks read back as zeros. */
  unmappedReadsZero: boolean;
  lowestAlignedLba: number;
}

/** READ CAPACITY(16) parameter data; the first 12 bytes are required, later fields default to 0. */
export function parseReadCapacity16(buf: Buffer): ScsiResult<Capacity> {
  if (buf.length < 12) return badResponse('READ CAPACITY(16) data: shorter than 12 bytes', { length: buf.length });
  const lastLba = buf.readBigUInt64BE(0);
  const blockSize = buf.readUInt32BE(8);
  if (blockSize === 0) return badResponse('READ CAPACITY(16) data: block size 0');
  const byte = (i: number): number => (i < buf.length ? buf[i]! : 0);
  const blocks = lastLba + 1n;
  return ok({
    lastLba,
    blockSize,
    blocks,
    bytes: blocks * BigInt(blockSize),
    protectionEnabled: (byte(12) & 0x01) !== 0,
    protectionType: (byte(12) >> 1) & 0x07,
    logicalBlocksPerPhysicalExponent: byte(13) & 0x0f,
    thinProvisioned: (byte(14) & 0x80) !== 0,
    unmappedReadsZero: (byte(14) & 0x40) !== 0,
    lowestAlignedLba: ((byte(14) & 0x3f) << 8) | byte(15),
  });
}
