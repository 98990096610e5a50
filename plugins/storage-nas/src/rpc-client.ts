/**
 * An ONC RPC session over one TCP connection: many calls in flight matched by
 * xid, a timeout per call, and, when the connection drops, reconnection with
 * backoff and retransmission of every call still waiting (same xid, so a server's
 * duplicate request cache can recognise it). RPC over TCP is never retransmitted
 * on a live connection: TCP already delivers it.
 */
import { connect, type Socket } from 'node:net';
import { randomInt } from 'node:crypto';
import type { MotusError } from '@motus/sdk';
import { nasError } from './errors.js';
import { recordMark, RecordDecoder } from './record-marking.js';
import { decodeReply, describeAuthStat, encodeCallParts, type RpcAuth, type RpcReplyBody } from './rpc-messages.js';

export interface RpcClientOptions {
  host: string;
  port: number;
  prog: number;
  vers: number;
  auth: RpcAuth;
  /** Default time a call may take, reconnections included. */
  timeoutMs: number;
  /** Time one connection attempt may take; defaults to timeoutMs. */
  connectTimeoutMs?: number;
  /** Largest reply record accepted; a larger one means a broken or hostile peer. */
  maxRecordSize?: number;
  /** Name used in messages, e.g. 'NFS' or 'MOUNT'. */
  service?: string;
  /** Sees every record sent and received (for traffic capture in tests). */
  onRecord?: (direction: 'call' | 'reply', record: Buffer) => void;
}

export interface CallOptions {
  timeoutMs?: number;
  /** Procedure name for messages. */
  name?: string;
}

interface Pending {
  xid: number;
  name: string;
  /** Record mark, call header and argument pieces, written without joining them. */
  framed: Buffer[];
  /** Connection generation the call was last written on; 0 means not yet. */
  sentOn: number;
  /** When it was last written (performance.now()). */
  sentAt: number;
  resolve: (results: Buffer) => void;
  reject: (err: MotusError) => void;
  timer: NodeJS.Timeout;
}

const DEFAULT_MAX_RECORD = 8 * 1024 * 1024;
const BACKOFF_START_MS = 50;
const BACKOFF_MAX_MS = 2000;

export class RpcClient {
  private socket: Socket | undefined;
  private connecting = false;
  /** The socket of a connection attempt in progress, so close() can abandon it. */
  private attempt: Socket | undefined;
  private generation = 0;
  private nextXid = randomInt(1, 0x7fffffff);
  private readonly pending = new Map<number, Pending>();
  private closed = false;
  private backoffMs = BACKOFF_START_MS;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private lastConnectionError: string | undefined;
  /** When bytes last arrived on the current connection (performance.now()). */
  private lastReceiveAt = 0;
  private readonly service: string;
  /** Counters that tests and diagnostics read. */
  readonly stats = { connects: 0, retransmissions: 0, strayReplies: 0 };

  constructor(readonly options: RpcClientOptions) {
    this.service = options.service ?? `RPC program ${options.prog}`;
  }

  get endpoint(): string {
    return `${this.options.host}:${this.options.port}`;
  }

  /** Sends a call; `args` may be pieces (e.g. a WRITE's header and its data) to avoid copying. */
  call(proc: number, args: Buffer | readonly Buffer[], opts: CallOptions = {}): Promise<Buffer> {
    const name = opts.name ?? `procedure ${proc}`;
    if (this.closed) {
      return Promise.reject(nasError('MOTUS_E_NFS_DISCONNECTED', `${this.service} client for ${this.endpoint} is closed; ${name} was not sent`));
    }
    const xid = this.nextXid;
    this.nextXid = (this.nextXid + 1) >>> 0 || 1;
    const parts = encodeCallParts({ xid, prog: this.options.prog, vers: this.options.vers, proc, auth: this.options.auth, args });
    const length = parts.reduce((n, b) => n + b.length, 0);
    this.options.onRecord?.('call', Buffer.concat(parts, length));
    const timeoutMs = opts.timeoutMs ?? this.options.timeoutMs;
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        const p = this.pending.get(xid);
        this.pending.delete(xid);
        // Nothing heard on this connection since the call went out: it is half-open or the
        // server hangs, so drop it; the next call (or the waiting ones) go on a fresh one.
        if (p && this.socket && p.sentOn === this.generation && this.lastReceiveAt < p.sentAt) this.socket.destroy();
        const last = this.lastConnectionError && !this.socket ? ` (last connection error: ${this.lastConnectionError})` : '';
        reject(
          nasError('MOTUS_E_TIMEOUT', `${this.service} ${name} to ${this.endpoint} got no reply within ${timeoutMs} ms${last}`, {
            service: this.service,
            procedure: name,
            endpoint: this.endpoint,
            timeoutMs,
          }),
        );
      }, timeoutMs);
      this.pending.set(xid, { xid, name, framed: [recordMark(length), ...parts], sentOn: 0, sentAt: 0, resolve, reject, timer });
      if (this.socket) this.flush();
      else this.ensureConnecting();
    });
  }

  /** Fails every waiting call and closes the connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    this.failAll(nasError('MOTUS_E_NFS_DISCONNECTED', `${this.service} client for ${this.endpoint} was closed`));
    this.attempt?.destroy();
    const socket = this.socket;
    this.socket = undefined;
    if (!socket) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        socket.destroy();
        resolve();
      }, 1000);
      socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      socket.end();
    });
  }

  /** Drops the connection as if the network failed; waiting calls are retransmitted on the next one. */
  dropConnection(): void {
    this.socket?.destroy();
  }

  private flush(): void {
    const socket = this.socket;
    if (!socket) return;
    socket.cork();
    for (const p of this.pending.values()) {
      if (p.sentOn === this.generation) continue;
      if (p.sentOn !== 0) this.stats.retransmissions++;
      p.sentOn = this.generation;
      p.sentAt = performance.now();
      for (const part of p.framed) socket.write(part);
    }
    socket.uncork();
  }

  private failAll(err: MotusError): void {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending.clear();
  }

  private ensureConnecting(): void {
    if (this.connecting || this.socket || this.closed || this.reconnectTimer) return;
    this.connecting = true;
    const connectTimeoutMs = this.options.connectTimeoutMs ?? this.options.timeoutMs;
    const socket = connect({ host: this.options.host, port: this.options.port });
    this.attempt = socket;
    const decoder = new RecordDecoder(this.options.maxRecordSize ?? DEFAULT_MAX_RECORD);
    let established = false;
    const timer = setTimeout(() => {
      this.lastConnectionError = `connect timed out after ${connectTimeoutMs} ms`;
      socket.destroy();
    }, connectTimeoutMs);
    socket.setNoDelay(true);
    socket.once('connect', () => {
      clearTimeout(timer);
      if (this.attempt === socket) this.attempt = undefined;
      if (this.closed) {
        socket.destroy();
        return;
      }
      established = true;
      this.connecting = false;
      this.socket = socket;
      this.generation++;
      this.stats.connects++;
      this.backoffMs = BACKOFF_START_MS;
      this.lastConnectionError = undefined;
      this.lastReceiveAt = performance.now();
      this.flush();
    });
    socket.on('data', (chunk: Buffer) => {
      this.lastReceiveAt = performance.now();
      const { records, error } = decoder.push(chunk);
      for (const record of records) this.onRecord(record);
      if (error) {
        // The byte stream is out of step; the calls on it cannot be answered.
        this.failAll(
          nasError('MOTUS_E_NFS_PROTOCOL', `${this.service} server ${this.endpoint} sent a record of ${error.size} bytes, over the limit of ${error.limit}`, {
            endpoint: this.endpoint,
            ...error,
          }),
        );
        socket.destroy();
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.lastConnectionError = err.code ?? err.message;
    });
    socket.once('close', () => {
      clearTimeout(timer);
      if (this.attempt === socket) this.attempt = undefined;
      if (this.socket === socket) this.socket = undefined;
      if (!established) this.connecting = false;
      if (this.closed) return;
      if (this.pending.size > 0) this.scheduleReconnect();
    });
  }

  private scheduleReconnect(): void {
    if (this.reconnectTimer || this.closed) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, BACKOFF_MAX_MS);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      // Calls that timed out meanwhile are gone; with none left, reconnect lazily later.
      if (this.pending.size > 0) this.ensureConnecting();
    }, delay);
  }

  private onRecord(record: Buffer): void {
    this.options.onRecord?.('reply', record);
    const decoded = decodeReply(record);
    if (!decoded.ok) {
      const p = decoded.xid === undefined ? undefined : this.pending.get(decoded.xid);
      if (!p) {
        this.stats.strayReplies++;
        return;
      }
      this.settle(p, nasError('MOTUS_E_NFS_PROTOCOL', `${this.service} ${p.name} reply from ${this.endpoint} is malformed: ${decoded.error.message}`, { ...decoded.error }));
      return;
    }
    const { xid, body } = decoded.reply;
    const p = this.pending.get(xid);
    if (!p) {
      // A late answer to a call that timed out, or a duplicate after retransmission.
      this.stats.strayReplies++;
      return;
    }
    if (body.status === 'success') this.settle(p, body.results);
    else this.settle(p, this.rejection(p.name, body));
  }

  private settle(p: Pending, outcome: Buffer | MotusError): void {
    clearTimeout(p.timer);
    this.pending.delete(p.xid);
    if (Buffer.isBuffer(outcome)) p.resolve(outcome);
    else p.reject(outcome);
  }

  private rejection(name: string, body: Exclude<RpcReplyBody, { status: 'success' }>): MotusError {
    const what = `${this.service} (program ${this.options.prog} version ${this.options.vers}) at ${this.endpoint}`;
    const data = { endpoint: this.endpoint, prog: this.options.prog, vers: this.options.vers, procedure: name, rpcStatus: body.status };
    switch (body.status) {
      case 'prog-unavail':
        return nasError('MOTUS_E_NFS_RPC_REJECTED', `${what} is not served on that port`, data);
      case 'prog-mismatch':
        return nasError('MOTUS_E_NFS_RPC_REJECTED', `${what}: the server offers only versions ${body.low}–${body.high}`, { ...data, low: body.low, high: body.high });
      case 'proc-unavail':
        return nasError('MOTUS_E_NFS_RPC_REJECTED', `${what} does not implement ${name}`, data);
      case 'garbage-args':
        return nasError('MOTUS_E_NFS_RPC_REJECTED', `${what} could not decode the arguments of ${name}`, data);
      case 'system-err':
        return nasError('MOTUS_E_NFS_RPC_REJECTED', `${what} failed ${name} with a system error (e.g. out of memory)`, data);
      case 'rpc-mismatch':
        return nasError('MOTUS_E_NFS_RPC_REJECTED', `${what} speaks RPC versions ${body.low}–${body.high}, not 2`, { ...data, low: body.low, high: body.high });
      case 'auth-error':
        return nasError('MOTUS_E_NFS_RPC_REJECTED', `${what} rejected the credentials of ${name}: ${describeAuthStat(body.authStat)}`, { ...data, authStat: body.authStat });
    }
  }
}
