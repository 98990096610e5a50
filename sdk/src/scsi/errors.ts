import { MotusError, type MotusErrorCode } from '../errors.js';

/** The SDK's codes for SCSI failures (listed with the others in ../errors.ts). */
export type ScsiErrorCode = Extract<MotusErrorCode, `MOTUS_E_SCSI_${string}`>;

export class ScsiError extends MotusError {
  constructor(code: ScsiErrorCode, message: string, data: Record<string, unknown> = {}) {
    super(code, message, data);
  }
  get scsiCode(): ScsiErrorCode {
    return this.code as ScsiErrorCode;
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
