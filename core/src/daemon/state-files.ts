import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MotusError, registerSecret } from '@motus/sdk';
import { privateDir, writePrivateFile } from '../kernel/private-files.js';

/** What a client needs to reach a server: written by motusd into its state folder. */
export interface ClientFile {
  url: string;
  token: string;
  /** The site CA bundle (PEM) the server's certificate chains to. */
  ca?: string;
}

export const CLIENT_FILE = 'client.json';

/** Reads a token file, creating it (mode 0600) with a fresh random token the first time. */
export function ensureToken(dir: string, file: string): string {
  privateDir(dir);
  const path = join(dir, file);
  let token: string;
  if (existsSync(path)) {
    token = readFileSync(path, 'utf8').trim();
  } else {
    token = randomBytes(24).toString('base64url');
    writePrivateFile(path, token + '\n');
  }
  registerSecret(token);
  return token;
}

/** Written whole and then renamed into place: a reader waiting for the file never sees it half written. */
/** Written whole and then renamed into place (writePrivateFile): a reader waiting for the file never sees it half written. */
export function writeClientFile(dir: string, client: ClientFile): void {
  privateDir(dir);
  writePrivateFile(join(dir, CLIENT_FILE), JSON.stringify(client, null, 2) + '\n');
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
    if (typeof value.url === 'string' && typeof value.token === 'string') {
      return { url: value.url, token: value.token, ...(typeof value.ca === 'string' ? { ca: value.ca } : {}) };
    }
  } catch {
    /* reported below */
  }
  throw new MotusError('MOTUS_E_INVALID_REQUEST', `${path} is not a valid client file (expected {"url", "token"})`, { path });
}
