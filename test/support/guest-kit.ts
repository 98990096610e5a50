import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { requireCommand } from './system.js';

/** What test/guest-kit/build.sh recorded about the kit it built. */
export interface GuestKitManifest {
  kit: string;
  builtAt: string;
  inputsSha256: string;
  kernel: {
    metaPackage: string;
    package: string;
    version: string;
    release: string;
    config: Record<string, 'y' | 'm' | 'n'>;
    initrdModules: string[];
  };
  busybox: { package: string; version: string };
  gcc: string;
  programs: string[];
  /** The base kernel command line (console and log level); workloads are appended to it. */
  cmdline: string;
  files: Record<string, { sha256: string; bytes: number }>;
}

export interface GuestKitCmdlineOptions {
  /** MiB/s of 4 KiB pages the memory dirtier writes; 0 or absent means no dirtier. */
  dirtyMBps?: number;
  /** The dirtier's working set in MiB (default 64). */
  workingSetMiB?: number;
  /** Bursty dirtier: dirty for onMs at dirtyMBps, rest offMs, again. */
  burst?: { onMs: number; offMs: number };
  /** The dirtier rewrites each page whole (motus.scribble): re-sent pages do not delta-compress. */
  wholePages?: boolean;
  /** Heartbeat period, ms (200 by default); 10 makes the guest-observed pause measurable to ~10 ms. */
  heartbeatMs?: number;
  /**
   * A string (letters, digits, - and _, at most 64) the dirtier writes at the start
   * of every page of its working set, again at every dirtying write (motus.marker):
   * a capture of a plaintext migration stream shows it.
   */
  marker?: string;
  /** More `motus.<name>=<args>` parameters, for workloads this helper has no option for yet. */
  extra?: string[];
}

export interface GuestKit {
  kernel: string;
  initrd: string;
  manifest: GuestKitManifest;
  cmdline(opts?: GuestKitCmdlineOptions): string;
}

export const GUEST_KIT_HEARTBEAT_PERIOD_MS = 200;
const DEFAULT_WORKING_SET_MIB = 64;
const BUILD_HINT = 'run `bash test/guest-kit/build.sh` (as root) from the repository root to build it';

/** The repository root, found from this file whether it runs from source or from test/dist. */
function kitRepoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'test', 'guest-kit', 'build.sh'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find the repository root (a folder holding test/guest-kit/build.sh) above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value <= 0) throw new Error(`guest kit: ${name} must be a positive integer, got ${value}`);
  return value;
}

/** What a site needs to run guest-kit VMs: QEMU, setpriv (QEMU dies with its agent) and the built kit; fails saying how to get what is missing. */
export function requireGuestKitSite(): GuestKit {
  requireCommand('qemu-system-x86_64', 'qemu-system-x86');
  requireCommand('setpriv', 'util-linux');
  return guestKit();
}

/** The built guest kit; throws, saying how to build it, when it is missing. */
export function guestKit(): GuestKit {
  const dir = join(kitRepoRoot(), 'build', 'guest-kit');
  const kernel = join(dir, 'vmlinuz');
  const initrd = join(dir, 'initrd.img');
  const manifestPath = join(dir, 'manifest.json');
  const missing = [kernel, initrd, manifestPath].filter((path) => !existsSync(path));
  if (missing.length > 0) throw new Error(`the guest kit is not built (missing ${missing.join(', ')}): ${BUILD_HINT}`);
  let manifest: GuestKitManifest;
  try {
    manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as GuestKitManifest;
  } catch (error) {
    throw new Error(`the guest kit's ${manifestPath} is unreadable (${(error as Error).message}): ${BUILD_HINT}`);
  }
  if (typeof manifest.cmdline !== 'string' || manifest.cmdline === '') {
    throw new Error(`the guest kit's ${manifestPath} has no cmdline: it comes from an older build script; ${BUILD_HINT}`);
  }
  return {
    kernel,
    initrd,
    manifest,
    cmdline(opts = {}) {
      const parts = [manifest.cmdline];
      const rate = opts.dirtyMBps ?? 0;
      if (rate !== 0) {
        positiveInteger('dirtyMBps', rate);
        const burst = opts.burst ? `:${positiveInteger('burst.onMs', opts.burst.onMs)}:${positiveInteger('burst.offMs', opts.burst.offMs)}` : '';
        const ws = positiveInteger('workingSetMiB', opts.workingSetMiB ?? DEFAULT_WORKING_SET_MIB);
        if (opts.wholePages && opts.burst) throw new Error('guest kit: wholePages and burst do not combine (motus.scribble has no burst)');
        if (opts.marker !== undefined) {
          if (!/^[A-Za-z0-9_-]{1,64}$/.test(opts.marker)) throw new Error(`guest kit: marker '${opts.marker}' must be 1 to 64 letters, digits, - or _`);
          // Before the dirtier: /init reads the parameters in order.
          parts.push(`motus.marker=${opts.marker}`);
        }
        parts.push(opts.wholePages ? `motus.scribble=${rate}:${ws}` : `motus.dirty=${rate}:${ws}${burst}`);
      }
      if (opts.heartbeatMs !== undefined) parts.push(`motus.hb=${positiveInteger('heartbeatMs', opts.heartbeatMs)}`);
      for (const param of opts.extra ?? []) {
        if (!/^motus\.[a-z][a-z0-9_-]*=\S+$/.test(param)) throw new Error(`guest kit: extra parameter '${param}' is not of the form motus.<name>=<args> without spaces`);
        parts.push(param);
      }
      return parts.join(' ');
    },
  };
}

export interface Heartbeat {
  seq: number;
  uptime: number;
  boot: string;
}

export interface GuestSerial {
  /** Boot ids of every MOTUS-READY line, in order (more than one means the guest rebooted). */
  ready: string[];
  heartbeats: Heartbeat[];
  dirtier: Array<{ rateMBps: number; workingSetMiB: number; burst?: { onMs: number; offMs: number }; wholePages?: true }>;
  /** The text after `MOTUS-ERROR ` of every error line the guest printed. */
  errors: string[];
}

const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
// Each pattern must reach the end of its line (or of the text), so the half of a
// line that has not arrived yet, or a line torn by other output, is skipped
// rather than read as a smaller number.
const READY = new RegExp(`MOTUS-READY boot=(${UUID})\\s*$`);
const HEARTBEAT = new RegExp(`MOTUS-HB seq=(\\d+) uptime=(\\d+(?:\\.\\d+)?) boot=(${UUID})\\s*$`);
const DIRTIER = /MOTUS-DIRTIER rate=(\d+) ws=(\d+)(?: burst=(\d+)\/(\d+))?( whole)?\s*$/;
const ERROR = /MOTUS-ERROR (\S.*?)\s*$/;

/**
 * Reads every Motus line of a guest's serial output. Junk, kernel messages and
 * partial lines are skipped. After a migration, pass the source's log followed by
 * the destination's: a line cut at switchover is whole again once joined.
 */
export function parseGuestSerial(serialText: string): GuestSerial {
  const out: GuestSerial = { ready: [], heartbeats: [], dirtier: [], errors: [] };
  // Only newline-terminated lines count: the last piece may still be growing
  // ("ws=6" of "ws=64"), so it is read on the next call, once it is whole.
  const lines = serialText.split('\n').slice(0, -1);
  for (const line of lines) {
    let m: RegExpExecArray | null;
    if ((m = HEARTBEAT.exec(line))) out.heartbeats.push({ seq: Number(m[1]), uptime: Number(m[2]), boot: m[3]! });
    else if ((m = READY.exec(line))) out.ready.push(m[1]!);
    else if ((m = DIRTIER.exec(line))) {
      out.dirtier.push({
        rateMBps: Number(m[1]),
        workingSetMiB: Number(m[2]),
        ...(m[3] ? { burst: { onMs: Number(m[3]), offMs: Number(m[4]) } } : {}),
        ...(m[5] ? { wholePages: true } : {}),
      });
    }
    else if ((m = ERROR.exec(line))) out.errors.push(m[1]!);
  }
  return out;
}

/** The heartbeats in a guest's serial output; partial lines and junk are skipped. */
export function parseHeartbeats(serialText: string): Heartbeat[] {
  return parseGuestSerial(serialText).heartbeats;
}

/**
 * What breaks the "same guest kept running" promise in a run of heartbeats: a seq
 * that does not go up by one, a boot id that changes, an uptime that goes back.
 * Empty when the guest ran without a break.
 */
export function heartbeatBreaks(heartbeats: Heartbeat[]): string[] {
  const breaks: string[] = [];
  for (let i = 1; i < heartbeats.length; i++) {
    const before = heartbeats[i - 1]!;
    const after = heartbeats[i]!;
    if (after.boot !== before.boot) breaks.push(`boot id changed from ${before.boot} to ${after.boot} after seq ${before.seq} (the guest rebooted)`);
    if (after.seq !== before.seq + 1) breaks.push(`seq went from ${before.seq} to ${after.seq}`);
    if (after.uptime < before.uptime) breaks.push(`uptime went back from ${before.uptime} to ${after.uptime} at seq ${after.seq}`);
  }
  return breaks;
}

/**
 * A guest's serial log so far ('' until QEMU has created the file). Read as
 * latin1 so that stray non-UTF-8 bytes on the console cannot disturb the ASCII
 * Motus lines around them.
 */
export function readSerial(path: string): string {
  try {
    return readFileSync(path, 'latin1');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw error;
  }
}
