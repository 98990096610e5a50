import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MotusError } from '@motus/sdk';

/** What a client needs to reach a server: written by motusd into its state folder. */
export interface ClientFile {
  url: string;
  token: string;
}

export const CLIENT_FILE = 'client.json';

/** Reads a token file, creating it (mode 0600) with a fresh random token the first time. */
export function ensureToken(dir: string, file: string): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, file);
  if (existsSync(path)) return readFileSync(path, 'utf8').trim();
  const token = randomBytes(24).toString('base64url');
  writeFileSync(path, token + '\n', { mode: 0o600 });
  return token;
}

/** Written whole and then renamed into place: a reader waiting for the file never sees it half written. */
export function writeClientFile(dir: string, client: ClientFile): void {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, CLIENT_FILE);
  writeFileSync(`${path}.tmp`, JSON.stringify(client, null, 2) + '\n', { mode: 0o600 });
  renameSync(`${path}.tmp`, path);
}

export function readClientFile(dir: string): ClientFile {
  const path = join(dir, CLIENT_FILE);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new MotusError('MOTUS_E_INVALID_REQUEST', `no Motus site in ${dir} (${path} is missing): start one with 'motusd --all-in-one --state ${dir}'`, { path });
  }
  try {
    const value = JSON.parse(text) as Partial<ClientFile>;
    if (typeof value.url === 'string' && typeof value.token === 'string') return { url: value.url, token: value.token };
  } catch {
    /* reported below */
  }
  throw new MotusError('MOTUS_E_INVALID_REQUEST', `${path} is not a valid client file (expected {"url", "token"})`, { path });
}
