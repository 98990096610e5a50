import { MotusError, type MotusErrorCode } from '@motus/sdk';

/**
 * The SDK's codes for iSCSI failures (listed in sdk/src/errors.ts). Timeouts use
 * MOTUS_E_TIMEOUT; SCSI failures the MOTUS_E_SCSI_* codes.
 */
export type IscsiErrorCode = Extract<MotusErrorCode, `MOTUS_E_ISCSI_${string}`>;

export function iscsiError(code: IscsiErrorCode | MotusErrorCode, message: string, data: Record<string, unknown> = {}, options?: { cause?: unknown }): MotusError {
  return new MotusError(code, message, data, options);
}

export function isIscsiError(err: unknown, code?: IscsiErrorCode | MotusErrorCode): err is MotusError {
  return err instanceof MotusError && (code === undefined || err.code === code);
}
