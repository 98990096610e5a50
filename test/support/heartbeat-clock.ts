import { closeSync, existsSync, openSync, readdirSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

/** A heartbeat line as the host saw it arrive. */
export interface HeartbeatArrival {
  seq: number;
  /** performance.now() when the line was read. */
  at: number;
}

const HB = /MOTUS-HB seq=(\d+) /;
const POLL_MS = 2;

/**
 * Timestamps the guest's heartbeat lines as they reach its serial log files, on the
 * host's clock. The guest's own clock cannot show a migration's pause: under TCG
 * (and with KVM's clock too) guest time stands still while the VM is stopped and
 * resumes where it was. The host sees the lines stop and start again, so the
 * longest gap between two arrivals is the pause the guest's users saw (to within
 * the heartbeat period plus the 2 ms read interval).
 */
export class HeartbeatClock {
  private readonly files: Array<{ path: string; fd: number | undefined; offset: number; rest: string }> = [];
  readonly arrivals: HeartbeatArrival[] = [];
  private readonly timer: NodeJS.Timeout;
  private lastSeq = 0;
  private readonly folders: string[] = [];
  private lastScan = 0;

  constructor() {
    this.timer = setInterval(() => this.poll(), POLL_MS);
  }

  /** Follows one more serial log (a migration's destination), from its start. */
  watch(path: string): void {
    this.files.push({ path, fd: undefined, offset: 0, rest: '' });
  }

  /**
   * Follows every `<folder>/<run dir>/serial.log` that appears (an agent's VM run
   * directories), for a destination whose path is known only once it is launched.
   * An incoming QEMU writes nothing before the VM runs, so no line is read late.
   */
  watchFolder(folder: string): void {
    this.folders.push(folder);
  }

  /** Reads what arrived since the last poll, at once (before measuring). */
  poll(): void {
    const now = performance.now();
    if (this.folders.length > 0 && now - this.lastScan > 20) {
      this.lastScan = now;
      for (const folder of this.folders) {
        if (!existsSync(folder)) continue;
        for (const run of readdirSync(folder)) {
          const path = join(folder, run, 'serial.log');
          if (!this.files.some((f) => f.path === path)) this.watch(path);
        }
      }
    }
    const buffer = Buffer.alloc(64 * 1024);
    for (const file of this.files) {
      if (file.fd === undefined) {
        try {
          file.fd = openSync(file.path, 'r');
        } catch {
          continue; // QEMU has not created it yet
        }
      }
      for (;;) {
        const n = readSync(file.fd, buffer, 0, buffer.length, file.offset);
        if (n <= 0) break;
        file.offset += n;
        const lines = (file.rest + buffer.subarray(0, n).toString('latin1')).split('\n');
        file.rest = lines.pop() ?? '';
        for (const line of lines) {
          const m = HB.exec(line);
          // A seq seen already (the same guest's lines in the log it had before) does not count twice.
          if (m && Number(m[1]) > this.lastSeq) {
            this.lastSeq = Number(m[1]);
            this.arrivals.push({ seq: this.lastSeq, at: now });
          }
        }
      }
    }
  }

  /** The longest gap between two heartbeat arrivals whose later one is in [from, to], ms. */
  longestGap(from: number, to: number): number {
    this.poll();
    let longest = 0;
    for (let i = 1; i < this.arrivals.length; i++) {
      const a = this.arrivals[i]!;
      if (a.at < from || a.at > to) continue;
      longest = Math.max(longest, a.at - this.arrivals[i - 1]!.at);
    }
    return longest;
  }

  /** The `count` longest gaps whose later arrival is in [from, to]: when they ended (ms after `from`) and how long they were. */
  gaps(from: number, to: number, count: number): Array<{ endedMs: number; ms: number }> {
    this.poll();
    const gaps: Array<{ endedMs: number; ms: number }> = [];
    for (let i = 1; i < this.arrivals.length; i++) {
      const a = this.arrivals[i]!;
      if (a.at >= from && a.at <= to) gaps.push({ endedMs: Math.round(a.at - from), ms: Math.round(a.at - this.arrivals[i - 1]!.at) });
    }
    return gaps.sort((x, y) => y.ms - x.ms).slice(0, count);
  }

  /** When the first heartbeat after `from` arrived, or undefined. */
  firstAfter(from: number): number | undefined {
    this.poll();
    return this.arrivals.find((a) => a.at > from)?.at;
  }

  stop(): void {
    clearInterval(this.timer);
    for (const file of this.files) if (file.fd !== undefined) closeSync(file.fd);
    this.files.length = 0;
  }
}
