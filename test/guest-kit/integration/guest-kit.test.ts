import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { expect } from 'chai';
import {
  GUEST_KIT_HEARTBEAT_PERIOD_MS,
  guestKit,
  heartbeatBreaks,
  parseGuestSerial,
  readSerial,
  requireCommand,
  sleep,
  tempDir,
  waitFor,
  type GuestSerial,
} from '../../support/index.js';

const BOOT_TIMEOUT_MS = 60_000;

/** One kit guest under TCG, its serial console in a file. */
class TcgGuest {
  private readonly qemu: ChildProcess;
  private stderr = '';
  private exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly startedAt = Date.now();

  constructor(
    readonly serialPath: string,
    append: string,
  ) {
    const kit = guestKit();
    const qemu = requireCommand('qemu-system-x86_64', 'qemu-system-x86');
    const setpriv = requireCommand('setpriv', 'util-linux');
    // pdeathsig: should mocha itself be killed before its after() hooks run,
    // the kernel still ends QEMU, so no emulator keeps burning a shared core.
    this.qemu = spawn(
      setpriv,
      [
        '--pdeathsig', 'KILL', '--', qemu,
        '-accel', 'tcg', '-machine', 'q35', '-m', '256', '-nodefaults', '-display', 'none', '-no-reboot',
        '-serial', `file:${serialPath}`,
        '-kernel', kit.kernel, '-initrd', kit.initrd, '-append', append,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    this.qemu.stderr!.setEncoding('utf8').on('data', (chunk: string) => (this.stderr += chunk));
    this.qemu.on('exit', (code, signal) => (this.exit = { code, signal }));
  }

  serial(): GuestSerial {
    return parseGuestSerial(readSerial(this.serialPath));
  }

  /** Waits until `check` holds, failing early (with QEMU's words) if QEMU is gone. */
  async until<T>(what: string, check: (serial: GuestSerial) => T | undefined, timeoutMs = BOOT_TIMEOUT_MS): Promise<T> {
    return waitFor(
      what,
      () => {
        if (this.exit) throw new Error(`QEMU exited (${this.exit.signal ?? `code ${this.exit.code}`}) while waiting for ${what}: ${this.stderr.trim() || 'no message'}\nserial:\n${readSerial(this.serialPath)}`);
        return check(this.serial());
      },
      timeoutMs,
      50,
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

function consecutive(serial: GuestSerial, count: number): GuestSerial['heartbeats'] | undefined {
  return serial.heartbeats.length >= count ? serial.heartbeats : undefined;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

describe('guest kit (TCG)', function () {
  this.timeout(180_000);
  let dir: { path: string; remove: () => void };
  const guests: TcgGuest[] = [];

  before(function () {
    requireCommand('qemu-system-x86_64', 'qemu-system-x86');
    guestKit();
    dir = tempDir('guest-kit');
  });

  after(async function () {
    await Promise.all(guests.map((guest) => guest.stop()));
    dir?.remove();
  });

  // Booted one after the other: two TCG guests at once would slow each other's boot.
  async function bootGuest(name: string, append: string): Promise<{ guest: TcgGuest; bootMs: number; boot: string }> {
    const guest = new TcgGuest(join(dir.path, `${name}.serial`), append);
    guests.push(guest);
    const boot = await guest.until('MOTUS-READY', (serial) => serial.ready[0]);
    const bootMs = Date.now() - guest.startedAt;
    console.log(`      boot to MOTUS-READY under TCG (${name}): ${(bootMs / 1000).toFixed(2)} s`);
    return { guest, bootMs, boot };
  }

  describe('with no workload', function () {
    let guest: TcgGuest;
    let boot: string;

    before(async function () {
      ({ guest, boot } = await bootGuest('plain', guestKit().cmdline()));
    });

    after(async function () {
      await guest?.stop();
    });

    it('beats every 200 ms with a rising seq from 1, a growing uptime and one boot id', async function () {
      const beats = await guest.until('6 heartbeats', (serial) => consecutive(serial, 6));
      expect(beats[0]!.seq).to.equal(1);
      expect(heartbeatBreaks(beats)).to.deep.equal([]);
      expect(beats.every((beat) => beat.boot === boot)).to.equal(true);
      const gaps = beats.slice(1).map((beat, i) => beat.uptime - beats[i]!.uptime);
      expect(gaps.every((gap) => gap > 0 && gap < 2), `uptime gaps ${gaps.join(', ')}`).to.equal(true);
      const period = GUEST_KIT_HEARTBEAT_PERIOD_MS / 1000;
      expect(median(gaps)).to.be.within(period * 0.75, period * 2);
    });

    it('keeps the console to Motus lines: one READY, no dirtier, no errors', async function () {
      await guest.until('2 more heartbeats', (serial) => consecutive(serial, 8));
      const text = readSerial(guest.serialPath);
      const serial = parseGuestSerial(text);
      expect(serial.ready).to.deep.equal([boot]);
      expect(serial.dirtier).to.deep.equal([]);
      expect(serial.errors).to.deep.equal([]);
      const others = text.split('\n').slice(0, -1).filter((line) => line.trim() !== '' && !/^MOTUS-(READY|HB) /.test(line));
      expect(others, 'lines other than READY and heartbeats').to.deep.equal([]);
    });
  });

  describe('with motus.dirty=20:64', function () {
    let guest: TcgGuest;
    let boot: string;

    before(async function () {
      const append = guestKit().cmdline({ dirtyMBps: 20, workingSetMiB: 64 });
      expect(append).to.match(/ motus\.dirty=20:64$/);
      ({ guest, boot } = await bootGuest('dirty', append));
    });

    after(async function () {
      await guest?.stop();
    });

    it('starts the dirtier with the asked rate and working set', async function () {
      const dirtier = await guest.until('MOTUS-DIRTIER', (serial) => serial.dirtier[0]);
      expect(dirtier).to.deep.equal({ rateMBps: 20, workingSetMiB: 64 });
      expect(guest.serial().errors).to.deep.equal([]);
    });

    it('keeps the heartbeat unbroken while memory is dirtied', async function () {
      const beats = await guest.until('10 heartbeats', (serial) => consecutive(serial, 10));
      expect(heartbeatBreaks(beats)).to.deep.equal([]);
      expect(beats.every((beat) => beat.boot === boot)).to.equal(true);
      expect(beats.at(-1)!.uptime).to.be.greaterThan(beats[0]!.uptime);
    });
  });

  describe('with a bursty dirtier, a whole-page scribbler and a 20 ms heartbeat', function () {
    let guest: TcgGuest;

    before(async function () {
      const append = guestKit().cmdline({ dirtyMBps: 64, workingSetMiB: 16, burst: { onMs: 200, offMs: 300 }, heartbeatMs: 20, extra: ['motus.scribble=8:8'] });
      expect(append).to.match(/ motus\.dirty=64:16:200:300 motus\.hb=20 motus\.scribble=8:8$/);
      expect(guestKit().cmdline({ dirtyMBps: 8, workingSetMiB: 8, wholePages: true })).to.match(/ motus\.scribble=8:8$/);
      ({ guest } = await bootGuest('bursty', append));
    });

    after(async function () {
      await guest?.stop();
    });

    it('starts both dirtiers as asked and beats every 20 ms', async function () {
      const dirtiers = await guest.until('two MOTUS-DIRTIER lines', (serial) => (serial.dirtier.length >= 2 ? serial.dirtier : undefined));
      expect(dirtiers).to.have.deep.members([
        { rateMBps: 64, workingSetMiB: 16, burst: { onMs: 200, offMs: 300 } },
        { rateMBps: 8, workingSetMiB: 8, wholePages: true },
      ]);
      const beats = await guest.until('50 heartbeats', (serial) => consecutive(serial, 50));
      expect(heartbeatBreaks(beats)).to.deep.equal([]);
      // 49 periods of 20 ms: well under the 200 ms default's 9.8 s, with room for a starved TCG vCPU.
      const span = beats.at(-1)!.uptime - beats[0]!.uptime;
      expect(span).to.be.within(0.5, 4);
      expect(guest.serial().errors).to.deep.equal([]);
    });
  });
});
