import { spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MotusError } from '@motus/sdk';
import { BOOT_MARKER, bootSector } from './boot-sector.js';
import type { Accelerator } from './launch/argv.js';
import { requireSetpriv } from './launch/binaries.js';

export type AcceleratorSetting = 'auto' | Accelerator;

export interface AcceleratorChoice {
  accelerator: Accelerator;
  reason: string;
}

export interface ProbeOptions {
  qemuPath: string;
  /** From the plugin config; MOTUS_ACCEL overrides it. */
  setting: AcceleratorSetting;
  env?: NodeJS.ProcessEnv;
  /** Device checked before trying KVM (tests point it elsewhere). */
  kvmDevice?: string;
  bootTimeoutMs?: number;
}

export interface BootSectorRun {
  ok: boolean;
  /** What went wrong, or how long it took, in words for the reason string. */
  detail: string;
}

/**
 * Boots the marker boot sector under `accelerator` and resolves ok once the marker
 * shows on the serial port. Never rejects.
 */
export async function runBootSector(qemuPath: string, accelerator: Accelerator, timeoutMs: number): Promise<BootSectorRun> {
  let setpriv: string;
  try {
    setpriv = requireSetpriv();
  } catch (err) {
    return { ok: false, detail: err instanceof Error ? err.message : String(err) };
  }
  const dir = mkdtempSync(join(tmpdir(), 'motus-accel-'));
  const image = join(dir, 'boot.img');
  writeFileSync(image, bootSector());
  const started = Date.now();
  try {
    return await new Promise<BootSectorRun>((resolve) => {
      const child = spawn(
        setpriv,
        ['--pdeathsig', 'KILL', '--', qemuPath, '-machine', 'pc', '-accel', accelerator, '-m', '16', '-nodefaults', '-no-user-config', '-display', 'none',
          '-serial', 'stdio', '-drive', `file=${image.replace(/,/g, ',,')},format=raw,if=ide`, '-boot', 'c'],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let stdout = '';
      let stderr = '';
      let settled = false;
      const settle = (run: BootSectorRun) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        child.kill('SIGKILL');
        resolve(run);
      };
      const timer = setTimeout(() => settle({ ok: false, detail: `no guest output within ${timeoutMs} ms${stderr ? `; QEMU said: ${stderr.trim()}` : ''}` }), timeoutMs);
      child.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString('latin1');
        if (stdout.includes(BOOT_MARKER)) settle({ ok: true, detail: `a test guest booted and ran in ${Date.now() - started} ms` });
      });
      child.stderr.on('data', (chunk: Buffer) => {
        if (stderr.length < 4096) stderr += chunk.toString('utf8');
      });
      child.once('error', (err) => settle({ ok: false, detail: `QEMU could not be started: ${err.message}` }));
      child.once('exit', (code, signal) => {
        // Let stderr drain so the reason names QEMU's own complaint.
        setTimeout(() => settle({ ok: false, detail: `QEMU exited (${signal ?? `code ${code}`}) before the guest ran${stderr ? `: ${stderr.trim()}` : ''}` }), 100);
      });
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function parseSetting(value: string, source: string): AcceleratorSetting {
  if (value === 'auto' || value === 'kvm' || value === 'tcg') return value;
  throw new MotusError('MOTUS_E_INVALID_REQUEST', `${source} is '${value}'; expected auto, kvm or tcg`, { field: source, value });
}

/** Decides the accelerator: a forced one (env, then config), else KVM only if a guest really runs under it. */
export async function chooseAccelerator(options: ProbeOptions): Promise<AcceleratorChoice> {
  const envValue = (options.env ?? process.env)['MOTUS_ACCEL'];
  const fromEnv = envValue !== undefined && envValue !== '' ? parseSetting(envValue, 'MOTUS_ACCEL') : undefined;
  const setting = fromEnv ?? parseSetting(options.setting, 'accelerator');
  const forcedBy = fromEnv ? `MOTUS_ACCEL=${fromEnv}` : `plugin config accelerator: ${setting}`;
  if (setting !== 'auto') return { accelerator: setting, reason: `forced by ${forcedBy}` };

  const device = options.kvmDevice ?? '/dev/kvm';
  try {
    accessSync(device, constants.R_OK | constants.W_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? `${device} does not exist` : `${device} is not accessible (${code ?? 'error'})`;
    return { accelerator: 'tcg', reason: `${why}; guests run under TCG (emulation)` };
  }
  const run = await runBootSector(options.qemuPath, 'kvm', options.bootTimeoutMs ?? 5_000);
  if (run.ok) return { accelerator: 'kvm', reason: `KVM works: ${run.detail}` };
  return { accelerator: 'tcg', reason: `${device} exists but a test guest did not run under KVM (${run.detail}); guests run under TCG (emulation)` };
}

const cache = new Map<string, Promise<AcceleratorChoice>>();

/** chooseAccelerator, once per process for each binary, setting and environment value. */
export function probeAccelerator(options: ProbeOptions): Promise<AcceleratorChoice> {
  const key = JSON.stringify([options.qemuPath, options.setting, (options.env ?? process.env)['MOTUS_ACCEL'] ?? '', options.kvmDevice ?? '']);
  let choice = cache.get(key);
  if (!choice) {
    choice = chooseAccelerator(options);
    cache.set(key, choice);
    // A failed probe (bad setting) should be reported again, not cached.
    choice.catch(() => cache.delete(key));
  }
  return choice;
}
