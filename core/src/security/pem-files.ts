import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { privateDir } from '../kernel/private-files.js';

/** The PEM certificates of a bundle, each ending with a newline. */
export function pemBlocks(text: string): string[] {
  return [...text.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)].map((m) => `${m[0]}\n`);
}

/** A private scratch folder inside `dir` for openssl's input and output files; the caller removes it. */
export function scratchDir(dir: string): string {
  return privateDir(join(dir, `tmp-${randomBytes(6).toString('hex')}`));
}
