import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { MotusError, QmpClient } from '@motus/sdk';
import { buildReport, type Accelerator, type QemuCpuReport, type QmpCpuDefinition, type QmpCpuModelExpansion } from './qemu-report.js';

/** QEMU's replies as they came, before any interpretation (what tests record as fixtures). */
export interface RawCpuReplies {
  qemuVersion: string;
  accelerator: Accelerator;
  definitions: QmpCpuDefinition[];
  expansions: Record<string, QmpCpuModelExpansion>;
  hostExpansion: QmpCpuModelExpansion;
}

export interface ProbeOptions {
  qemuBinary?: string;
  accelerator?: Accelerator | 'auto';
  /** Whole probe, from spawn to the last answer. */
  timeoutMs?: number;
}

export const DEFAULT_PROBE_TIMEOUT_MS = 30_000;

function onPath(name: string): string | undefined {
  if (name.includes('/')) return existsSync(name) ? name : undefined;
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

function kvmUsable(): boolean {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Asks the host's QEMU what it can do, with a short-lived `-machine none` process
 * (no guest, no RAM worth speaking of). With 'auto', KVM is tried when /dev/kvm is
 * usable, since what `host` offers under KVM is what the real CPU and the kernel
 * allow; QEMU refusing KVM falls back to TCG, whose `max` model is what emulation
 * provides.
 */
export async function probeQemuCpus(options: ProbeOptions = {}): Promise<QemuCpuReport> {
  return buildReport(await probeQemuReplies(options));
}

/** The raw replies of one probe; see probeQemuCpus. */
export async function probeQemuReplies(options: ProbeOptions = {}): Promise<RawCpuReplies> {
  const binary = options.qemuBinary ?? 'qemu-system-x86_64';
  const path = onPath(binary);
  if (!path) {
    throw new MotusError('MOTUS_E_QEMU_NOT_INSTALLED', `${binary} is not installed (apt-get install qemu-system-x86); cpu-compat reads the CPU models from it`, { binary });
  }
  const wanted = options.accelerator ?? 'auto';
  const order: Accelerator[] = wanted === 'auto' ? (kvmUsable() ? ['kvm', 'tcg'] : ['tcg']) : [wanted];
  let last: unknown;
  for (const accelerator of order) {
    try {
      return await probeWith(path, accelerator, options.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS);
    } catch (err) {
      last = err;
    }
  }
  throw last;
}

async function probeWith(binary: string, accelerator: Accelerator, timeoutMs: number): Promise<RawCpuReplies> {
  const dir = mkdtempSync(join(tmpdir(), 'motus-cpu-probe-'));
  const socket = join(dir, 'qmp.sock');
  const qemuArgs = ['-machine', 'none', '-accel', accelerator, '-nodefaults', '-display', 'none', '-qmp', `unix:${socket},server=on,wait=off`];
  // pdeathsig so a probe never outlives an agent that dies mid-probe.
  const setpriv = onPath('setpriv');
  const child: ChildProcess = setpriv
    ? spawn(setpriv, ['--pdeathsig', 'KILL', binary, ...qemuArgs], { stdio: ['ignore', 'ignore', 'pipe'] })
    : spawn(binary, qemuArgs, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  child.once('error', () => undefined);
  const deadline = Date.now() + timeoutMs;
  const fail = (why: string, cause?: unknown) =>
    new MotusError('MOTUS_E_CPU_PROBE', `QEMU (${binary}, ${accelerator}) did not answer the CPU model queries: ${why}${stderr ? `; stderr: ${stderr.trim()}` : ''}`, { binary, accelerator, timeoutMs }, { cause });
  let client: QmpClient | undefined;
  try {
    while (!existsSync(socket)) {
      if (child.exitCode !== null || child.signalCode !== null) throw fail(`it exited (${child.exitCode ?? child.signalCode}) before opening QMP`);
      if (Date.now() > deadline) throw fail(`no QMP socket within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const left = () => Math.max(1, deadline - Date.now());
    client = await QmpClient.connect(socket, { connectTimeoutMs: left(), commandTimeoutMs: left() });
    const version = await client.queryVersion();
    const qemuVersion = `${version.qemu.major}.${version.qemu.minor}.${version.qemu.micro}`;
    const definitions = await client.execute<QmpCpuDefinition[]>('query-cpu-definitions', undefined, { timeoutMs: left() });
    const hostModel = accelerator === 'kvm' ? 'host' : 'max';
    const expand = (name: string) => client!.execute<QmpCpuModelExpansion>('query-cpu-model-expansion', { type: 'static', model: { name } }, { timeoutMs: left() });
    // Sent together: QMP answers them in order, and one round trip per model would
    // make the probe as slow as the busiest moment of a loaded host.
    const names = definitions.map((d) => d.name).filter((n) => n !== 'max' && n !== 'host' && n !== 'base');
    const [hostExpansion, ...expanded] = await Promise.all([expand(hostModel), ...names.map(expand)]);
    const expansions: Record<string, QmpCpuModelExpansion> = {};
    names.forEach((n, i) => (expansions[n] = expanded[i]!));
    return { qemuVersion, accelerator, definitions, expansions, hostExpansion: hostExpansion! };
  } catch (err) {
    if (err instanceof MotusError && err.code === 'MOTUS_E_CPU_PROBE') throw err;
    throw fail(err instanceof Error ? err.message : String(err), err);
  } finally {
    client?.close();
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
    rmSync(dir, { recursive: true, force: true });
  }
}
