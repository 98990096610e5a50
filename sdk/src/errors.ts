/**
 * Errors with stable codes. Every code is listed here with the sentence that
 * docs/errors.md carries; a unit test keeps the two in step.
 */
export const ERROR_CODES = {
  MOTUS_E_INTERNAL: 'An unexpected internal error; the message names the cause.',
  MOTUS_E_INVALID_REQUEST: 'A request (API body, CLI arguments, VM spec) is malformed; the data names the field.',
  MOTUS_E_UNAUTHORIZED: 'No valid bearer token was presented.',
  MOTUS_E_NOT_FOUND: 'The addressed resource (route, migration, task) does not exist.',
  MOTUS_E_SITE_INVALID: 'The site file is not valid; the message names the field and line.',
  MOTUS_E_PLUGIN_NOT_FOUND: 'A plugin named in the site file cannot be found or imported.',
  MOTUS_E_PLUGIN_INVALID: 'A plugin module does not export a valid definePlugin() manifest.',
  MOTUS_E_PLUGIN_API_MISMATCH: 'A plugin was written for another plugin API version.',
  MOTUS_E_PLUGIN_CONFIG: "A plugin's config slice fails the plugin's own schema.",
  MOTUS_E_PLUGIN_CONFLICT: 'Two plugins provide the same single-provider capability, or a dependency is missing.',
  MOTUS_E_PLUGIN_SETUP: "A plugin's setup() failed.",
  MOTUS_E_METRIC_INVALID: "A metric's name or labels break the naming rules (motus_ prefix, snake case, counters end in _total), or one name is declared twice differently; the data names the metric.",
  MOTUS_E_NO_HYPERVISOR: 'No plugin provides a hypervisor driver on an agent.',
  MOTUS_E_VM_NOT_FOUND: 'No VM of that name is in the inventory.',
  MOTUS_E_VM_EXISTS: 'A VM of that name already exists.',
  MOTUS_E_VM_NOT_RUNNING: 'The VM is not running, so it cannot be migrated or stopped.',
  MOTUS_E_VM_BUSY: 'The VM is already being migrated.',
  MOTUS_E_HOST_NOT_FOUND: 'No host of that name is registered.',
  MOTUS_E_HOST_DOWN: 'The host is registered but its agent does not answer.',
  MOTUS_E_SAME_HOST: 'The destination is the host the VM already runs on.',
  MOTUS_E_INSUFFICIENT_MEMORY: 'The destination has not enough free memory for the VM.',
  MOTUS_E_MIGRATION_VETOED: 'A plugin vetoed the migration; the data carries its reason.',
  MOTUS_E_MIGRATION_FAILED: 'The migration failed; the data names the phase and the cause. The VM keeps running on the source.',
  MOTUS_E_MIGRATION_CANCELLED: 'The migration was cancelled; the VM keeps running on the source.',
  MOTUS_E_AFTER_SWITCHOVER: 'A step after the VM resumed on its destination failed with an uncoded error (the message names the step); the VM stays on the destination and the migration completes with a warning.',
  MOTUS_E_MIGRATION_TIMEOUT: 'The migration did not finish within its time limit and was rolled back.',
  MOTUS_E_LINK_PROBE: 'The link-rate probe between two agents before a migration failed; the migration goes on at the site cap.',
  MOTUS_E_QMP_PROTOCOL: 'QEMU sent bytes that are not valid QMP.',
  MOTUS_E_QMP_COMMAND: 'QEMU answered a QMP command with an error; the data carries its class and description.',
  MOTUS_E_QMP_TIMEOUT: 'QEMU did not answer a QMP command in time.',
  MOTUS_E_QMP_DISCONNECTED: 'The QMP connection closed (QEMU exited or crashed).',
  MOTUS_E_QEMU_LAUNCH: 'QEMU could not be started; the message carries its stderr.',
  MOTUS_E_QEMU_NOT_INSTALLED: 'qemu-system-x86_64 is not installed; run scripts/install-system-deps.sh.',
  MOTUS_E_AGENT_UNREACHABLE: 'The server could not reach an agent, or the agent answered with an error.',
  MOTUS_E_TIMEOUT: 'A network wait ran out of time.',
  MOTUS_E_FORBIDDEN: "The token's user lacks the role the request needs (viewer < operator < admin); the data names both.",
  MOTUS_E_USER_EXISTS: 'A user of that name already exists.',
  MOTUS_E_RESERVATION_FAILED: 'A high-priority migration could not reserve the VM\'s memory on its destination, so it did not start.',
  MOTUS_E_FENCED: "A host refuses to run a VM whose ownership is not settled: the storage lease of its disks is held by another host, or its state already went to the destination; the data names the VM, the host and why.",
  MOTUS_E_NO_DESTINATION: 'No host can take the VM (every host breaks a hard constraint); the data lists each host and its reasons.',
  MOTUS_E_PLACEMENT_RULE: 'A migration with an explicit destination would break a placement rule (affinity, anti-affinity, vm-host) or leave its cluster; nothing moved. The data names each rule and reason; ignoreRules (motus migrate --force) overrides, audited.',
  MOTUS_E_PLACEMENT_MANUAL: 'A VM was started without a host in a cluster whose balancing mode is manual, so Motus does not place it; the message and data carry the ranked hosts to choose from (--host).',
  MOTUS_E_EVACUATION_BLOCKED: 'A host cannot be emptied because some VMs have nowhere to go; nothing was moved, and the data lists each VM with every host\'s reasons.',
  MOTUS_E_AUDIT_TAMPERED: 'The audit trail does not verify: a record was edited, deleted or inserted; the data names the first bad record.',
  MOTUS_E_PAYLOAD_TOO_LARGE: 'A request body is larger than the API accepts (1 MiB); nothing was read past the limit.',
  MOTUS_E_RATE_LIMITED: 'Too many failed authentications from this address; the data says how many seconds to wait (also the Retry-After header).',
  MOTUS_E_TLS_UNAVAILABLE: "The site requires encrypted migration (migration.encryption: required) and a host of the migration has no migration TLS credentials; the data names the host and why. Nothing was started.",
  MOTUS_E_TLS: "A TLS connection was refused: the peer's certificate is not from the site CA, names another host or role, or no CA was given to trust; the message says which.",
  MOTUS_E_PRIVILEGES: 'motusd lacks something it needs as the user it runs as (a writable state folder, CAP_NET_BIND_SERVICE for a port below 1024); the message lists each with how to give it, the data has `missing` and `uid`. Nothing was started.',
  MOTUS_E_CA: 'The site CA could not create, sign or rotate a certificate (openssl missing or failing, unreadable CA files); the message carries the cause.',
  MOTUS_E_NFS_PROTOCOL: 'The NFS server or portmapper sent invalid ONC RPC/XDR, or a record over the size limit.',
  MOTUS_E_NFS_RPC_REJECTED: 'The NFS server refused the RPC call: program or version not offered, procedure unknown, bad credentials, garbage arguments, system error.',
  MOTUS_E_NFS_DISCONNECTED: 'The NFS connection was lost and not restored, or the client was closed.',
  MOTUS_E_NFS_MOUNT: 'MOUNT refused the export (the data carries the mount status), or the export accepts only Kerberos.',
  MOTUS_E_NFS_NOT_FOUND: 'No such file or directory on the NFS export.',
  MOTUS_E_NFS_EXISTS: 'A file or directory of that name already exists on the NFS export.',
  MOTUS_E_NFS_ACCESS: 'Permission denied on the NFS export, or the export is read-only.',
  MOTUS_E_NFS_NO_SPACE: 'The NFS export is full, over quota, or the file would be too large.',
  MOTUS_E_NFS_STALE: 'The NFS file handle is no longer valid.',
  MOTUS_E_NFS_WRITE_VERIFIER: 'The NFS server kept rebooting during a write, so unstable data could not be committed.',
  MOTUS_E_NFS_ERROR: 'Any other NFS status; the data carries its name.',
  MOTUS_E_NFS_LOCK_HELD: 'Another live host holds the VM disk lock on the NFS datastore; the data names the owner.',
  MOTUS_E_NFS_LOCK_LOST: 'This host lost its VM disk lock on the NFS datastore and must stop writing.',
  MOTUS_E_DATASTORE_NOT_VISIBLE: 'The host does not mount or cannot reach the datastore that holds a VM disk; the data names the datastore and the host.',
  MOTUS_E_NET_PORT: 'A virtual switch port could not be created (its unix socket path is too long or cannot be bound).',
  MOTUS_E_NET_UPLINK: "A host's VXLAN endpoint could not bind its configured UDP address.",
  MOTUS_E_NET_RELOCATION_UNCONFIRMED: "After a migration, not every switch reaches the VM's MAC through the destination in time; the data names the MAC and the switches that disagree.",
  MOTUS_E_NET_NOT_ON_HOST: "The destination's virtual switch does not offer a network the VM's NICs are on, or has no uplink to the other hosts.",
  MOTUS_E_CPU_INCOMPATIBLE: "The destination cannot run the VM's CPU: the data names every missing feature (or the vendor mismatch) and the host.",
  MOTUS_E_CPU_BASELINE: "A host cannot provide the cluster's CPU baseline, no named model runs on every host, or a pinned model lies beyond the baseline; the data names the features.",
  MOTUS_E_CPU_VENDOR_MISMATCH: 'CPU vendors would mix in one baseline or one VM (Intel and AMD never do); the data names the hosts or models and their vendors.',
  MOTUS_E_CPU_UNKNOWN_MODEL: "The host's QEMU has no CPU model of that name; the data lists similar names.",
  MOTUS_E_CPU_UNKNOWN_FEATURE: "The host's QEMU knows no CPU feature of that name; the data lists them.",
  MOTUS_E_CPU_PROBE: "The host's QEMU did not answer the CPU model queries (or has not yet), so its CPU is unknown.",
  MOTUS_E_CPU_CPUINFO: "The host's /proc/cpuinfo cannot be read or parsed; the message says what is missing.",
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
  MOTUS_E_ISCSI_LUN_HELD: 'Another host holds the ownership of the LUN of a VM disk (its registration key is on the LUN); the data names the LUN, the key and the host when known.',
  MOTUS_E_ISCSI_LEASE_LOST: 'This host lost the ownership of a LUN (its registration was preempted or another host registered) and must stop writing to it.',
  MOTUS_E_ISCSI_LUN_NOT_FOUND: 'The target does not present the LUN that a VM disk URL names, or the LUN is not the one (NAA id) the disk was created on.',
  MOTUS_E_FC_NO_USABLE_PATH: 'A LUN of an FC datastore is seen by the host but none of its paths is usable (HBA or remote port not Online, SCSI device offline, device node missing); the data names the LUN, the host and each path with its reason.',
  MOTUS_E_FC_LUN_HELD: 'Another host holds the ownership of an FC LUN of a VM disk (its key is registered, or it reserved the LUN first); the data names the LUN, the key and the host when known.',
  MOTUS_E_FC_LEASE_LOST: 'This host lost the ownership of an FC LUN (its registration or reservation was removed by another host); the array now refuses its writes.',
  MOTUS_E_FC_NOT_SCSI: 'The block device of an FC LUN takes no SCSI pass-through commands (sg_persist failed to open it or SG_IO failed), so persistent reservations cannot be used on it.',
  MOTUS_E_FC_SG_PERSIST: 'sg_persist could not be run (sg3-utils not installed) or refused its arguments.',
} as const satisfies Record<string, string>;

export type MotusErrorCode = keyof typeof ERROR_CODES;

export interface MotusErrorJSON {
  code: MotusErrorCode;
  message: string;
  data?: Record<string, unknown>;
}

export class MotusError extends Error {
  override readonly name = 'MotusError';
  constructor(
    readonly code: MotusErrorCode,
    message: string,
    readonly data: Record<string, unknown> = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  toJSON(): MotusErrorJSON {
    return Object.keys(this.data).length > 0
      ? { code: this.code, message: this.message, data: this.data }
      : { code: this.code, message: this.message };
  }

  static fromJSON(json: MotusErrorJSON): MotusError {
    const code = json.code in ERROR_CODES ? json.code : 'MOTUS_E_INTERNAL';
    return new MotusError(code, json.message, json.data ?? {});
  }

  /** Wraps anything thrown into a MotusError, keeping codes that are already there. */
  static from(err: unknown, fallback: MotusErrorCode = 'MOTUS_E_INTERNAL'): MotusError {
    if (err instanceof MotusError) return err;
    const message = err instanceof Error ? err.message : String(err);
    return new MotusError(fallback, message, {}, { cause: err });
  }
}

export function isMotusError(err: unknown, code?: MotusErrorCode): err is MotusError {
  return err instanceof MotusError && (code === undefined || err.code === code);
}
