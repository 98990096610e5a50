import {
  type Capacity, compareAndWrite, type DeviceIdentification, inquiry, type MotusError, parseDeviceIdentification, parseReadCapacity16,
  parseReadKeys, parseReadReservation, parseStandardInquiry, parseSupportedVpdPages, parseUnitSerialNumber, persistentReserveIn,
  persistentReserveOut, PrInAction, read16, readCapacity16, type RegisteredKeys, type Reservation, type ReservationTypeName,
  isScsiError, type ScsiCommand, type ScsiResult, type StandardInquiry, statusError, synchronizeCache16, testUnitReady, write16,
} from '@motus/sdk';
import { iscsiError } from './errors.js';
import type { CommandResult, Session } from './session.js';

export interface LunOptions {
  /** Largest transfer one READ/WRITE carries; larger requests are split and issued together. */
  maxTransferBytes?: number;
  timeoutMs?: number;
}

/** A LUN raises one unit attention per event; a few in a row (reset, then registrations preempted) are normal. */
const UNIT_ATTENTION_RETRIES = 4;

function unwrap<T>(r: ScsiResult<T>): T {
  if (!r.ok) throw r.error;
  return r.value;
}

/**
 * One logical unit behind a session: SCSI operations by name, with failures
 * as typed errors (MOTUS_E_SCSI_* from the SCSI layer, MOTUS_E_ISCSI_* and
 * MOTUS_E_TIMEOUT from the transport).
 */
export class Lun {
  private blockSizeCache: number | undefined;
  private readonly maxTransferBytes: number;

  constructor(private readonly session: Session, readonly number: number, readonly address: Buffer, private readonly options: LunOptions = {}) {
    this.maxTransferBytes = options.maxTransferBytes ?? 1024 * 1024;
  }

  /** Runs a command and turns a non-GOOD status into its error. */
  async command(cmd: ScsiCommand, opts: { idempotent?: boolean; timeoutMs?: number; dataInBuffer?: Buffer } = {}): Promise<CommandResult> {
    const timeoutMs = opts.timeoutMs ?? this.options.timeoutMs;
    for (let attempt = 0; ; attempt++) {
      const result = await this.session.execute({
        lun: this.address, cdb: cmd.cdb, dataIn: cmd.dataIn, name: cmd.name,
        ...(cmd.dataOut ? { dataOut: cmd.dataOut } : {}),
        ...(opts.dataInBuffer ? { dataInBuffer: opts.dataInBuffer } : {}),
        ...(timeoutMs !== undefined ? { timeoutMs } : {}),
        ...(opts.idempotent !== undefined ? { idempotent: opts.idempotent } : {}),
      });
      const error: MotusError | undefined = statusError(result.status, result.sense, cmd.name);
      if (!error) return result;
      // A unit attention reports an event and is the only thing the command did;
      // remember the event (a preempted reservation matters) and run the command again.
      if (isScsiError(error, 'MOTUS_E_SCSI_UNIT_ATTENTION') && attempt < UNIT_ATTENTION_RETRIES) {
        this.unitAttentions.push({ asc: Number(error.data['asc']), ascq: Number(error.data['ascq']), reason: String(error.data['reason']), at: new Date() });
        if (this.unitAttentions.length > 32) this.unitAttentions.shift();
        continue;
      }
      throw error;
    }
  }

  /** Unit attentions met (and retried past) on this LUN, latest last: resets, preempted registrations, capacity changes. */
  readonly unitAttentions: Array<{ asc: number; ascq: number; reason: string; at: Date }> = [];

  async testUnitReady(): Promise<void> {
    await this.command(testUnitReady());
  }

  async inquiry(): Promise<StandardInquiry> {
    return unwrap(parseStandardInquiry((await this.command(inquiry())).data));
  }

  async vpdPages(): Promise<number[]> {
    return unwrap(parseSupportedVpdPages((await this.command(inquiry(0x00))).data));
  }

  async serialNumber(): Promise<string> {
    return unwrap(parseUnitSerialNumber((await this.command(inquiry(0x80))).data));
  }

  async deviceIdentification(): Promise<DeviceIdentification> {
    return unwrap(parseDeviceIdentification((await this.command(inquiry(0x83, 1024))).data));
  }

  async capacity(): Promise<Capacity> {
    const cap = unwrap(parseReadCapacity16((await this.command(readCapacity16())).data));
    this.blockSizeCache = cap.blockSize;
    return cap;
  }

  async blockSize(): Promise<number> {
    return this.blockSizeCache ?? (await this.capacity()).blockSize;
  }

  async read(lba: bigint | number, blocks: number): Promise<Buffer> {
    const bs = await this.blockSize();
    const per = Math.max(1, Math.floor(this.maxTransferBytes / bs));
    const out = Buffer.allocUnsafe(blocks * bs);
    const parts: Array<Promise<unknown>> = [];
    for (let done = 0; done < blocks; done += per) {
      const n = Math.min(per, blocks - done);
      const cmd = read16(BigInt(lba) + BigInt(done), n, bs);
      const slice = out.subarray(done * bs, (done + n) * bs);
      parts.push(this.command(cmd, { dataInBuffer: slice }).then((r) => {
        if (r.data.length !== slice.length) {
          throw iscsiError('MOTUS_E_ISCSI_PROTOCOL', `${cmd.name} at LBA ${BigInt(lba) + BigInt(done)} returned ${r.data.length} of ${slice.length} bytes`, { residual: r.residual });
        }
      }));
    }
    await Promise.all(parts);
    return out;
  }

  /** The buffer goes to the socket uncopied (and again on a retry): leave it unchanged until the write settles. */
  async write(lba: bigint | number, data: Buffer, options: { fua?: boolean } = {}): Promise<void> {
    const bs = await this.blockSize();
    const per = Math.max(1, Math.floor(this.maxTransferBytes / bs)) * bs;
    const parts: Array<Promise<unknown>> = [];
    for (let at = 0; at < data.length; at += per) {
      const chunk = data.subarray(at, Math.min(data.length, at + per));
      parts.push(this.command(write16(BigInt(lba) + BigInt(at / bs), chunk, bs, options)));
    }
    await Promise.all(parts);
  }

  async sync(): Promise<void> {
    await this.command(synchronizeCache16());
  }

  /**
   * Writes `write` only if the blocks hold `verify` now (atomic test-and-set).
   * Rejects with MOTUS_E_SCSI_MISCOMPARE when they differ, and with
   * MOTUS_E_SCSI_ILLEGAL_REQUEST (data.unsupported) on targets without it, such as tgt.
   */
  async compareAndWrite(lba: bigint | number, verify: Buffer, write: Buffer): Promise<void> {
    await this.command(compareAndWrite(lba, verify, write, await this.blockSize()), { idempotent: false });
  }

  // ---- SCSI-3 persistent reservations ----

  async readKeys(): Promise<RegisteredKeys> {
    const r = unwrap(parseReadKeys((await this.command(persistentReserveIn(PrInAction.READ_KEYS))).data));
    return { generation: r.generation, keys: r.keys };
  }

  async readReservation(): Promise<Reservation> {
    return unwrap(parseReadReservation((await this.command(persistentReserveIn(PrInAction.READ_RESERVATION))).data));
  }

  /** Registers `key` for this I_T nexus (`oldKey` is the current registration, 0 when none). */
  async register(key: bigint, oldKey = 0n): Promise<void> {
    await this.command(persistentReserveOut('REGISTER', { key: oldKey, serviceActionKey: key }), { idempotent: false });
  }

  /** Registers `key` whatever was registered before: what a host does after a restart. */
  async registerAndIgnore(key: bigint): Promise<void> {
    await this.command(persistentReserveOut('REGISTER_AND_IGNORE_EXISTING_KEY', { serviceActionKey: key }));
  }

  async unregister(key: bigint): Promise<void> {
    await this.command(persistentReserveOut('REGISTER', { key, serviceActionKey: 0n }), { idempotent: false });
  }

  async reserve(key: bigint, type: ReservationTypeName): Promise<void> {
    await this.command(persistentReserveOut('RESERVE', { key, type }));
  }

  async release(key: bigint, type: ReservationTypeName): Promise<void> {
    await this.command(persistentReserveOut('RELEASE', { key, type }));
  }

  /** Removes `victim`'s registration (and its reservation, which passes to us with `type`). */
  async preempt(key: bigint, victim: bigint, type: ReservationTypeName): Promise<void> {
    await this.command(persistentReserveOut('PREEMPT', { key, serviceActionKey: victim, type }), { idempotent: false });
  }

  /** Removes every registration and the reservation. */
  async clear(key: bigint): Promise<void> {
    await this.command(persistentReserveOut('CLEAR', { key }), { idempotent: false });
  }
}
