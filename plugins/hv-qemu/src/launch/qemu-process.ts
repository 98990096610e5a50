import { spawn, type ChildProcess } from 'node:child_process';
import { MotusError } from '@motus/sdk';
import { requireSetpriv } from './binaries.js';

export interface ProcessExit {
  code: number | null;
  signal: string | null;
}

/** How much of QEMU's stderr is kept for error messages: its last bytes matter most. */
const OUTPUT_LIMIT = 64 * 1024;

/**
 * One QEMU process, started under `setpriv --pdeathsig KILL` so the kernel kills
 * it when the owning Node process dies, however it dies.
 */
export class QemuProcess {
  readonly exited: Promise<ProcessExit>;
  private exit_: ProcessExit | undefined;
  private output = '';
  private readonly outputClosed: Promise<void>;

  private constructor(private readonly child: ChildProcess) {
    this.exited = new Promise<ProcessExit>((resolve) => {
      const done = (exit: ProcessExit) => {
        if (this.exit_) return;
        this.exit_ = exit;
        resolve(exit);
      };
      child.once('exit', (code, signal) => done({ code, signal }));
      // A failed spawn emits 'error' and no 'exit'.
      child.once('error', (err) => {
        this.append(`spawn failed: ${err.message}\n`);
        done({ code: null, signal: null });
      });
    });
    this.outputClosed = new Promise<void>((resolve) => child.once('close', () => resolve()));
    const collect = (chunk: Buffer) => this.append(chunk.toString('utf8'));
    child.stderr?.on('data', collect);
    child.stdout?.on('data', collect);
  }

  /** Spawns QEMU; the returned process may still fail to start (watch `exited`). */
  static spawn(qemuPath: string, argv: readonly string[]): QemuProcess {
    const setpriv = requireSetpriv();
    const child = spawn(setpriv, ['--pdeathsig', 'KILL', '--', qemuPath, ...argv], {
      stdio: ['ignore', 'pipe', 'pipe'],
      // A session of its own: a Ctrl-C meant for the owner must not make QEMU quit
      // behind the owner's back; the owner ends QEMU itself, or the kernel does when it dies.
      detached: true,
    });
    return new QemuProcess(child);
  }

  /** setpriv exec's QEMU, so this is QEMU's own pid. */
  get pid(): number {
    return this.child.pid ?? -1;
  }

  get hasExited(): boolean {
    return this.exit_ !== undefined;
  }

  get exitStatus(): ProcessExit | undefined {
    return this.exit_;
  }

  /** What QEMU wrote on stderr and stdout (the last 64 KiB). */
  get outputText(): string {
    return this.output;
  }

  kill(signal: NodeJS.Signals): void {
    if (this.exit_ || this.child.pid === undefined) return;
    try {
      this.child.kill(signal);
    } catch {
      // Already gone between the check and the signal: 'exit' follows.
    }
  }

  /** Resolves true if the process exited within `ms`. */
  async waitExit(ms: number): Promise<boolean> {
    if (this.exit_) return true;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
    const result = await Promise.race([this.exited.then(() => true as const), timeout]);
    clearTimeout(timer);
    return result;
  }

  /** Waits (at most `ms`) until QEMU's stdout and stderr have been read to their end. */
  async waitOutputClosed(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.outputClosed, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
    clearTimeout(timer);
  }

  launchError(message: string, data: Record<string, unknown> = {}): MotusError {
    const stderr = this.output.trim();
    return new MotusError('MOTUS_E_QEMU_LAUNCH', stderr ? `${message}: ${stderr}` : message, { ...data, stderr, exit: this.exit_ ?? null });
  }

  private append(text: string): void {
    this.output += text;
    if (this.output.length > OUTPUT_LIMIT) this.output = this.output.slice(-OUTPUT_LIMIT);
  }
}
