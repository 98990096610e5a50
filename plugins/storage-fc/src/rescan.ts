/**
 * Rescans of a host's FC SCSI hosts: writing "- - -" (every channel, target and
 * LUN) to /sys/class/scsi_host/hostH/scan makes the kernel ask each remote port
 * for its LUNs again (REPORT LUNS) and add the new ones; udev then makes their
 * /dev links. The kernel answers the write once the scan is done, so the write
 * is asynchronous here (libuv's thread pool) and bounded by a timeout.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { fcHostNames } from './discovery.js';

export interface RescanResult {
  host: string;
  file: string;
  ok: boolean;
  reason?: string;
  ms: number;
}

async function scanOne(file: string, timeoutMs: number): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const write = (async () => {
    // O_WRONLY without O_CREAT: a missing scan file means no such SCSI host, not a file to make.
    const fh = await open(file, constants.O_WRONLY | constants.O_TRUNC);
    try {
      await fh.write('- - -\n');
    } finally {
      await fh.close();
    }
  })();
  try {
    await Promise.race([write, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs)))]);
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? 'no scan file (not a SCSI host)' : code ? `${code}: ${(err as Error).message}` : (err as Error).message;
  } finally {
    clearTimeout(timer);
  }
}

/** Rescans the FC HBAs' SCSI hosts (all of them, or the named ones), at the same time. */
export async function rescanFcHosts(sys: string, options: { hosts?: string[]; timeoutMs?: number } = {}): Promise<RescanResult[]> {
  const hosts = options.hosts ?? fcHostNames(sys);
  return Promise.all(
    hosts.map(async (host) => {
      const t0 = performance.now();
      const file = join(sys, 'class', 'scsi_host', host, 'scan');
      const reason = /^host\d+$/.test(host) ? await scanOne(file, options.timeoutMs ?? 60_000) : `'${host}' is not a SCSI host name`;
      return { host, file, ok: reason === undefined, ...(reason ? { reason } : {}), ms: Math.round((performance.now() - t0) * 100) / 100 };
    }),
  );
}
