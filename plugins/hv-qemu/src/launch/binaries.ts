import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { MotusError } from '@motus/sdk';

export const DEFAULT_QEMU_BINARY = 'qemu-system-x86_64';

/** Where an executable lives: the path itself when it has a slash, else the first match on PATH. */
export function findExecutable(name: string, pathEnv: string = process.env['PATH'] ?? ''): string | undefined {
  const candidates = name.includes('/') ? [name] : [...pathEnv.split(delimiter).filter(Boolean), '/usr/local/bin', '/usr/bin', '/bin'].map((dir) => join(dir, name));
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not here or not executable: the next candidate may be.
    }
  }
  return undefined;
}

export function requireQemu(binary: string): string {
  const found = findExecutable(binary);
  if (!found) {
    throw new MotusError('MOTUS_E_QEMU_NOT_INSTALLED', `${binary} is not installed (or not executable): run scripts/install-system-deps.sh, or set the plugin's qemuBinary`, {
      binary,
    });
  }
  return found;
}

/**
 * setpriv (util-linux) sets the parent-death signal before exec'ing QEMU, which is
 * the only way to make the kernel kill QEMU when its owner dies, even by SIGKILL.
 */
export function requireSetpriv(): string {
  const found = findExecutable('setpriv');
  if (!found) {
    throw new MotusError('MOTUS_E_QEMU_LAUNCH', 'setpriv (Debian package util-linux) is not installed; Motus needs it so that no QEMU outlives its owner', {
      binary: 'setpriv',
    });
  }
  return found;
}
