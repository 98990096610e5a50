/**
 * What an agent does when it loses a disk lock: the lock may already be another
 * host's, so this host must write nothing more to the disk, at once. QEMU opens
 * the image itself (libnfs) and the storage contract has no way back to the
 * hypervisor, so the plugin ends the writers directly: every process descended
 * from this agent whose command line opens the disk gets SIGKILL. A killed QEMU
 * has no buffered guest writes that could still reach the server (the disks run
 * with cache.direct=on), and the agent sees the process exit and marks the VM
 * crashed, which is the truth: it cannot go on without its disk.
 */
import { readdirSync, readFileSync } from 'node:fs';

function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // The command name (field 2) may hold spaces and parentheses: parse after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[1]);
  } catch {
    return undefined;
  }
}

function descendsFrom(pid: number, ancestor: number): boolean {
  for (let p: number | undefined = pid, hops = 0; p !== undefined && p > 1 && hops < 64; hops++) {
    if (p === ancestor) return true;
    p = parentOf(p);
  }
  return false;
}

/**
 * Whether one argument names the disk as a whole value: the argument itself, or
 * an option value (`file=<path>,…`, `filename=<path>`) — so vm1/d.img never
 * matches vm1/d.img2. QEMU's option syntax doubles commas inside a value.
 */
function namesDisk(arg: string, diskPath: string): boolean {
  for (const spelled of new Set([diskPath, diskPath.replace(/,/g, ',,')])) {
    for (let i = arg.indexOf(spelled); i >= 0; i = arg.indexOf(spelled, i + 1)) {
      const before = i === 0 ? '' : arg[i - 1];
      const after = arg[i + spelled.length] ?? '';
      if ((before === '' || before === '=') && (after === '' || after === ',')) return true;
    }
  }
  return false;
}

/** Processes under `ancestor` whose arguments name `diskPath`. */
export function writersOf(diskPath: string, ancestor = process.pid): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === ancestor) continue;
    let args: string;
    try {
      args = readFileSync(`/proc/${pid}/cmdline`, 'latin1');
    } catch {
      continue;
    }
    if (!args.split('\0').some((arg) => namesDisk(arg, diskPath))) continue;
    if (descendsFrom(pid, ancestor)) found.push(pid);
  }
  return found;
}

/** Kills this agent's writers of a disk; the pids it signalled. */
export function fenceWriters(diskPath: string, ancestor = process.pid): number[] {
  const pids = writersOf(diskPath, ancestor);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone: nothing left to stop.
    }
  }
  return pids;
}
