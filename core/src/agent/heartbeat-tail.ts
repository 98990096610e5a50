import { closeSync, openSync, readSync, statSync } from 'node:fs';

const HEARTBEAT = /MOTUS-HB seq=(\d+) /;
const POLL_MS = 5;

/**
 * Follows a VM's serial log while it migrates and timestamps the guest's heartbeat
 * lines (`MOTUS-HB seq=<n> …`, the guest kit's format; any guest may print it) on
 * the host's clock as they arrive. The guest's own clock cannot show a migration's
 * pause: it stands still while the VM is stopped. A guest that prints no heartbeat
 * gives no figures.
 */
export class HeartbeatTail {
  /** Epoch ms of the first and the last heartbeat seen, and the longest gap between two. */
  firstAt: number | undefined;
  lastAt: number | undefined;
  longestGapMs = 0;
  private fd: number | undefined;
  private offset: number;
  private rest = '';
  private stopped = false;
  private readonly timer: NodeJS.Timeout;

  /** From the end of the file as it is now: lines already there are not new arrivals. */
  constructor(private readonly path: string) {
    this.offset = sizeOf(path);
    this.timer = setInterval(() => this.poll(), POLL_MS);
    this.timer.unref();
  }

  poll(): void {
    if (this.stopped) return;
    if (this.fd === undefined) {
      try {
        this.fd = openSync(this.path, 'r');
      } catch {
        return; // not created yet
      }
    }
    const now = Date.now();
    const buffer = Buffer.alloc(16 * 1024);
    for (;;) {
      let n: number;
      try {
        n = readSync(this.fd, buffer, 0, buffer.length, this.offset);
      } catch {
        return;
      }
      if (n <= 0) return;
      this.offset += n;
      const lines = (this.rest + buffer.subarray(0, n).toString('latin1')).split('\n');
      this.rest = lines.pop() ?? '';
      for (const line of lines) {
        if (!HEARTBEAT.test(line)) continue;
        if (this.lastAt !== undefined) this.longestGapMs = Math.max(this.longestGapMs, now - this.lastAt);
        this.firstAt ??= now;
        this.lastAt = now;
      }
    }
  }

  /** Resolves with the first heartbeat's arrival, or undefined after timeoutMs. */
  async first(timeoutMs: number): Promise<number | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (this.firstAt === undefined && !this.stopped && Date.now() < deadline) {
      this.poll();
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    return this.firstAt;
  }

  /** Idempotent. */
  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}
