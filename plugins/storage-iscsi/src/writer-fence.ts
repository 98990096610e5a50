/**
 * What an agent does when it loses a LUN: another host may own it now, so this
 * host must write nothing more to it, at once. The target cannot refuse QEMU's
 * writes for us (QEMU's own libiscsi session holds no registration; see
 * lun-lease.ts), and the storage contract has no way back to the hypervisor, so
 * the writers are ended here: every process descended from this agent whose
 * command line opens the disk URL gets SIGKILL. With cache.direct=on a killed
 * QEMU has no buffered guest write left to send; the agent sees it exit and the
 * VM is marked crashed, which is the truth.
 */
import { readdirSync, readFileSync } from 'node:fs';

function parentPid(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // The command name may hold spaces and parentheses: the fields after the last ')' are fixed.
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

function isDescendant(pid: number, ancestor: number): boolean {
  let p: number | undefined = pid;
  for (let hops = 0; p !== undefined && p > 1 && hops < 64; hops++) {
    if (p === ancestor) return true;
    p = parentPid(p);
  }
  return false;
}

/** Whether an argv opens `url` as a whole option value (`file=<url>` followed by ',' or the end). */
export function argvOpens(argv: readonly string[], url: string): boolean {
  return argv.some((arg) => arg.split(',').some((part) => part === `file=${url}` || part === url || part === `filename=${url}`));
}

export function writersOf(url: string, ancestor = process.pid): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0');
    } catch {
      continue;
    }
    if (argvOpens(argv, url) && isDescendant(pid, ancestor)) pids.push(pid);
  }
  return pids;
}

/** Kills this agent's writers of `url`; returns their pids. */
export function fenceWriters(url: string): number[] {
  const pids = writersOf(url);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  return pids;
}
