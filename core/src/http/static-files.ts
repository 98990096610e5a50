import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, extname, join } from 'node:path';
import { MotusError } from '@motus/sdk';
import { Reply } from './http-server.js';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};
/** Flat file names only: no folders, no dots but the extension's, so no path can leave the folder. */
const SAFE_NAME = /^[A-Za-z0-9_-]+\.[a-z]+$/;

/** Where the built console lives: `dist/` of the @motus/console workspace, found by package resolution. */
export function consoleDir(): string | undefined {
  try {
    return join(dirname(createRequire(import.meta.url).resolve('@motus/console/package.json')), 'dist');
  } catch {
    return undefined;
  }
}

/**
 * Serves the files of one built folder (the web console). Files are read per
 * request: they are few and small, and a rebuilt console shows without a restart.
 */
export class StaticFiles {
  constructor(private readonly dir: string | undefined) {}

  async serve(name: string): Promise<Reply> {
    if (!SAFE_NAME.test(name) || !(extname(name) in TYPES)) throw new MotusError('MOTUS_E_NOT_FOUND', `no console file ${name}`);
    if (!this.dir) return this.notBuilt();
    let body: Buffer;
    try {
      body = await readFile(join(this.dir, name));
    } catch {
      if (name === 'index.html') return this.notBuilt();
      throw new MotusError('MOTUS_E_NOT_FOUND', `no console file ${name}`);
    }
    // The page is small and changes with each build: always revalidate rather than serve a stale bundle.
    return new Reply(200, body, TYPES[extname(name)], { 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff' });
  }

  private notBuilt(): Reply {
    return new Reply(503, `The web console is not built (${this.dir ?? '@motus/console not installed'}): run 'npm run build' in the Motus checkout.\n`, 'text/plain; charset=utf-8');
  }
}
