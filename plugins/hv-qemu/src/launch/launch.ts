import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { MotusError, QmpClient, isMotusError } from '@motus/sdk';
import type { RunFiles } from './argv.js';
import { QemuProcess } from './qemu-process.js';

export interface StartQemuOptions {
  qemuPath: string;
  argv: readonly string[];
  runDir: string;
  files: RunFiles;
  /** Limit for QEMU to come up and answer on QMP. */
  startTimeoutMs: number;
  qmpTimeoutMs: number;
}

/** Longest unix socket path the kernel accepts (sun_path holds 108 bytes with the NUL). */
const MAX_SOCKET_PATH = 107;

/**
 * Starts QEMU and connects to its QMP socket. Rejects with MOTUS_E_QEMU_LAUNCH
 * (carrying QEMU's stderr) if QEMU exits or does not answer in time; nothing is
 * left running then.
 */
export async function startQemu(options: StartQemuOptions): Promise<{ process: QemuProcess; qmp: QmpClient }> {
  const { files } = options;
  if (Buffer.byteLength(files.qmpSocket) > MAX_SOCKET_PATH) {
    throw new MotusError('MOTUS_E_QEMU_LAUNCH', `the QMP socket path ${files.qmpSocket} is longer than the ${MAX_SOCKET_PATH} bytes a unix socket allows; use a shorter runDir`, {
      runDir: options.runDir,
    });
  }
  mkdirSync(options.runDir, { recursive: true });
  // A socket left by an earlier QEMU would accept nothing, or worse, belong to another process.
  rmSync(files.qmpSocket, { force: true });
  rmSync(files.pidFile, { force: true });

  const proc = QemuProcess.spawn(options.qemuPath, options.argv);
  if (proc.pid > 0) writeFileSync(files.pidFile, `${proc.pid}\n`);
  const deadline = Date.now() + options.startTimeoutMs;
  let failure: { message: string; data?: Record<string, unknown> } | undefined;
  while (!proc.hasExited) {
    const left = deadline - Date.now();
    if (left <= 0) {
      failure = { message: `QEMU did not answer on ${files.qmpSocket} within ${options.startTimeoutMs} ms`, data: { timeoutMs: options.startTimeoutMs } };
      break;
    }
    try {
      const qmp = await QmpClient.connect(files.qmpSocket, { connectTimeoutMs: Math.min(left, 5_000), commandTimeoutMs: options.qmpTimeoutMs });
      return { process: proc, qmp };
    } catch (err) {
      // Until QEMU has bound its socket, connecting fails at once; try again shortly.
      if (!isMotusError(err, 'MOTUS_E_QMP_DISCONNECTED') && !isMotusError(err, 'MOTUS_E_QMP_TIMEOUT')) {
        failure = { message: `QMP on ${files.qmpSocket} failed: ${err instanceof Error ? err.message : String(err)}` };
        break;
      }
    }
    await Promise.race([proc.exited, new Promise((resolve) => setTimeout(resolve, 50))]);
  }
  proc.kill('SIGKILL');
  await proc.waitExit(5_000);
  // stderr may still be in flight when 'exit' fires; it is what tells the operator why.
  await proc.waitOutputClosed(1_000);
  throw proc.launchError(failure?.message ?? 'QEMU exited during start', failure?.data);
}
