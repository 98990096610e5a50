import { MotusError, type MotusErrorCode } from '@motus/sdk';

/**
 * Error codes this package raises beyond the SDK's table, for the SDK's owner to
 * add to sdk/src/errors.ts and docs/errors.md. Timeouts use the SDK's
 * MOTUS_E_TIMEOUT; SCSI failures use the SCSI layer's MOTUS_E_SCSI_* codes.
 */
export const ISCSI_ERROR_CODES = {
  MOTUS_E_ISCSI_PROTOCOL: 'The target sent bytes that are not a valid iSCSI PDU, or a PDU that breaks the protocol (unknown task tag, out-of-window sequence number, data past the buffer).',
  MOTUS_E_ISCSI_DIGEST: 'A header or data digest (CRC32C) did not match: the bytes were damaged on the way.',
  MOTUS_E_ISCSI_CONNECT: 'No TCP connection could be made to the portal; the data names it.',
  MOTUS_E_ISCSI_LOGIN: 'The target refused the login (target not found, not authorized, too many connections, …); the data carries the status class and detail.',
  MOTUS_E_ISCSI_AUTH: 'CHAP authentication failed: wrong user or secret, or the target failed mutual CHAP.',
  MOTUS_E_ISCSI_NEGOTIATION: 'Login parameter negotiation failed: the target answered a key outside the RFC 7143 rules or refused one we require.',
  MOTUS_E_ISCSI_REJECT: 'The target rejected a PDU we sent (Reject PDU); the data carries the reason.',
  MOTUS_E_ISCSI_DISCONNECTED: 'The connection to the target was lost and not restored in time, or the session was closed.',
  MOTUS_E_ISCSI_TASK_ABORTED: 'The command was aborted (task management) before it completed.',
  MOTUS_E_ISCSI_TARGET_FAILURE: 'The target answered a command with an iSCSI service response other than "command completed".',
} as const satisfies Record<string, string>;

export type IscsiErrorCode = keyof typeof ISCSI_ERROR_CODES;

export function iscsiError(code: IscsiErrorCode | MotusErrorCode, message: string, data: Record<string, unknown> = {}, options?: { cause?: unknown }): MotusError {
  // The one place where these codes meet the SDK's closed code type.
  return new MotusError(code as MotusErrorCode, message, data, options);
}

export function isIscsiError(err: unknown, code?: IscsiErrorCode | MotusErrorCode): err is MotusError {
  return err instanceof MotusError && (code === undefined || (err.code as string) === code);
}
