import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';

/**
 * State is owner-only: folders 0700, files 0600. Tokens, keys, the site's CHAP
 * secrets and the audit database live there, and nothing else on the host needs
 * to read them (QEMU runs as the same user).
 */

/** Creates `dir` (and parents) readable by the owner only, tightening it if it already existed. */
export function privateDir(dir: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  return dir;
}

/** Writes a file owner-only (0600), atomically: a reader sees the old file or the new one, never half. */
export function writePrivateFile(path: string, text: string): void {
  const temp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(temp, text, { mode: 0o600 });
  renameSync(temp, path);
}
