import { expect } from 'chai';
import type { MigrationProgress, VmSpec } from '@motus/sdk';
import type { QemuVm } from '@motus/hv-qemu';
import { guestKit, heartbeatBreaks, parseGuestSerial, readSerial, type GuestSerial } from '../../support/guest-kit.js';
import { waitFor } from '../../support/system.js';
import { VmPool, vmPoolPerTest } from '../support/vm-pool.js';

const BOOT_TIMEOUT_MS = 90_000;

function kitSpec(name: string, cmdline: string): VmSpec {
  const kit = guestKit();
  return { name, memoryMiB: 256, vcpus: 1, boot: { kind: 'kernel', kernel: kit.kernel, initrd: kit.initrd, cmdline } };
}

function serialOf(vm: QemuVm): GuestSerial {
  return parseGuestSerial(readSerial(vm.serialLog));
}

describe('hv-qemu with real QEMU: migrating a real Linux guest (guest kit)', function () {
  let pool: VmPool;
  vmPoolPerTest((p) => (pool = p));
  // Fails, saying how to build the kit, when it is missing.
  before(() => guestKit());

  async function migrateGuest(name: string, cmdline: string, bandwidth = 1024 * 1024 * 1024): Promise<{ samples: MigrationProgress[]; final: MigrationProgress; before: number; joined: GuestSerial }> {
    const source = await pool.launch(kitSpec(name, cmdline));
    await waitFor('heartbeats on the source', () => {
      if (source.hasExited) throw new Error(`QEMU exited: ${source.output}`);
      return serialOf(source).heartbeats.length >= 3 ? true : undefined;
    }, BOOT_TIMEOUT_MS, 100);
    const destination = await pool.launch(kitSpec(name, cmdline), { incoming: true });
    const uri = await destination.listenForMigration('127.0.0.1', 0);
    const samples: MigrationProgress[] = [];
    await source.startMigration(uri, { maxBandwidthBytesPerSec: bandwidth, downtimeLimitMs: 300 });
    const final = await waitFor('the migration to end', async () => {
      const p = await source.migrationProgress();
      samples.push(p);
      return p.status === 'completed' || p.status === 'failed' || p.status === 'cancelled' ? p : undefined;
    }, 120_000, 100);
    expect(final.status, final.error).to.equal('completed');
    const before = serialOf(source).heartbeats.at(-1)!.seq;
    await waitFor('heartbeats on the destination', () => (serialOf(destination).heartbeats.length >= 3 ? true : undefined), 30_000, 100);
    expect(await destination.runState()).to.equal('running');
    expect(await source.runState()).to.equal('postmigrate');
    const joined = parseGuestSerial(readSerial(source.serialLog) + readSerial(destination.serialLog));
    await source.stop(2_000);
    return { samples, final, before, joined };
  }

  it("continues the guest's heartbeat sequence on the destination's serial log", async () => {
    const { final, before, joined } = await migrateGuest('kit-hb', guestKit().cmdline());
    const destinationSeqs = joined.heartbeats.filter((h) => h.seq > before).map((h) => h.seq);
    expect(destinationSeqs[0]).to.equal(before + 1);
    expect(heartbeatBreaks(joined.heartbeats)).to.deep.equal([]);
    expect(new Set(joined.heartbeats.map((h) => h.boot)).size).to.equal(1);
    expect(joined.ready).to.have.length(1);
    console.log(`      guest kit 256 MiB: QEMU total ${final.totalTimeMs} ms, downtime ${final.downtimeMs} ms, ${final.transferredBytes} bytes, ${final.round} rounds; heartbeat ${before} -> ${before + 1} across the switch`);
  });

  it('reports the dirty rate and several rounds while the guest dirties memory, and still converges', async () => {
    // QEMU computes the dirty rate only over bitmap syncs more than a second apart, so the
    // bandwidth is held low enough for the first round to last that long.
    const { samples, final, joined } = await migrateGuest('kit-dirty', guestKit().cmdline({ dirtyMBps: 4, workingSetMiB: 32 }), 16 * 1024 * 1024);
    const seen = samples.map((s) => `${s.status}/r${s.round}/${s.dirtyRateBytesPerSec}`).join(' ');
    expect(joined.dirtier, 'the dirtier announced itself').to.have.length.at.least(1);
    expect(final.round, seen).to.be.at.least(2);
    expect(Math.max(...samples.map((s) => s.dirtyRateBytesPerSec)), seen).to.be.greaterThan(0);
    expect(heartbeatBreaks(joined.heartbeats)).to.deep.equal([]);
    const peak = Math.max(...samples.map((s) => s.dirtyRateBytesPerSec));
    console.log(`      peak dirty rate reported ${(peak / 1048576).toFixed(1)} MiB/s`);
    console.log(`      guest kit 256 MiB dirtying 4 MiB/s, max-bandwidth 16 MiB/s: QEMU total ${final.totalTimeMs} ms, downtime ${final.downtimeMs} ms, ${final.transferredBytes} bytes, ${final.round} rounds`);
  });
});
