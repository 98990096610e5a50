import { execFile } from 'node:child_process';
import { MotusError } from '@motus/sdk';

/** '7.2.22' from 'QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7)'; undefined if no version is there. */
export function parseQemuVersion(output: string): string | undefined {
  return /QEMU emulator version (\d+\.\d+(?:\.\d+)?)/.exec(output)?.[1];
}

const cache = new Map<string, Promise<string>>();

/** The version `<binary> --version` reports, once per process and binary. */
export function qemuVersion(qemuPath: string, timeoutMs = 10_000): Promise<string> {
  let version = cache.get(qemuPath);
  if (!version) {
    version = new Promise<string>((resolve, reject) => {
      execFile(qemuPath, ['--version'], { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
        const parsed = parseQemuVersion(stdout);
        if (parsed) resolve(parsed);
        else reject(new MotusError('MOTUS_E_QEMU_LAUNCH', `${qemuPath} --version gave no version${err ? ` (${err.message})` : ''}: ${(stdout + stderr).trim().slice(0, 500)}`, { binary: qemuPath }));
      });
    });
    cache.set(qemuPath, version);
    version.catch(() => cache.delete(qemuPath));
  }
  return version;
}
