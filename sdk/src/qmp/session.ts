import { createConnection, type Socket } from 'node:net';
import { Observable, Subject } from 'rxjs';
import { MotusError } from '../errors.js';
import { QmpLineDecoder, encodeCommand, DEFAULT_MAX_LINE_BYTES } from './codec.js';
import type { QmpEvent, QmpGreeting, QmpMessage } from './messages.js';

export interface QmpSessionOptions {
  /** Per-command time limit unless a call gives its own. */
  commandTimeoutMs?: number;
  /** Limit for connecting, reading the greeting and negotiating capabilities. */
  connectTimeoutMs?: number;
  maxLineBytes?: number;
}

export interface QmpExecuteOptions {
  timeoutMs?: number;
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (err: MotusError) => void;
  timer: NodeJS.Timeout;
}

const DEFAULT_COMMAND_TIMEOUT_MS = 10_000;
const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;

/**
 * One QMP connection: greeting, capability negotiation, commands matched to their
 * replies by id (any number in flight, answered in any order), and the server's
 * asynchronous events as a stream.
 */
export class QmpSession {
  private readonly events = new Subject<QmpEvent>();
  /** QEMU's asynchronous events; completes when the connection closes. */
  readonly events$: Observable<QmpEvent> = this.events.asObservable();
  private readonly pending = new Map<string, Pending>();
  private readonly decoder: QmpLineDecoder;
  private nextId = 1;
  private closedError: MotusError | undefined;
  private greetingWaiter: ((greeting: QmpGreeting | MotusError) => void) | undefined;
  private greeting_: QmpGreeting | undefined;
  private readonly closedPromise: Promise<MotusError>;
  private markClosed!: (err: MotusError) => void;

  private constructor(
    private readonly socket: Socket,
    private readonly path: string,
    private readonly options: Required<QmpSessionOptions>,
  ) {
    this.decoder = new QmpLineDecoder(options.maxLineBytes);
    this.closedPromise = new Promise((resolve) => (this.markClosed = resolve));
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.fail(new MotusError('MOTUS_E_QMP_DISCONNECTED', `QMP connection to ${path} failed: ${err.message}`, { path }, { cause: err })));
    socket.on('close', () => this.fail(new MotusError('MOTUS_E_QMP_DISCONNECTED', `QMP connection to ${path} closed`, { path })));
  }

  /** Connects to a QMP unix socket, reads the greeting and leaves capability negotiation mode. */
  static async connect(path: string, options: QmpSessionOptions = {}): Promise<QmpSession> {
    const resolved: Required<QmpSessionOptions> = {
      commandTimeoutMs: options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS,
      connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      maxLineBytes: options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES,
    };
    const socket = createConnection({ path });
    const session = new QmpSession(socket, path, resolved);
    const greeting = await new Promise<QmpGreeting>((resolve, reject) => {
      const timer = setTimeout(() => {
        session.greetingWaiter = undefined;
        const err = new MotusError('MOTUS_E_QMP_TIMEOUT', `no QMP greeting on ${path} within ${resolved.connectTimeoutMs} ms`, { path, timeoutMs: resolved.connectTimeoutMs });
        session.fail(err);
        reject(err);
      }, resolved.connectTimeoutMs);
      session.greetingWaiter = (result) => {
        clearTimeout(timer);
        session.greetingWaiter = undefined;
        if (result instanceof MotusError) reject(result);
        else resolve(result);
      };
    });
    session.greeting_ = greeting;
    try {
      await session.execute('qmp_capabilities', undefined, { timeoutMs: resolved.connectTimeoutMs });
    } catch (err) {
      session.close();
      throw err;
    }
    return session;
  }

  get greeting(): QmpGreeting {
    // connect() only hands out sessions that have one.
    return this.greeting_!;
  }

  get isOpen(): boolean {
    return this.closedError === undefined;
  }

  /** Resolves (never rejects) with the reason once the connection is closed. */
  get closed(): Promise<MotusError> {
    return this.closedPromise;
  }

  /**
   * Runs one command. Rejects with MOTUS_E_QMP_COMMAND (QEMU's class and desc in
   * data), MOTUS_E_QMP_TIMEOUT, or MOTUS_E_QMP_DISCONNECTED.
   */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, options: QmpExecuteOptions = {}): Promise<T> {
    if (this.closedError) {
      return Promise.reject(new MotusError('MOTUS_E_QMP_DISCONNECTED', `cannot run ${command}: ${this.closedError.message}`, { ...this.closedError.data, command }));
    }
    const id = `motus-${this.nextId++}`;
    const encoded = encodeCommand(args === undefined ? { execute: command, id } : { execute: command, arguments: args, id });
    if (!encoded.ok) {
      return Promise.reject(new MotusError('MOTUS_E_INVALID_REQUEST', `arguments of ${command} cannot be sent as JSON: ${encoded.detail}`, { command }));
    }
    const timeoutMs = options.timeoutMs ?? this.options.commandTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        // A late reply then finds no pending entry and is dropped.
        this.pending.delete(id);
        reject(new MotusError('MOTUS_E_QMP_TIMEOUT', `QEMU did not answer ${command} within ${timeoutMs} ms`, { command, timeoutMs, path: this.path }));
      }, timeoutMs);
      this.pending.set(id, { command, resolve: resolve as (value: unknown) => void, reject, timer });
      this.socket.write(encoded.line);
    });
  }

  /** Closes the connection; pending commands fail with MOTUS_E_QMP_DISCONNECTED. */
  close(): void {
    this.fail(new MotusError('MOTUS_E_QMP_DISCONNECTED', `QMP connection to ${this.path} closed by Motus`, { path: this.path }));
  }

  private onData(chunk: Buffer): void {
    for (const result of this.decoder.push(chunk)) {
      if (!result.ok) {
        // A reply that cannot be read could be the answer to any pending command;
        // waiting for their timeouts would only hide a broken peer, so give up now.
        this.fail(new MotusError('MOTUS_E_QMP_PROTOCOL', `QEMU sent bytes that are not QMP (${result.error.kind}): ${result.error.detail}`, { path: this.path, ...result.error }));
        return;
      }
      this.dispatch(result.message);
      if (this.closedError) return;
    }
  }

  private dispatch(message: QmpMessage): void {
    switch (message.kind) {
      case 'greeting':
        this.greetingWaiter?.(message);
        return;
      case 'event':
        this.events.next(message);
        return;
      case 'return':
      case 'error': {
        if (message.id === undefined) return;
        const entry = this.pending.get(String(message.id));
        if (!entry) return;
        this.pending.delete(String(message.id));
        clearTimeout(entry.timer);
        if (message.kind === 'return') entry.resolve(message.value);
        else {
          entry.reject(
            new MotusError('MOTUS_E_QMP_COMMAND', `QEMU refused ${entry.command}: ${message.desc}`, {
              command: entry.command,
              class: message.errorClass,
              desc: message.desc,
            }),
          );
        }
        return;
      }
    }
  }

  private fail(err: MotusError): void {
    if (this.closedError) return;
    this.closedError = err;
    this.greetingWaiter?.(err);
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const entry of pending) {
      clearTimeout(entry.timer);
      entry.reject(
        err.code === 'MOTUS_E_QMP_PROTOCOL'
          ? new MotusError('MOTUS_E_QMP_PROTOCOL', `${entry.command} lost: ${err.message}`, { ...err.data, command: entry.command })
          : new MotusError('MOTUS_E_QMP_DISCONNECTED', `${entry.command} lost: ${err.message}`, { ...err.data, command: entry.command }),
      );
    }
    this.socket.destroy();
    this.events.complete();
    this.markClosed(err);
  }
}
