/**
 * Persistent reservation commands on one FC path's block device, issued by
 * `sg_persist` (Debian sg3-utils) through the kernel's SG_IO pass-through.
 * PR IN answers come back as a hex dump of the parameter data (`--hex --hex`), which
 * the SDK's SCSI layer parses (`parseReadKeys`, `parseReadReservation`), the
 * same parsers the iSCSI initiator uses; sg_persist's exit status (sg3_utils'
 * SG_LIB_CAT_* categories) becomes the SDK's MOTUS_E_SCSI_* codes.
 *
 * Each path (sdX) is one I_T nexus: registrations are made per path, which is
 * why a host registers through every path of a LUN (mpathpersist does the same).
 */
import { execFile } from 'node:child_process';
import {
  MotusError,
  ReservationType,
  parseReadKeys,
  parseReadReservation,
  type PersistentReservationDevice,
  type RegisteredKeys,
  type Reservation,
  type ReservationTypeName,
  type ScsiResult,
} from '@motus/sdk';

export interface SgPersistOptions {
  /** The sg_persist binary; found on PATH by default. */
  binary?: string;
  /** Time limit of one command (sg_persist's own SCSI timeout is 60 s). */
  timeoutMs?: number;
}

export interface SgPersistRun {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** The binary could not be started (ENOENT: sg3-utils not installed). */
  spawnError?: string;
}

/** sg3_utils' exit statuses (sg_lib.h SG_LIB_CAT_*), as the SDK's codes. */
export function exitCodeError(run: SgPersistRun, device: string, what: string): MotusError | undefined {
  const detail = (run.stderr || run.stdout).trim().split('\n').slice(-3).join(' | ');
  const data = { device, command: what, exitCode: run.code, stderr: run.stderr.trim().slice(0, 500) };
  if (run.spawnError) {
    return new MotusError('MOTUS_E_FC_SG_PERSIST', `cannot run sg_persist (${run.spawnError}); install sg3-utils (bash scripts/install-system-deps.sh)`, data);
  }
  if (run.timedOut) return new MotusError('MOTUS_E_TIMEOUT', `sg_persist ${what} on ${device} did not finish in time`, data);
  if (run.code === 0) return undefined;
  if (run.code === null) return new MotusError('MOTUS_E_FC_SG_PERSIST', `sg_persist ${what} on ${device} ended by ${run.signal}`, data);
  const c = run.code;
  const scsi = (code: Parameters<typeof scsiErr>[0], text: string) => scsiErr(code, `${what} on ${device}: ${text}`, data);
  switch (c) {
    case 2: return scsi('MOTUS_E_SCSI_NOT_READY', 'not ready');
    case 3: case 18: return scsi('MOTUS_E_SCSI_MEDIUM_ERROR', 'medium or hardware error');
    case 5: case 17: return scsi('MOTUS_E_SCSI_ILLEGAL_REQUEST', `illegal request (${detail})`);
    case 9: return new MotusError('MOTUS_E_SCSI_ILLEGAL_REQUEST', `${what} on ${device}: the device does not implement persistent reservations`, { ...data, unsupported: true });
    case 6: return scsi('MOTUS_E_SCSI_UNIT_ATTENTION', 'unit attention');
    case 7: return scsi('MOTUS_E_SCSI_DATA_PROTECT', 'data protect');
    case 11: return scsi('MOTUS_E_SCSI_ABORTED', 'aborted command');
    case 24: return scsi('MOTUS_E_SCSI_RESERVATION_CONFLICT', 'reservation conflict');
    case 26: case 27: return scsi('MOTUS_E_SCSI_BUSY', 'busy');
    case 33: return new MotusError('MOTUS_E_TIMEOUT', `${what} on ${device}: the SCSI command timed out`, data);
    case 97: return scsi('MOTUS_E_SCSI_BAD_RESPONSE', 'malformed response');
    case 1: return new MotusError('MOTUS_E_FC_SG_PERSIST', `sg_persist refused its arguments for ${what} on ${device}: ${detail}`, data);
    default:
      break;
  }
  // 15: the device could not be opened; 50+errno: the SG_IO pass-through failed (a loop, dm-linear or
  // virtio device is not SCSI). Either way this device takes no SCSI commands.
  if (c === 15 || (c >= 50 && c < 97)) {
    return new MotusError('MOTUS_E_FC_NOT_SCSI', `${device} takes no SCSI pass-through commands (${detail || `sg_persist exit ${c}`}), so its ownership cannot be kept with persistent reservations`, data);
  }
  return scsi('MOTUS_E_SCSI_CHECK_CONDITION', `sg_persist exit ${c} (${detail})`);
}

function scsiErr(code: 'MOTUS_E_SCSI_NOT_READY' | 'MOTUS_E_SCSI_MEDIUM_ERROR' | 'MOTUS_E_SCSI_ILLEGAL_REQUEST' | 'MOTUS_E_SCSI_UNIT_ATTENTION' | 'MOTUS_E_SCSI_DATA_PROTECT' | 'MOTUS_E_SCSI_ABORTED' | 'MOTUS_E_SCSI_RESERVATION_CONFLICT' | 'MOTUS_E_SCSI_BUSY' | 'MOTUS_E_SCSI_BAD_RESPONSE' | 'MOTUS_E_SCSI_CHECK_CONDITION', message: string, data: Record<string, unknown>): MotusError {
  return new MotusError(code, message, data);
}

/**
 * The bytes of sg3_utils' hex dump (`hex2stdout` with an address column): each
 * line is the offset then up to 16 two-digit bytes, an extra space after the
 * eighth, possibly followed by an ASCII column. Undefined when a
 * line does not look like one (so garbage is a parse error, never made-up bytes).
 */
export function parseHexDump(text: string): Buffer | undefined {
  const bytes: number[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd();
    if (line.trim() === '') continue;
    const m = /^\s*([0-9a-fA-F]+)\s+((?:[0-9a-fA-F]{2}\s{1,2}){0,15}[0-9a-fA-F]{2})(?:\s{2,}.*)?$/.exec(line);
    if (!m) return undefined;
    if (parseInt(m[1]!, 16) !== bytes.length) return undefined;
    const tokens = m[2]!.trim().split(/\s+/);
    if (tokens.length > 16) return undefined;
    for (const t of tokens) bytes.push(parseInt(t, 16));
  }
  return Buffer.from(bytes);
}

function keyArg(key: bigint): string {
  return BigInt.asUintN(64, key).toString(16);
}

export type SgPersistRunner = (args: string[]) => Promise<SgPersistRun>;

export function runSgPersist(binary: string, timeoutMs: number): SgPersistRunner {
  return (args) =>
    new Promise((resolve) => {
      execFile(binary, args, { timeout: timeoutMs, encoding: 'latin1', maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { code?: number | string; killed?: boolean; signal?: string }) | null;
        if (e && typeof e.code === 'string') {
          resolve({ code: null, signal: null, stdout, stderr, timedOut: false, spawnError: `${e.code}: ${binary}` });
          return;
        }
        resolve({
          code: e ? (typeof e.code === 'number' ? e.code : null) : 0,
          signal: e?.signal ?? null,
          stdout,
          stderr,
          timedOut: Boolean(e?.killed && e.signal === 'SIGTERM'),
        });
      });
    });
}

/** One path's block device as a PersistentReservationDevice, through sg_persist. */
export class SgPersistDevice implements PersistentReservationDevice {
  private readonly run: SgPersistRunner;

  constructor(readonly device: string, options: SgPersistOptions & { runner?: SgPersistRunner } = {}) {
    this.run = options.runner ?? runSgPersist(options.binary ?? 'sg_persist', options.timeoutMs ?? 30_000);
  }

  private async prIn(action: '--read-keys' | '--read-reservation', what: string): Promise<Buffer> {
    // --hex twice: the whole parameter data (header included) as offset + bytes, no
    // ASCII column; --no-inquiry: one command, and stdout holds only the dump.
    const r = await this.run(['--in', action, '--hex', '--hex', '--no-inquiry', this.device]);
    const err = exitCodeError(r, this.device, what);
    if (err) throw err;
    const data = parseHexDump(r.stdout);
    if (!data) throw new MotusError('MOTUS_E_SCSI_BAD_RESPONSE', `${what} on ${this.device}: sg_persist printed no hex dump`, { device: this.device, stdout: r.stdout.slice(0, 300) });
    return data;
  }

  private async prOut(args: string[], what: string): Promise<void> {
    const r = await this.run(['--out', '--no-inquiry', ...args, this.device]);
    const err = exitCodeError(r, this.device, what);
    if (err) throw err;
  }

  async readKeys(): Promise<RegisteredKeys> {
    const r = unwrap(parseReadKeys(await this.prIn('--read-keys', 'PR IN READ KEYS')));
    return { generation: r.generation, keys: r.keys };
  }

  async readReservation(): Promise<Reservation> {
    return unwrap(parseReadReservation(await this.prIn('--read-reservation', 'PR IN READ RESERVATION')));
  }

  registerAndIgnore(key: bigint): Promise<void> {
    return this.prOut(['--register-ignore', `--param-sark=${keyArg(key)}`], 'PR OUT REGISTER AND IGNORE');
  }

  unregister(key: bigint): Promise<void> {
    return this.prOut(['--register', `--param-rk=${keyArg(key)}`, '--param-sark=0'], 'PR OUT REGISTER (unregister)');
  }

  reserve(key: bigint, type: ReservationTypeName): Promise<void> {
    return this.prOut(['--reserve', `--param-rk=${keyArg(key)}`, `--prout-type=${ReservationType[type]}`], 'PR OUT RESERVE');
  }

  release(key: bigint, type: ReservationTypeName): Promise<void> {
    return this.prOut(['--release', `--param-rk=${keyArg(key)}`, `--prout-type=${ReservationType[type]}`], 'PR OUT RELEASE');
  }

  preempt(key: bigint, victim: bigint, type: ReservationTypeName): Promise<void> {
    return this.prOut(['--preempt', `--param-rk=${keyArg(key)}`, `--param-sark=${keyArg(victim)}`, `--prout-type=${ReservationType[type]}`], 'PR OUT PREEMPT');
  }
}

function unwrap<T>(r: ScsiResult<T>): T {
  if (!r.ok) throw r.error;
  return r.value;
}
