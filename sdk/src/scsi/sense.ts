import { ScsiError, type ScsiErrorCode, type ScsiResult, badResponse, ok } from './errors.js';

export const ScsiStatus = {
  GOOD: 0x00,
  CHECK_CONDITION: 0x02,
  CONDITION_MET: 0x04,
  BUSY: 0x08,
  RESERVATION_CONFLICT: 0x18,
  TASK_SET_FULL: 0x28,
  ACA_ACTIVE: 0x30,
  TASK_ABORTED: 0x40,
} as const;

export const SenseKey = {
  NO_SENSE: 0x0,
  RECOVERED_ERROR: 0x1,
  NOT_READY: 0x2,
  MEDIUM_ERROR: 0x3,
  HARDWARE_ERROR: 0x4,
  ILLEGAL_REQUEST: 0x5,
  UNIT_ATTENTION: 0x6,
  DATA_PROTECT: 0x7,
  BLANK_CHECK: 0x8,
  VENDOR_SPECIFIC: 0x9,
  COPY_ABORTED: 0xa,
  ABORTED_COMMAND: 0xb,
  VOLUME_OVERFLOW: 0xd,
  MISCOMPARE: 0xe,
  COMPLETED: 0xf,
} as const;

const SENSE_KEY_NAMES = [
  'NO SENSE', 'RECOVERED ERROR', 'NOT READY', 'MEDIUM ERROR', 'HARDWARE ERROR', 'ILLEGAL REQUEST',
  'UNIT ATTENTION', 'DATA PROTECT', 'BLANK CHECK', 'VENDOR SPECIFIC', 'COPY ABORTED', 'ABORTED COMMAND',
  'RESERVED', 'VOLUME OVERFLOW', 'MISCOMPARE', 'COMPLETED',
];

export function senseKeyName(key: number): string {
  return SENSE_KEY_NAMES[key & 0x0f] ?? 'RESERVED';
}

export function statusName(status: number): string {
  const entry = Object.entries(ScsiStatus).find(([, v]) => v === status);
  return entry ? entry[0].replace(/_/g, ' ') : `status 0x${status.toString(16).padStart(2, '0')}`;
}

/** The ASC/ASCQ pairs an operator meets in practice (SPC-4 annex). */
const ASC_TEXT: Record<number, string> = {
  0x0000: 'no additional sense information',
  0x0400: 'logical unit not ready, cause not reportable',
  0x0401: 'logical unit is in process of becoming ready',
  0x0402: 'logical unit not ready, initializing command required',
  0x0403: 'logical unit not ready, manual intervention required',
  0x0404: 'logical unit not ready, format in progress',
  0x040a: 'logical unit not accessible, asymmetric access state transition',
  0x040b: 'logical unit not accessible, target port in standby state',
  0x040c: 'logical unit not accessible, target port in unavailable state',
  0x0800: 'logical unit communication failure',
  0x0c00: 'write error',
  0x0c02: 'write error, auto reallocation failed',
  0x1100: 'unrecovered read error',
  0x1400: 'recorded entity not found',
  0x1a00: 'parameter list length error',
  0x1d00: 'miscompare during verify operation',
  0x2000: 'invalid command operation code',
  0x2100: 'logical block address out of range',
  0x2400: 'invalid field in CDB',
  0x2500: 'logical unit not supported',
  0x2600: 'invalid field in parameter list',
  0x2601: 'parameter not supported',
  0x2602: 'parameter value invalid',
  0x2700: 'write protected',
  0x2707: 'space allocation failed write protect',
  0x2800: 'not ready to ready change, medium may have changed',
  0x2900: 'power on, reset, or bus device reset occurred',
  0x2901: 'power on occurred',
  0x2902: 'SCSI bus reset occurred',
  0x2903: 'bus device reset function occurred',
  0x2904: 'device internal reset',
  0x2907: 'I_T nexus loss occurred',
  0x2a01: 'mode parameters changed',
  0x2a03: 'reservations preempted',
  0x2a04: 'reservations released',
  0x2a05: 'registrations preempted',
  0x2a06: 'asymmetric access state changed',
  0x2a09: 'capacity data has changed',
  0x2c00: 'command sequence error',
  0x2f00: 'commands cleared by another initiator',
  0x3100: 'medium format corrupted',
  0x3a00: 'medium not present',
  0x3f01: 'microcode has been changed',
  0x3f03: 'inquiry data has changed',
  0x3f0e: 'reported LUNs data has changed',
  0x4400: 'internal target failure',
  0x4700: 'SCSI parity error',
  0x4b00: 'data phase error',
  0x4e00: 'overlapped commands attempted',
  0x5500: 'system resource failure',
  0x5503: 'insufficient resources',
  0x5504: 'insufficient registration resources',
};

export function ascText(asc: number, ascq: number): string {
  return ASC_TEXT[((asc & 0xff) << 8) | (ascq & 0xff)] ?? `ASC 0x${hex2(asc)} ASCQ 0x${hex2(ascq)}`;
}

function hex2(n: number): string {
  return (n & 0xff).toString(16).padStart(2, '0');
}

export interface SenseData {
  format: 'fixed' | 'descriptor';
  /** Sense data about the command that failed (false: a deferred error about an earlier one). */
  current: boolean;
  key: number;
  asc: number;
  ascq: number;
  /** The INFORMATION field (failing LBA, or miscompare offset), when the device marked it valid. */
  information?: bigint;
}

/** Decodes fixed (0x70/0x71) or descriptor (0x72/0x73) format sense data. */
export function parseSense(buf: Buffer): ScsiResult<SenseData> {
  if (buf.length < 1) return badResponse('sense data: empty');
  const code = buf[0]! & 0x7f;
  if (code === 0x70 || code === 0x71) {
    // Devices may stop after the sense key; ASC/ASCQ default to zero then.
    if (buf.length < 3) return badResponse('fixed sense data: shorter than 3 bytes', { length: buf.length });
    const sense: SenseData = {
      format: 'fixed',
      current: code === 0x70,
      key: buf[2]! & 0x0f,
      asc: buf.length > 12 ? buf[12]! : 0,
      ascq: buf.length > 13 ? buf[13]! : 0,
    };
    if ((buf[0]! & 0x80) !== 0 && buf.length >= 7) sense.information = BigInt(buf.readUInt32BE(3));
    return ok(sense);
  }
  if (code === 0x72 || code === 0x73) {
    if (buf.length < 4) return badResponse('descriptor sense data: shorter than 4 bytes', { length: buf.length });
    const sense: SenseData = { format: 'descriptor', current: code === 0x72, key: buf[1]! & 0x0f, asc: buf[2]!, ascq: buf[3]! };
    const end = buf.length >= 8 ? Math.min(buf.length, 8 + buf[7]!) : buf.length;
    let at = 8;
    while (at + 2 <= end) {
      const type = buf[at]!;
      const len = buf[at + 1]!;
      if (at + 2 + len > end) break;
      if (type === 0x00 && len >= 0x0a && (buf[at + 2]! & 0x80) !== 0) sense.information = buf.readBigUInt64BE(at + 4);
      at += 2 + len;
    }
    return ok(sense);
  }
  return badResponse('sense data: unknown response code', { responseCode: code });
}

function senseCode(key: number): ScsiErrorCode {
  switch (key) {
    case SenseKey.NOT_READY: return 'MOTUS_E_SCSI_NOT_READY';
    case SenseKey.MEDIUM_ERROR:
    case SenseKey.HARDWARE_ERROR: return 'MOTUS_E_SCSI_MEDIUM_ERROR';
    case SenseKey.ILLEGAL_REQUEST: return 'MOTUS_E_SCSI_ILLEGAL_REQUEST';
    case SenseKey.UNIT_ATTENTION: return 'MOTUS_E_SCSI_UNIT_ATTENTION';
    case SenseKey.DATA_PROTECT: return 'MOTUS_E_SCSI_DATA_PROTECT';
    case SenseKey.ABORTED_COMMAND: return 'MOTUS_E_SCSI_ABORTED';
    case SenseKey.MISCOMPARE: return 'MOTUS_E_SCSI_MISCOMPARE';
    default: return 'MOTUS_E_SCSI_CHECK_CONDITION';
  }
}

/** Builds the typed error a person reads from sense data; `command` names the operation. */
export function senseError(sense: SenseData, command = 'SCSI command'): ScsiError {
  const text = ascText(sense.asc, sense.ascq);
  const data: Record<string, unknown> = {
    command,
    senseKey: senseKeyName(sense.key),
    asc: sense.asc,
    ascq: sense.ascq,
    reason: text,
  };
  if (sense.information !== undefined) data['information'] = sense.information.toString();
  const code = senseCode(sense.key);
  if (code === 'MOTUS_E_SCSI_ILLEGAL_REQUEST') data['unsupported'] = sense.asc === 0x20 && sense.ascq === 0x00;
  if (code === 'MOTUS_E_SCSI_MISCOMPARE' && sense.information !== undefined) data['offset'] = Number(sense.information);
  return new ScsiError(code, `${command} failed: ${senseKeyName(sense.key)}, ${text}`, data);
}

/**
 * Turns a completed command's status (and its sense data, for CHECK CONDITION)
 * into undefined for success or the typed error; total over any bytes.
 */
export function statusError(status: number, sense: Buffer | undefined, command = 'SCSI command'): ScsiError | undefined {
  switch (status) {
    case ScsiStatus.GOOD:
    case ScsiStatus.CONDITION_MET:
      return undefined;
    case ScsiStatus.CHECK_CONDITION: {
      if (!sense || sense.length === 0) {
        return new ScsiError('MOTUS_E_SCSI_CHECK_CONDITION', `${command} failed: CHECK CONDITION without sense data`, { command });
      }
      const parsed = parseSense(sense);
      if (!parsed.ok) return new ScsiError('MOTUS_E_SCSI_BAD_RESPONSE', `${command} failed: CHECK CONDITION with ${parsed.error.message}`, { command, sense: sense.toString('hex') });
      if (parsed.value.key === SenseKey.NO_SENSE || parsed.value.key === SenseKey.RECOVERED_ERROR || parsed.value.key === SenseKey.COMPLETED) {
        // The command did complete; the device only reports a recovered condition.
        return undefined;
      }
      return senseError(parsed.value, command);
    }
    case ScsiStatus.RESERVATION_CONFLICT:
      return new ScsiError('MOTUS_E_SCSI_RESERVATION_CONFLICT', `${command} failed: RESERVATION CONFLICT, another initiator holds a reservation on this LUN`, { command });
    case ScsiStatus.BUSY:
    case ScsiStatus.TASK_SET_FULL:
      return new ScsiError('MOTUS_E_SCSI_BUSY', `${command} failed: ${statusName(status)}`, { command, status });
    case ScsiStatus.TASK_ABORTED:
      return new ScsiError('MOTUS_E_SCSI_ABORTED', `${command} failed: TASK ABORTED`, { command, status });
    default:
      return new ScsiError('MOTUS_E_SCSI_STATUS', `${command} failed: ${statusName(status)}`, { command, status });
  }
}
