import { randomBytes } from 'node:crypto';
import type { MotusError } from '@motus/sdk';
import { type Observable, Subject } from 'rxjs';
import { Connection, type FrameTap, type Portal } from './connection.js';
import { iscsiError, isIscsiError } from './errors.js';
import { type ChapCredentials, login, type LoginResult } from './login.js';
import { DEFAULT_PREFERENCES, type ParamPreferences, type SessionParams } from './negotiation.js';
import {
  type AsyncMessagePdu, type DataInPdu, type NopInPdu, type Pdu, PduOpcode, type R2TPdu, type RejectPdu, RESERVED_TAG, type ScsiResponsePdu,
} from './pdu.js';
import { decodeText, encodeText, type TextPairs } from './text.js';

/** Serial number arithmetic (RFC 1982) on 32-bit sequence numbers: a <= b. */
export function snLessOrEqual(a: number, b: number): boolean {
  return ((b - a) | 0) >= 0;
}

export function snGreater(a: number, b: number): boolean {
  return ((a - b) | 0) > 0;
}

export interface SessionOptions {
  portal: Portal;
  initiatorName: string;
  /** Absent for a discovery session. */
  targetName?: string;
  chap?: ChapCredentials;
  mutualChap?: ChapCredentials;
  preferences?: Partial<ParamPreferences>;
  /** Reused on reconnection so the target reinstates, rather than duplicates, the session. */
  isid?: Buffer;
  connectTimeoutMs?: number;
  loginTimeoutMs?: number;
  commandTimeoutMs?: number;
  /** Idle time before we ping the target with a NOP-Out; 0 turns pings off. */
  keepaliveIntervalMs?: number;
  keepaliveTimeoutMs?: number;
  /** How long to keep trying to log in again after losing the connection; 0 fails outstanding commands at once. */
  reconnectTimeoutMs?: number;
  reconnectDelayMs?: number;
  tap?: FrameTap;
}

/** What a SCSI command came back with, before any interpretation of the status. */
export interface CommandResult {
  status: number;
  /** Data-In bytes, cut to what the target sent. */
  data: Buffer;
  sense?: Buffer;
  residual: number;
  underflow: boolean;
  overflow: boolean;
}

export interface CommandRequest {
  lun: Buffer;
  cdb: Buffer;
  dataIn: number;
  /** Where Data-In lands (at least dataIn bytes); saves a copy when the caller assembles a larger buffer. */
  dataInBuffer?: Buffer;
  dataOut?: Buffer;
  name: string;
  timeoutMs?: number;
  /**
   * Whether the command may be sent again after a lost connection when its
   * outcome is unknown. Plain reads and writes may; COMPARE AND WRITE and
   * reservation changes must not, since a second run can fail or undo the first.
   */
  idempotent?: boolean;
}

interface Task {
  itt: number;
  req: CommandRequest;
  cmdSN: number | undefined;
  readBuf: Buffer;
  transferred: number;
  nextDataSN: number;
  timer: NodeJS.Timeout | undefined;
  resolve: (r: CommandResult) => void;
  reject: (e: MotusError) => void;
  retries: number;
}

interface Waiter {
  resolve: (pdu: Pdu) => void;
  reject: (e: MotusError) => void;
  timer: NodeJS.Timeout;
}

export type SessionState = 'full-feature' | 'reconnecting' | 'closed';

export type SessionEvent =
  | { type: 'async'; pdu: AsyncMessagePdu }
  | { type: 'disconnected'; error: MotusError }
  | { type: 'reconnected'; attempt: number }
  | { type: 'closed'; error: MotusError };

/** Task management functions (RFC 7143 11.5.1). */
export const TaskFunction = { ABORT_TASK: 1, ABORT_TASK_SET: 2, CLEAR_TASK_SET: 4, LOGICAL_UNIT_RESET: 5, TARGET_WARM_RESET: 6 } as const;

const TMF_RESPONSE: Record<number, string> = {
  0: 'function complete', 1: 'task does not exist', 2: 'LUN does not exist', 3: 'task still allegiant',
  4: 'task allegiance reassignment not supported', 5: 'task management function not supported',
  6: 'function authorization failed', 255: 'function rejected',
};

const REJECT_REASON: Record<number, string> = {
  0x02: 'data digest error', 0x03: 'SNACK reject', 0x04: 'protocol error', 0x05: 'command not supported',
  0x06: 'immediate command rejected', 0x07: 'task in progress', 0x08: 'invalid data ACK', 0x09: 'invalid PDU field',
  0x0a: 'long operation reject', 0x0c: 'waiting for logout',
};

export function newIsid(): Buffer {
  const isid = randomBytes(6);
  // Type "random" (RFC 7143 11.12.5): T=10b, A reserved.
  isid[0] = 0x80;
  return isid;
}

/**
 * One iSCSI session over one connection (MaxConnections=1), error recovery
 * level 0: a lost connection means a new login with the same ISID, and the
 * commands that had not completed are issued again.
 */
export class Session {
  readonly isid: Buffer;
  private conn: Connection | undefined;
  private loginResult!: LoginResult;
  private state: SessionState = 'full-feature';
  private cmdSN = 0;
  private expCmdSN = 0;
  private maxCmdSN = 0;
  private expStatSN = 0;
  private nextItt = 1;
  private readonly tasks = new Map<number, Task>();
  /** Tasks waiting for room in the command window, in submission order. */
  private queue: Task[] = [];
  private readonly waiters = new Map<number, Waiter>();
  private keepalive: NodeJS.Timeout | undefined;
  private lastHeard = Date.now();
  private pinging = false;
  private reconnecting: Promise<void> | undefined;
  private readonly opts: Required<Omit<SessionOptions, 'targetName' | 'chap' | 'mutualChap' | 'tap' | 'isid' | 'preferences'>> & SessionOptions;
  private readonly prefs: ParamPreferences;
  /** How many times the session logged in again after losing its connection. */
  reconnects = 0;
  private readonly events = new Subject<SessionEvent>();
  /** What happened to the session outside of commands: target messages, lost and restored connections, the end. */
  readonly events$: Observable<SessionEvent> = this.events.asObservable();

  private constructor(options: SessionOptions) {
    this.opts = {
      connectTimeoutMs: 5000, loginTimeoutMs: 10000, commandTimeoutMs: 30000, keepaliveIntervalMs: 5000, keepaliveTimeoutMs: 5000,
      reconnectTimeoutMs: 30000, reconnectDelayMs: 250, ...options,
    };
    this.prefs = { ...DEFAULT_PREFERENCES, ...options.preferences };
    this.isid = options.isid ?? newIsid();
  }

  static async open(options: SessionOptions): Promise<Session> {
    const s = new Session(options);
    await s.connectAndLogin();
    s.startKeepalive();
    return s;
  }

  get params(): SessionParams {
    return this.loginResult.params;
  }

  get login(): LoginResult {
    return this.loginResult;
  }

  get status(): SessionState {
    return this.state;
  }

  get window(): { cmdSN: number; expCmdSN: number; maxCmdSN: number; expStatSN: number; inFlight: number; queued: number } {
    return { cmdSN: this.cmdSN, expCmdSN: this.expCmdSN, maxCmdSN: this.maxCmdSN, expStatSN: this.expStatSN, inFlight: this.tasks.size - this.queue.length, queued: this.queue.length };
  }

  private allocItt(): number {
    for (;;) {
      const itt = this.nextItt;
      this.nextItt = (this.nextItt + 1) >>> 0;
      if (itt !== RESERVED_TAG && !this.tasks.has(itt) && !this.waiters.has(itt)) return itt;
    }
  }

  private async connectAndLogin(): Promise<void> {
    const conn = await Connection.open(this.opts.portal, this.opts.connectTimeoutMs, this.opts.tap, this.prefs.maxRecvDataSegmentLength);
    const result = await login(conn, {
      initiatorName: this.opts.initiatorName,
      ...(this.opts.targetName !== undefined ? { targetName: this.opts.targetName } : {}),
      isid: this.isid,
      ...(this.opts.chap ? { chap: this.opts.chap } : {}),
      ...(this.opts.mutualChap ? { mutualChap: this.opts.mutualChap } : {}),
      preferences: this.prefs,
      cmdSN: this.cmdSN,
      itt: this.allocItt(),
      timeoutMs: this.opts.loginTimeoutMs,
    });
    const p = result.params;
    conn.setDigests({ headerDigest: p.headerDigest === 'CRC32C', dataDigest: p.dataDigest === 'CRC32C' }, p.maxRecvDataSegmentLength);
    this.loginResult = result;
    this.cmdSN = result.cmdSN;
    this.expCmdSN = result.cmdSN;
    this.maxCmdSN = result.maxCmdSN;
    this.expStatSN = result.expStatSN;
    this.conn = conn;
    this.lastHeard = Date.now();
    conn.onPdu = (pdu) => this.onPdu(conn, pdu);
    conn.onEnd = (error) => this.onConnectionEnd(conn, error);
  }

  // ---- sending -------------------------------------------------------------

  /** Runs one SCSI command; resolves with its status whatever it is, rejects on transport failure or timeout. */
  execute(req: CommandRequest): Promise<CommandResult> {
    return this.enqueue(req).promise;
  }

  /** Same as execute, but the promise can be handed to abort(). */
  submit(req: CommandRequest): Promise<CommandResult> {
    const { task, promise } = this.enqueue(req);
    if (task) this.submitted.set(promise, task);
    return promise;
  }

  private readonly submitted = new WeakMap<Promise<CommandResult>, Task>();

  private enqueue(req: CommandRequest): { task?: Task; promise: Promise<CommandResult> } {
    if (this.state === 'closed') return { promise: Promise.reject(iscsiError('MOTUS_E_ISCSI_DISCONNECTED', `${req.name}: the session is closed`)) };
    if (req.cdb.length > 16) return { promise: Promise.reject(iscsiError('MOTUS_E_INVALID_REQUEST', `${req.name}: CDBs longer than 16 bytes are not supported`)) };
    let task!: Task;
    const promise = new Promise<CommandResult>((resolve, reject) => {
      task = {
        itt: this.allocItt(), req, cmdSN: undefined, // Unzeroed memory is safe here: Data-In must arrive in order without gaps (checked below), and only the filled prefix is returned.
        readBuf: req.dataInBuffer && req.dataInBuffer.length >= req.dataIn ? req.dataInBuffer.subarray(0, req.dataIn) : Buffer.allocUnsafe(req.dataIn), transferred: 0, nextDataSN: 0,
        timer: undefined, resolve, reject, retries: 0,
      };
    });
    const timeoutMs = req.timeoutMs ?? this.opts.commandTimeoutMs;
    task.timer = setTimeout(() => this.timeoutTask(task, timeoutMs), timeoutMs);
    this.tasks.set(task.itt, task);
    this.queue.push(task);
    this.pump();
    return { task, promise };
  }

  private pump(): void {
    while (this.state === 'full-feature' && this.conn && !this.conn.closed && this.queue.length > 0 && snLessOrEqual(this.cmdSN, this.maxCmdSN)) {
      const task = this.queue.shift()!;
      this.sendCommand(task);
    }
  }

  private sendCommand(task: Task): void {
    const conn = this.conn!;
    const p = this.loginResult.params;
    const out = task.req.dataOut;
    const cdb = Buffer.alloc(16);
    task.req.cdb.copy(cdb);
    task.cmdSN = this.cmdSN;
    this.cmdSN = (this.cmdSN + 1) >>> 0;
    task.transferred = 0;
    task.nextDataSN = 0;
    const firstBurst = out ? Math.min(out.length, p.firstBurstLength) : 0;
    const immediate = out && p.immediateData ? Math.min(firstBurst, p.maxXmitDataSegmentLength) : 0;
    // Unsolicited Data-Out may follow only when InitialR2T=No, up to FirstBurstLength in all.
    const unsolicited = out && !p.initialR2T ? firstBurst - immediate : 0;
    conn.send({
      opcode: PduOpcode.ScsiCommand, final: unsolicited === 0, read: task.req.dataIn > 0, write: out !== undefined && out.length > 0, attr: 1,
      lun: task.req.lun, itt: task.itt, expectedDataTransferLength: out ? out.length : task.req.dataIn, cmdSN: task.cmdSN,
      expStatSN: this.expStatSN, cdb, data: out && immediate > 0 ? out.subarray(0, immediate) : Buffer.alloc(0),
    });
    if (out && unsolicited > 0) this.sendDataOut(task, RESERVED_TAG, immediate, unsolicited);
  }

  /** One Data-Out sequence: `length` bytes from `offset`, cut to the target's MaxRecvDataSegmentLength. */
  private sendDataOut(task: Task, ttt: number, offset: number, length: number): void {
    const out = task.req.dataOut!;
    const max = this.loginResult.params.maxXmitDataSegmentLength;
    let dataSN = 0;
    for (let at = offset; at < offset + length; at += max) {
      const end = Math.min(offset + length, at + max);
      this.conn!.send({
        opcode: PduOpcode.DataOut, final: end === offset + length, lun: task.req.lun, itt: task.itt, ttt, expStatSN: this.expStatSN,
        dataSN: dataSN++, bufferOffset: at, data: out.subarray(at, end),
      });
    }
  }

  private timeoutTask(task: Task, timeoutMs: number): void {
    if (this.tasks.get(task.itt) !== task) return;
    const wasSent = !this.queue.includes(task);
    this.forget(task);
    task.reject(iscsiError('MOTUS_E_TIMEOUT', `${task.req.name} did not complete within ${timeoutMs} ms`, { command: task.req.name, timeoutMs }));
    // The target may still be working on it: ask it to drop the task so it cannot complete later.
    if (wasSent && task.cmdSN !== undefined && this.state === 'full-feature') {
      this.taskManagement(TaskFunction.ABORT_TASK, task.req.lun, task.itt, task.cmdSN).catch(() => undefined);
    }
  }

  private forget(task: Task): void {
    if (task.timer) clearTimeout(task.timer);
    this.tasks.delete(task.itt);
    const i = this.queue.indexOf(task);
    if (i >= 0) this.queue.splice(i, 1);
  }

  /** Sends an immediate PDU that expects a reply with the same ITT, and waits for it. */
  private request(build: (itt: number) => Parameters<Connection['send']>[0], timeoutMs: number, what: string): Promise<Pdu> {
    if (this.state !== 'full-feature' || !this.conn) return Promise.reject(iscsiError('MOTUS_E_ISCSI_DISCONNECTED', `${what}: not connected`));
    const conn = this.conn;
    return new Promise((resolve, reject) => {
      const itt = this.allocItt();
      const timer = setTimeout(() => {
        this.waiters.delete(itt);
        reject(iscsiError('MOTUS_E_TIMEOUT', `${what}: no answer from the target within ${timeoutMs} ms`, { timeoutMs }));
      }, timeoutMs);
      this.waiters.set(itt, { resolve, reject, timer });
      conn.send(build(itt));
    });
  }

  /** Task management (ABORT TASK and friends); resolves with the response code's meaning. */
  async taskManagement(fn: number, lun: Buffer, referencedTaskTag = RESERVED_TAG, refCmdSN = 0, timeoutMs = this.opts.commandTimeoutMs): Promise<{ response: number; text: string }> {
    const pdu = await this.request((itt) => ({
      opcode: PduOpcode.TaskMgmtRequest, immediate: true, function: fn, lun, itt, referencedTaskTag, cmdSN: this.cmdSN, expStatSN: this.expStatSN, refCmdSN, expDataSN: 0,
    }), timeoutMs, 'task management');
    if (pdu.opcode !== PduOpcode.TaskMgmtResponse) throw iscsiError('MOTUS_E_ISCSI_PROTOCOL', 'task management answered by another PDU');
    return { response: pdu.response, text: TMF_RESPONSE[pdu.response] ?? `response ${pdu.response}` };
  }

  /**
   * Aborts one outstanding command: the target drops it and its promise rejects
   * with MOTUS_E_ISCSI_TASK_ABORTED. Returns false when the command had already completed.
   */
  async abort(promise: Promise<CommandResult>, timeoutMs = this.opts.commandTimeoutMs): Promise<boolean> {
    const task = this.submitted.get(promise);
    if (!task || this.tasks.get(task.itt) !== task) return false;
    if (task.cmdSN === undefined || this.queue.includes(task)) {
      this.forget(task);
      task.reject(iscsiError('MOTUS_E_ISCSI_TASK_ABORTED', `${task.req.name} was aborted before it was sent`));
      return true;
    }
    const r = await this.taskManagement(TaskFunction.ABORT_TASK, task.req.lun, task.itt, task.cmdSN, timeoutMs);
    if (this.tasks.get(task.itt) !== task) return false;
    this.forget(task);
    task.reject(iscsiError('MOTUS_E_ISCSI_TASK_ABORTED', `${task.req.name} was aborted (target: ${r.text})`, { response: r.response }));
    return r.response === 0 || r.response === 1;
  }

  /** NOP-Out ping; resolves with the round trip in ms. */
  async ping(timeoutMs = this.opts.keepaliveTimeoutMs): Promise<number> {
    const start = process.hrtime.bigint();
    await this.request((itt) => ({
      opcode: PduOpcode.NopOut, immediate: true, lun: Buffer.alloc(8), itt, ttt: RESERVED_TAG, cmdSN: this.cmdSN, expStatSN: this.expStatSN,
    }), timeoutMs, 'NOP-Out ping');
    return Number(process.hrtime.bigint() - start) / 1e6;
  }

  /** A text exchange (SendTargets and the like), following continuation until the final response. */
  async text(pairs: TextPairs, timeoutMs = this.opts.commandTimeoutMs): Promise<TextPairs> {
    const parts: Buffer[] = [];
    let data = encodeText(pairs);
    let ttt = RESERVED_TAG;
    for (let round = 0; round < 64; round++) {
      const cmdSN = this.cmdSN;
      this.cmdSN = (this.cmdSN + 1) >>> 0;
      const body = data;
      const pdu = await this.request((itt) => ({
        opcode: PduOpcode.TextRequest, final: true, cont: false, lun: Buffer.alloc(8), itt, ttt, cmdSN, expStatSN: this.expStatSN, data: body,
      }), timeoutMs, 'text request');
      if (pdu.opcode !== PduOpcode.TextResponse) throw iscsiError('MOTUS_E_ISCSI_PROTOCOL', 'text request answered by another PDU');
      parts.push(pdu.data);
      if (pdu.final && !pdu.cont) {
        const decoded = decodeText(Buffer.concat(parts));
        if (!decoded.ok) throw decoded.error;
        return decoded.pairs;
      }
      ttt = pdu.ttt;
      data = Buffer.alloc(0);
    }
    throw iscsiError('MOTUS_E_ISCSI_PROTOCOL', 'text response did not end after 64 continuations');
  }

  /** Closes the session with a Logout; outstanding commands fail. Never throws. */
  async logout(timeoutMs = 5000): Promise<void> {
    if (this.state === 'closed') return;
    this.stopKeepalive();
    const conn = this.conn;
    if (this.state === 'full-feature' && conn && !conn.closed) {
      const cmdSN = this.cmdSN;
      try {
        await this.request((itt) => ({ opcode: PduOpcode.LogoutRequest, immediate: true, reason: 0, itt, cid: 0, cmdSN, expStatSN: this.expStatSN }), timeoutMs, 'logout');
      } catch {
        // A target that does not answer the logout is closed on all the same.
      }
    }
    this.close(iscsiError('MOTUS_E_ISCSI_DISCONNECTED', 'the session was logged out'));
  }

  /** Drops the connection without logging out (for fault tests and last-resort cleanup). */
  destroy(): void {
    this.close(iscsiError('MOTUS_E_ISCSI_DISCONNECTED', 'the session was closed'));
  }

  /** Cuts the TCP connection as if the network failed; the session then reconnects. */
  dropConnection(): void {
    this.conn?.end(iscsiError('MOTUS_E_ISCSI_DISCONNECTED', 'connection dropped on request'));
  }

  private close(error: MotusError): void {
    if (this.state !== 'closed') {
      this.events.next({ type: 'closed', error });
      this.events.complete();
    }
    this.state = 'closed';
    this.stopKeepalive();
    const conn = this.conn;
    this.conn = undefined;
    conn?.end();
    this.failAll(error);
  }

  private failAll(error: MotusError): void {
    for (const task of [...this.tasks.values()]) {
      this.forget(task);
      task.reject(iscsiError(error.code as never, `${task.req.name}: ${error.message}`, error.data, { cause: error }));
    }
    this.queue = [];
    this.failWaiters(error);
  }

  private failWaiters(error: MotusError): void {
    for (const [itt, w] of [...this.waiters]) {
      clearTimeout(w.timer);
      this.waiters.delete(itt);
      w.reject(error);
    }
  }

  // ---- receiving ----------------------------------------------------------

  private protocolError(conn: Connection, message: string, data: Record<string, unknown> = {}): void {
    conn.end(iscsiError('MOTUS_E_ISCSI_PROTOCOL', message, data));
  }

  private updateWindow(expCmdSN: number, maxCmdSN: number): void {
    // RFC 7143 4.2.2.1: a MaxCmdSN below ExpCmdSN - 1 is ignored, with its ExpCmdSN.
    if (snGreater((expCmdSN - 1) >>> 0, maxCmdSN)) return;
    if (snGreater(expCmdSN, this.expCmdSN)) this.expCmdSN = expCmdSN;
    if (snGreater(maxCmdSN, this.maxCmdSN)) this.maxCmdSN = maxCmdSN;
  }

  private statusSeen(statSN: number): void {
    const next = (statSN + 1) >>> 0;
    if (snGreater(next, this.expStatSN)) this.expStatSN = next;
  }

  private onPdu(conn: Connection, pdu: Pdu): void {
    if (conn !== this.conn) return;
    this.lastHeard = Date.now();
    switch (pdu.opcode) {
      case PduOpcode.DataIn: this.onDataIn(conn, pdu); break;
      case PduOpcode.ScsiResponse: this.onScsiResponse(conn, pdu); break;
      case PduOpcode.R2T: this.onR2T(conn, pdu); break;
      case PduOpcode.NopIn: this.onNopIn(conn, pdu); break;
      case PduOpcode.TaskMgmtResponse:
      case PduOpcode.TextResponse:
      case PduOpcode.LogoutResponse:
        this.updateWindow(pdu.expCmdSN, pdu.maxCmdSN);
        this.statusSeen(pdu.statSN);
        this.settleWaiter(pdu.itt, pdu);
        break;
      case PduOpcode.AsyncMessage: this.onAsync(conn, pdu); break;
      case PduOpcode.Reject: this.onReject(pdu); break;
      default:
        return this.protocolError(conn, `the target sent an initiator PDU (opcode 0x${pdu.opcode.toString(16)}) in full feature phase`, { opcode: pdu.opcode });
    }
    this.pump();
  }

  private settleWaiter(itt: number, pdu: Pdu): void {
    const w = this.waiters.get(itt);
    if (!w) return;
    clearTimeout(w.timer);
    this.waiters.delete(itt);
    w.resolve(pdu);
  }

  private onDataIn(conn: Connection, pdu: DataInPdu): void {
    this.updateWindow(pdu.expCmdSN, pdu.maxCmdSN);
    if (pdu.hasStatus) this.statusSeen(pdu.statSN);
    const task = this.tasks.get(pdu.itt);
    // Data for a task that timed out or was aborted: the target had not yet heard.
    if (!task || task.cmdSN === undefined) return;
    const end = pdu.bufferOffset + pdu.data.length;
    // We negotiate DataPDUInOrder=Yes and DataSequenceInOrder=Yes: each Data-In continues where the last ended.
    if (pdu.bufferOffset !== task.transferred || pdu.dataSN !== task.nextDataSN) {
      return this.protocolError(conn, `Data-In for ${task.req.name} out of order: offset ${pdu.bufferOffset} DataSN ${pdu.dataSN}, expected offset ${task.transferred} DataSN ${task.nextDataSN}`, { itt: pdu.itt });
    }
    if (end > task.readBuf.length) {
      return this.protocolError(conn, `Data-In for ${task.req.name} runs to byte ${end}, past the ${task.readBuf.length} expected`, { itt: pdu.itt });
    }
    pdu.data.copy(task.readBuf, pdu.bufferOffset);
    task.transferred = end;
    task.nextDataSN = (task.nextDataSN + 1) >>> 0;
    if (pdu.hasStatus) {
      if (!pdu.final) return this.protocolError(conn, 'Data-In with status but without the F bit');
      this.complete(task, { status: pdu.status, data: task.readBuf.subarray(0, task.transferred), residual: pdu.residual, underflow: pdu.underflow, overflow: pdu.overflow });
    }
  }

  private onScsiResponse(conn: Connection, pdu: ScsiResponsePdu): void {
    this.updateWindow(pdu.expCmdSN, pdu.maxCmdSN);
    this.statusSeen(pdu.statSN);
    const task = this.tasks.get(pdu.itt);
    if (!task || task.cmdSN === undefined) return;
    if (pdu.response !== 0) {
      this.forget(task);
      task.reject(iscsiError('MOTUS_E_ISCSI_TARGET_FAILURE', `${task.req.name}: the target reports iSCSI response 0x${pdu.response.toString(16)} (${pdu.response === 1 ? 'target failure' : 'unexpected'})`, { response: pdu.response }));
      return;
    }
    let sense: Buffer | undefined;
    if (pdu.data.length >= 2) {
      const senseLength = pdu.data.readUInt16BE(0);
      if (senseLength > pdu.data.length - 2) return this.protocolError(conn, `SCSI Response sense length ${senseLength} runs past its ${pdu.data.length - 2} bytes`);
      if (senseLength > 0) sense = Buffer.from(pdu.data.subarray(2, 2 + senseLength));
    } else if (pdu.data.length === 1) return this.protocolError(conn, 'SCSI Response with a 1-byte data segment');
    const result: CommandResult = { status: pdu.status, data: task.readBuf.subarray(0, task.transferred), residual: pdu.residual, underflow: pdu.underflow, overflow: pdu.overflow };
    if (sense) result.sense = sense;
    this.complete(task, result);
  }

  private complete(task: Task, result: CommandResult): void {
    this.forget(task);
    task.resolve(result);
  }

  private onR2T(conn: Connection, pdu: R2TPdu): void {
    this.updateWindow(pdu.expCmdSN, pdu.maxCmdSN);
    const task = this.tasks.get(pdu.itt);
    if (!task || task.cmdSN === undefined) return;
    const out = task.req.dataOut;
    if (!out) return this.protocolError(conn, `R2T for ${task.req.name}, which has no data to send`, { itt: pdu.itt });
    if (pdu.desiredLength === 0 || pdu.bufferOffset + pdu.desiredLength > out.length) {
      return this.protocolError(conn, `R2T asks for bytes ${pdu.bufferOffset}..${pdu.bufferOffset + pdu.desiredLength} of a ${out.length}-byte write`, { itt: pdu.itt });
    }
    if (pdu.desiredLength > this.loginResult.params.maxBurstLength) {
      return this.protocolError(conn, `R2T asks for ${pdu.desiredLength} bytes, more than MaxBurstLength ${this.loginResult.params.maxBurstLength}`);
    }
    this.sendDataOut(task, pdu.ttt, pdu.bufferOffset, pdu.desiredLength);
  }

  private onNopIn(conn: Connection, pdu: NopInPdu): void {
    this.updateWindow(pdu.expCmdSN, pdu.maxCmdSN);
    if (pdu.itt !== RESERVED_TAG) {
      this.statusSeen(pdu.statSN);
      this.settleWaiter(pdu.itt, pdu);
      return;
    }
    // The target's own ping: answer when it asks for an answer (a TTT other than the reserved one).
    if (pdu.ttt !== RESERVED_TAG) {
      conn.send({ opcode: PduOpcode.NopOut, immediate: true, lun: pdu.lun, itt: RESERVED_TAG, ttt: pdu.ttt, cmdSN: this.cmdSN, expStatSN: this.expStatSN, data: pdu.data });
    }
  }

  private onAsync(conn: Connection, pdu: AsyncMessagePdu): void {
    this.updateWindow(pdu.expCmdSN, pdu.maxCmdSN);
    this.statusSeen(pdu.statSN);
    this.events.next({ type: 'async', pdu });
    // 1: the target asks us to log out; 2 and 3: it is about to drop the connection. Either way, log in again.
    if (pdu.asyncEvent === 1 || pdu.asyncEvent === 2 || pdu.asyncEvent === 3) {
      conn.end(iscsiError('MOTUS_E_ISCSI_DISCONNECTED', `the target asked to end the connection (async event ${pdu.asyncEvent})`));
    }
  }

  private onReject(pdu: RejectPdu): void {
    this.updateWindow(pdu.expCmdSN, pdu.maxCmdSN);
    this.statusSeen(pdu.statSN);
    if (pdu.data.length < 48) return;
    const itt = pdu.data.readUInt32BE(16);
    const reason = REJECT_REASON[pdu.reason] ?? `reason 0x${pdu.reason.toString(16)}`;
    const error = iscsiError('MOTUS_E_ISCSI_REJECT', `the target rejected a PDU: ${reason}`, { reason: pdu.reason, opcode: pdu.data[0]! & 0x3f });
    const task = this.tasks.get(itt);
    if (task) {
      this.forget(task);
      task.reject(error);
      return;
    }
    const w = this.waiters.get(itt);
    if (w) {
      clearTimeout(w.timer);
      this.waiters.delete(itt);
      w.reject(error);
    }
  }

  // ---- keepalive and recovery -------------------------------------------

  private startKeepalive(): void {
    if (this.opts.keepaliveIntervalMs <= 0) return;
    this.keepalive = setInterval(() => {
      if (this.state !== 'full-feature' || this.pinging) return;
      if (Date.now() - this.lastHeard < this.opts.keepaliveIntervalMs) return;
      this.pinging = true;
      const conn = this.conn;
      this.ping(this.opts.keepaliveTimeoutMs)
        .catch((err: unknown) => {
          // No answer: the connection is dead even if TCP has not noticed yet.
          if (conn && conn === this.conn) conn.end(iscsiError('MOTUS_E_ISCSI_DISCONNECTED', `the target stopped answering NOP-Out pings: ${err instanceof Error ? err.message : String(err)}`));
        })
        .finally(() => {
          this.pinging = false;
        });
    }, Math.max(100, Math.floor(this.opts.keepaliveIntervalMs / 2)));
    this.keepalive.unref();
  }

  private stopKeepalive(): void {
    if (this.keepalive) clearInterval(this.keepalive);
    this.keepalive = undefined;
  }

  private onConnectionEnd(conn: Connection, error: MotusError | undefined): void {
    if (conn !== this.conn || this.state !== 'full-feature') return;
    const cause = error ?? iscsiError('MOTUS_E_ISCSI_DISCONNECTED', 'the connection closed');
    this.events.next({ type: 'disconnected', error: cause });
    this.failWaiters(iscsiError('MOTUS_E_ISCSI_DISCONNECTED', `connection lost: ${cause.message}`, {}, { cause }));
    if (this.opts.reconnectTimeoutMs <= 0 || this.opts.targetName === undefined) {
      this.close(iscsiError('MOTUS_E_ISCSI_DISCONNECTED', `connection to the target lost: ${cause.message}`, { portal: `${this.opts.portal.host}:${this.opts.portal.port}` }, { cause }));
      return;
    }
    this.state = 'reconnecting';
    this.conn = undefined;
    // Commands in flight have an unknown outcome. Idempotent ones go again, in their original order.
    const inFlight = [...this.tasks.values()].filter((t) => !this.queue.includes(t)).sort((a, b) => (snGreater(a.cmdSN ?? 0, b.cmdSN ?? 0) ? 1 : -1));
    const again: Task[] = [];
    for (const task of inFlight) {
      if (task.req.idempotent === false) {
        this.forget(task);
        task.reject(iscsiError('MOTUS_E_ISCSI_DISCONNECTED', `${task.req.name}: the connection was lost while the command was in flight; it may or may not have taken effect`, { command: task.req.name }, { cause }));
        continue;
      }
      task.retries++;
      task.cmdSN = undefined;
      task.transferred = 0;
      task.nextDataSN = 0;
      again.push(task);
    }
    this.queue = [...again, ...this.queue];
    this.reconnecting = this.reconnect(cause);
  }

  private async reconnect(cause: MotusError): Promise<void> {
    const deadline = Date.now() + this.opts.reconnectTimeoutMs;
    let last: unknown = cause;
    let attempt = 0;
    while (this.state === 'reconnecting' && Date.now() < deadline) {
      attempt++;
      await new Promise((r) => setTimeout(r, Math.min(this.opts.reconnectDelayMs * Math.min(attempt, 8), Math.max(0, deadline - Date.now()))));
      if (this.state !== 'reconnecting') return;
      try {
        await this.connectAndLogin();
        if (this.state !== 'reconnecting') {
          this.conn?.end();
          return;
        }
        this.state = 'full-feature';
        this.reconnects++;
        this.events.next({ type: 'reconnected', attempt });
        this.pump();
        return;
      } catch (err) {
        last = err;
        // Wrong credentials or a refused authorization will not heal by retrying; "target not
        // found" may, since a restarting target listens before its targets are configured again.
        if (isIscsiError(err, 'MOTUS_E_ISCSI_AUTH') || (isIscsiError(err, 'MOTUS_E_ISCSI_LOGIN') && err.data['statusClass'] === 2 && err.data['statusDetail'] === 2)) break;
      }
    }
    if (this.state !== 'reconnecting') return;
    const why = last instanceof Error ? last.message : String(last);
    this.close(iscsiError('MOTUS_E_ISCSI_DISCONNECTED', `lost the connection to ${this.opts.portal.host}:${this.opts.portal.port} and could not log in again within ${this.opts.reconnectTimeoutMs} ms: ${why}`, { portal: `${this.opts.portal.host}:${this.opts.portal.port}`, attempts: attempt }, { cause: last }));
  }

  /** Resolves once any reconnection under way has finished (either way). */
  async settled(): Promise<void> {
    await this.reconnecting;
  }
}

