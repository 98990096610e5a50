import { MotusError, type MotusErrorCode } from '../errors.js';

/**
 * Codes the SCSI layer raises beyond the SDK's table; they belong in
 * sdk/src/errors.ts and docs/errors.md once the SDK's owner adds them. Until then
 * they travel in a MotusError through the one cast in `ScsiError`.
 */
export const SCSI_ERROR_CODES = {
  MOTUS_E_SCSI_NOT_READY: 'The logical unit is not ready (becoming ready, medium absent, needs a start); the data carries ASC/ASCQ.',
  MOTUS_E_SCSI_MEDIUM_ERROR: 'The device hit an unrecovered medium or hardware error; the data carries ASC/ASCQ and the failing LBA when known.',
  MOTUS_E_SCSI_ILLEGAL_REQUEST: 'The device refused the command: unsupported operation, invalid field, LBA out of range; data.unsupported is true when the command is not implemented.',
  MOTUS_E_SCSI_UNIT_ATTENTION: 'The device reports a change (reset, capacity change, reservations preempted or released); retrying the command normally succeeds.',
  MOTUS_E_SCSI_RESERVATION_CONFLICT: 'Another initiator holds a persistent reservation on the LUN that forbids this command.',
  MOTUS_E_SCSI_MISCOMPARE: 'COMPARE AND WRITE found data different from the expected data, so nothing was written; data.offset is where.',
  MOTUS_E_SCSI_DATA_PROTECT: 'The LUN is write protected.',
  MOTUS_E_SCSI_ABORTED: 'The device aborted the command (ABORTED COMMAND sense key, or TASK ABORTED status).',
  MOTUS_E_SCSI_CHECK_CONDITION: 'CHECK CONDITION with another sense key; the data carries key, ASC and ASCQ.',
  MOTUS_E_SCSI_BUSY: 'The device is busy or its task set is full; try again later.',
  MOTUS_E_SCSI_STATUS: 'The device returned an unexpected SCSI status byte.',
  MOTUS_E_SCSI_BAD_RESPONSE: 'Parameter data or sense data from the device is malformed or truncated.',
} as const satisfies Record<string, string>;

export type ScsiErrorCode = keyof typeof SCSI_ERROR_CODES;

export class ScsiError extends MotusError {
  constructor(code: ScsiErrorCode, message: string, data: Record<string, unknown> = {}) {
    // The one place where these codes meet the SDK's closed code type.
    super(code as unknown as MotusErrorCode, message, data);
  }
  get scsiCode(): ScsiErrorCode {
    return this.code as unknown as ScsiErrorCode;
  }
}

/** Every parser answers with one of these: never a throw. */
export type ScsiResult<T> = { ok: true; value: T } | { ok: false; error: ScsiError };

export function ok<T>(value: T): ScsiResult<T> {
  return { ok: true, value };
}

export function badResponse<T>(what: string, data: Record<string, unknown> = {}): ScsiResult<T> {
  return { ok: false, error: new ScsiError('MOTUS_E_SCSI_BAD_RESPONSE', `malformed ${what}`, data) };
}

export function isScsiError(err: unknown, code?: ScsiErrorCode): err is ScsiError {
  return err instanceof ScsiError && (code === undefined || err.scsiCode === code);
}
