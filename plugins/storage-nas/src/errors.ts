import { MotusError, type MotusErrorCode } from '@motus/sdk';

/**
 * Error codes this package raises beyond the SDK's table. They are meant to be
 * added to sdk/src/errors.ts and docs/errors.md by the SDK's owner; until then
 * `nasError` carries them in a MotusError (same shape, same toJSON). Timeouts use
 * the SDK's MOTUS_E_TIMEOUT.
 */
export const NAS_ERROR_CODES = {
  MOTUS_E_NFS_PROTOCOL: 'The NFS server (or portmapper) sent bytes that are not valid ONC RPC/XDR, or a record past the size limit.',
  MOTUS_E_NFS_RPC_REJECTED: 'The server refused an RPC call: program or version not offered, procedure unknown, bad credentials or garbage arguments.',
  MOTUS_E_NFS_DISCONNECTED: 'The connection to the NFS server was lost and could not be restored, or the client was closed.',
  MOTUS_E_NFS_MOUNT: 'The MOUNT service refused the export (no such export, permission denied, …); the data carries the mount status.',
  MOTUS_E_NFS_NOT_FOUND: 'No such file or directory on the export; the data names the path.',
  MOTUS_E_NFS_EXISTS: 'A file or directory of that name already exists on the export.',
  MOTUS_E_NFS_ACCESS: 'The server denied the operation (permission, read-only export).',
  MOTUS_E_NFS_NO_SPACE: 'The export is full, over quota, or the file would be too large.',
  MOTUS_E_NFS_STALE: 'The file handle is no longer valid (the file was removed or the export changed).',
  MOTUS_E_NFS_WRITE_VERIFIER: 'The server kept rebooting during a write, so unstable data could not be committed.',
  MOTUS_E_NFS_ERROR: 'The server answered with another NFS error; the data carries its status name.',
  MOTUS_E_NFS_LOCK_HELD: 'A VM disk lock on the datastore is held by another live host; the data names the owner.',
  MOTUS_E_NFS_LOCK_LOST: 'This host lost a VM disk lock (removed, taken over, or not refreshed in time) and must stop writing.',
} as const satisfies Record<string, string>;

export type NasErrorCode = keyof typeof NAS_ERROR_CODES;

export function nasError(
  code: NasErrorCode | MotusErrorCode,
  message: string,
  data: Record<string, unknown> = {},
  options?: { cause?: unknown },
): MotusError {
  // The cast is the one place where these codes meet the SDK's closed code type.
  return new MotusError(code as MotusErrorCode, message, data, options);
}

/** Narrows an error to one of this package's codes or the SDK's. */
export function isNasError(err: unknown, code?: NasErrorCode | MotusErrorCode): err is MotusError {
  return err instanceof MotusError && (code === undefined || (err.code as string) === code);
}
