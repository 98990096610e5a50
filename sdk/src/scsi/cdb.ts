/**
 * CDB builders. Each returns the CDB and, for commands that move data, what the
 * transport must carry: `dataIn` bytes to expect or the `dataOut` buffer to send.
 */

export interface ScsiCommand {
  /** The operation's name, for error messages. */
  readonly name: string;
  readonly cdb: Buffer;
  /** Bytes the device will send back (allocation length or transfer size). */
  readonly dataIn: number;
  /** Bytes sent to the device. */
  readonly dataOut?: Buffer;
}

export const ScsiOpcode = {
  TEST_UNIT_READY: 0x00,
  INQUIRY: 0x12,
  SYNCHRONIZE_CACHE_10: 0x35,
  PERSISTENT_RESERVE_IN: 0x5e,
  PERSISTENT_RESERVE_OUT: 0x5f,
  READ_16: 0x88,
  COMPARE_AND_WRITE: 0x89,
  WRITE_16: 0x8a,
  SYNCHRONIZE_CACHE_16: 0x91,
  SERVICE_ACTION_IN_16: 0x9e,
  REPORT_LUNS: 0xa0,
} as const;

export const PrInAction = { READ_KEYS: 0x00, READ_RESERVATION: 0x01 } as const;

export const PrOutAction = {
  REGISTER: 0x00,
  RESERVE: 0x01,
  RELEASE: 0x02,
  CLEAR: 0x03,
  PREEMPT: 0x04,
  PREEMPT_AND_ABORT: 0x05,
  REGISTER_AND_IGNORE_EXISTING_KEY: 0x06,
} as const;

export type PrOutActionName = keyof typeof PrOutAction;

export const ReservationType = {
  WRITE_EXCLUSIVE: 0x1,
  EXCLUSIVE_ACCESS: 0x3,
  WRITE_EXCLUSIVE_REGISTRANTS_ONLY: 0x5,
  EXCLUSIVE_ACCESS_REGISTRANTS_ONLY: 0x6,
  WRITE_EXCLUSIVE_ALL_REGISTRANTS: 0x7,
  EXCLUSIVE_ACCESS_ALL_REGISTRANTS: 0x8,
} as const;

export type ReservationTypeName = keyof typeof ReservationType;

function u64(lba: bigint | number): bigint {
  const v = BigInt(lba);
  if (v < 0n || v > 0xffffffffffffffffn) throw new RangeError(`LBA ${v} outside 0..2^64-1`);
  return v;
}

function u32(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) throw new RangeError(`${what} ${value} outside 0..2^32-1`);
  return value;
}

export function testUnitReady(): ScsiCommand {
  return { name: 'TEST UNIT READY', cdb: Buffer.alloc(6), dataIn: 0 };
}

/** Standard INQUIRY when `page` is undefined, else the VPD page. */
export function inquiry(page?: number, allocationLength = 255): ScsiCommand {
  const cdb = Buffer.alloc(6);
  cdb[0] = ScsiOpcode.INQUIRY;
  if (page !== undefined) {
    cdb[1] = 0x01;
    cdb[2] = page & 0xff;
  }
  cdb.writeUInt16BE(allocationLength & 0xffff, 3);
  const name = page === undefined ? 'INQUIRY' : `INQUIRY VPD 0x${page.toString(16).padStart(2, '0')}`;
  return { name, cdb, dataIn: allocationLength & 0xffff };
}

export function reportLuns(allocationLength = 4096, selectReport = 0): ScsiCommand {
  const cdb = Buffer.alloc(12);
  cdb[0] = ScsiOpcode.REPORT_LUNS;
  cdb[2] = selectReport & 0xff;
  cdb.writeUInt32BE(u32(allocationLength, 'allocation length'), 6);
  return { name: 'REPORT LUNS', cdb, dataIn: allocationLength };
}

export function readCapacity16(allocationLength = 32): ScsiCommand {
  const cdb = Buffer.alloc(16);
  cdb[0] = ScsiOpcode.SERVICE_ACTION_IN_16;
  cdb[1] = 0x10;
  cdb.writeUInt32BE(u32(allocationLength, 'allocation length'), 10);
  return { name: 'READ CAPACITY(16)', cdb, dataIn: allocationLength };
}

export interface RwOptions {
  /** Force unit access: the device completes only once the data is on stable media. */
  fua?: boolean;
}

export function read16(lba: bigint | number, blocks: number, blockSize: number, options: RwOptions = {}): ScsiCommand {
  const cdb = Buffer.alloc(16);
  cdb[0] = ScsiOpcode.READ_16;
  if (options.fua) cdb[1] = 0x08;
  cdb.writeBigUInt64BE(u64(lba), 2);
  cdb.writeUInt32BE(u32(blocks, 'block count'), 10);
  return { name: 'READ(16)', cdb, dataIn: blocks * blockSize };
}

export function write16(lba: bigint | number, data: Buffer, blockSize: number, options: RwOptions = {}): ScsiCommand {
  if (blockSize <= 0 || data.length % blockSize !== 0) throw new RangeError(`write of ${data.length} bytes is not a whole number of ${blockSize}-byte blocks`);
  const cdb = Buffer.alloc(16);
  cdb[0] = ScsiOpcode.WRITE_16;
  if (options.fua) cdb[1] = 0x08;
  cdb.writeBigUInt64BE(u64(lba), 2);
  cdb.writeUInt32BE(u32(data.length / blockSize, 'block count'), 10);
  return { name: 'WRITE(16)', cdb, dataIn: 0, dataOut: data };
}

/** Whole LUN when `blocks` is 0. */
export function synchronizeCache10(lba = 0, blocks = 0): ScsiCommand {
  const cdb = Buffer.alloc(10);
  cdb[0] = ScsiOpcode.SYNCHRONIZE_CACHE_10;
  cdb.writeUInt32BE(u32(lba, 'LBA'), 2);
  cdb.writeUInt16BE(blocks & 0xffff, 7);
  return { name: 'SYNCHRONIZE CACHE(10)', cdb, dataIn: 0 };
}

export function synchronizeCache16(lba: bigint | number = 0, blocks = 0): ScsiCommand {
  const cdb = Buffer.alloc(16);
  cdb[0] = ScsiOpcode.SYNCHRONIZE_CACHE_16;
  cdb.writeBigUInt64BE(u64(lba), 2);
  cdb.writeUInt32BE(u32(blocks, 'block count'), 10);
  return { name: 'SYNCHRONIZE CACHE(16)', cdb, dataIn: 0 };
}

export function persistentReserveIn(action: number, allocationLength = 8192): ScsiCommand {
  const cdb = Buffer.alloc(10);
  cdb[0] = ScsiOpcode.PERSISTENT_RESERVE_IN;
  cdb[1] = action & 0x1f;
  cdb.writeUInt16BE(allocationLength & 0xffff, 7);
  const name = action === PrInAction.READ_KEYS ? 'PERSISTENT RESERVE IN (READ KEYS)' : action === PrInAction.READ_RESERVATION ? 'PERSISTENT RESERVE IN (READ RESERVATION)' : 'PERSISTENT RESERVE IN';
  return { name, cdb, dataIn: allocationLength & 0xffff };
}

export interface PrOutParams {
  /** The key this initiator is registered with (0 when not yet registered). */
  key?: bigint;
  /** REGISTER: the new key (0 unregisters); PREEMPT: the key to preempt. */
  serviceActionKey?: bigint;
  /** Needed by RESERVE, RELEASE and PREEMPT. */
  type?: ReservationTypeName;
  /** Activate persist through power loss. */
  aptpl?: boolean;
}

/** PERSISTENT RESERVE OUT with the basic 24-byte parameter list. */
export function persistentReserveOut(action: PrOutActionName, params: PrOutParams = {}): ScsiCommand {
  const cdb = Buffer.alloc(10);
  cdb[0] = ScsiOpcode.PERSISTENT_RESERVE_OUT;
  cdb[1] = PrOutAction[action];
  // Scope 0 (LU_SCOPE) in the high nibble; the type is ignored by REGISTER and CLEAR.
  cdb[2] = params.type ? ReservationType[params.type] : 0;
  cdb.writeUInt32BE(24, 5);
  const list = Buffer.alloc(24);
  list.writeBigUInt64BE(BigInt.asUintN(64, params.key ?? 0n), 0);
  list.writeBigUInt64BE(BigInt.asUintN(64, params.serviceActionKey ?? 0n), 8);
  if (params.aptpl) list[20] = 0x01;
  return { name: `PERSISTENT RESERVE OUT (${action.replace(/_/g, ' ')})`, cdb, dataIn: 0, dataOut: list };
}

/** COMPARE AND WRITE: `verify` is the expected content, `write` the new content, same length. */
export function compareAndWrite(lba: bigint | number, verify: Buffer, write: Buffer, blockSize: number): ScsiCommand {
  if (verify.length !== write.length || blockSize <= 0 || verify.length % blockSize !== 0) {
    throw new RangeError('COMPARE AND WRITE needs verify and write buffers of equal length in whole blocks');
  }
  const blocks = verify.length / blockSize;
  if (blocks < 1 || blocks > 255) throw new RangeError(`COMPARE AND WRITE covers 1..255 blocks, not ${blocks}`);
  const cdb = Buffer.alloc(16);
  cdb[0] = ScsiOpcode.COMPARE_AND_WRITE;
  cdb.writeBigUInt64BE(u64(lba), 2);
  cdb[13] = blocks;
  return { name: 'COMPARE AND WRITE', cdb, dataIn: 0, dataOut: Buffer.concat([verify, write]) };
}
