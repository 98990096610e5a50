import { spawn, type ChildProcess } from 'node:child_process';
import { guestKit, readSerial, requireCommand, sleep, waitFor } from '../../support/index.js';

export interface TcpStat {
  sent: number;
  echoed: number;
  maxGapMs: number;
}

/** What motus-tcp printed on a guest's console (see test/guest-kit/src/tcp.c). */
export interface TcpSerial {
  listening: boolean;
  accepted: number;
  connected: number;
  stats: TcpStat[];
  gaps: number[];
  errors: string[];
}

export function parseTcpSerial(text: string): TcpSerial {
  const out: TcpSerial = { listening: false, accepted: 0, connected: 0, stats: [], gaps: [], errors: [] };
  for (const line of text.split(/\r?\n/)) {
    if (line.startsWith('MOTUS-TCP-LISTEN ')) out.listening = true;
    else if (line.startsWith('MOTUS-TCP-ACCEPT ')) out.accepted++;
    else if (line.startsWith('MOTUS-TCP-CONNECTED ')) out.connected++;
    else if (line.startsWith('MOTUS-TCP-ERROR ')) out.errors.push(line);
    else {
      const stat = /^MOTUS-TCP-STAT sent=(\d+) echoed=(\d+) max_gap_ms=(\d+)$/.exec(line);
      if (stat) out.stats.push({ sent: Number(stat[1]), echoed: Number(stat[2]), maxGapMs: Number(stat[3]) });
      const gap = /^MOTUS-TCP-GAP ms=(\d+) echoed=\d+$/.exec(line);
      if (gap) out.gaps.push(Number(gap[1]));
    }
  }
  return out;
}

/** A guest-kit VM with one virtio NIC on a switch port, run straight by QEMU (no agent). */
export class NetGuest {
  private readonly qemu: ChildProcess;
  private stderr = '';
  private exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;

  constructor(
    readonly serialPath: string,
    netdev: string,
    mac: string,
    workloads: string[],
  ) {
    const kit = guestKit();
    const qemu = requireCommand('qemu-system-x86_64', 'qemu-system-x86');
    const setpriv = requireCommand('setpriv', 'util-linux');
    const netdevWithId = /(^|,)id=/.test(netdev) ? netdev : `${netdev},id=n0`;
    const id = /(?:^|,)id=([^,]+)/.exec(netdevWithId)![1]!;
    this.qemu = spawn(
      setpriv,
      [
        '--pdeathsig', 'KILL', '--', qemu,
        '-accel', 'tcg', '-machine', 'q35', '-m', '160', '-nodefaults', '-display', 'none', '-no-reboot',
        '-serial', `file:${serialPath}`,
        '-netdev', netdevWithId, '-device', `virtio-net-pci,netdev=${id},mac=${mac}`,
        '-kernel', kit.kernel, '-initrd', kit.initrd, '-append', kit.cmdline({ extra: workloads }),
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    this.qemu.stderr!.setEncoding('utf8').on('data', (chunk: string) => (this.stderr += chunk));
    this.qemu.on('exit', (code, signal) => (this.exit = { code, signal }));
  }

  get pid(): number | undefined {
    return this.qemu.pid;
  }

  serialText(): string {
    return readSerial(this.serialPath);
  }

  tcp(): TcpSerial {
    return parseTcpSerial(this.serialText());
  }

  async until<T>(what: string, check: (tcp: TcpSerial, text: string) => T | undefined, timeoutMs = 90_000): Promise<T> {
    return waitFor(
      what,
      () => {
        if (this.exit) throw new Error(`QEMU exited (${this.exit.signal ?? `code ${this.exit.code}`}) while waiting for ${what}: ${this.stderr.trim() || 'no message'}\nserial:\n${this.serialText()}`);
        const text = this.serialText();
        if (/MOTUS-ERROR/.test(text)) throw new Error(`the guest reports an error while waiting for ${what}:\n${text}`);
        return check(parseTcpSerial(text), text);
      },
      timeoutMs,
      100,
    );
  }

  async stop(): Promise<void> {
    if (this.exit || this.qemu.pid === undefined) return;
    const exited = new Promise<void>((resolve) => this.qemu.once('exit', () => resolve()));
    this.qemu.kill('SIGTERM');
    const stopped = await Promise.race([exited.then(() => true), sleep(5_000).then(() => false)]);
    if (!stopped) {
      this.qemu.kill('SIGKILL');
      await exited;
    }
  }
}
