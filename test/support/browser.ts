import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { repoRoot } from './site.js';
import { requireCommand, tempDir } from './system.js';

/** Where browser tests leave their screenshots (gitignored). */
export const ARTEFACTS_DIR = join(repoRoot, 'test-artifacts');

export function artefactsDir(area: string): string {
  const dir = join(ARTEFACTS_DIR, area);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/**
 * Debian's Chromium, headless, driven by playwright-core (which brings no browser
 * of its own), with a fresh profile and every background call to the outside off:
 * the page may only talk to the loopback server under test.
 */
export async function launchChromium(): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  const executablePath = requireCommand('chromium', 'chromium');
  const profile = tempDir('chromium-profile');
  const context = await chromium.launchPersistentContext(profile.path, {
    executablePath,
    headless: true,
    viewport: { width: 1280, height: 760 },
    // The server under test answers HTTPS with its own site CA, which the fresh
    // profile does not know; the page talks to that loopback server only. (Clients
    // that check the CA are tested with the API client and the agents.)
    ignoreHTTPSErrors: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    timeout: 60_000,
  });
  return {
    context,
    close: async () => {
      await context.close().catch(() => undefined);
      profile.remove();
    },
  };
}
