import { expect } from 'chai';
import type { MigrationProgress, VmSpec } from '@motus/sdk';
import type { QemuVm } from '@motus/hv-qemu';
import { guestKit, heartbeatBreaks, parseGuestSerial, readSerial } from '../../support/guest-kit.js';
import { waitFor } from '../../support/system.js';
import { VmPool, idleSpec, vmPoolPerTest } from '../support/vm-pool.js';

const MiB = 1024 * 1024;

async function untilDone(source: QemuVm, seen: MigrationProgress[] = []): Promise<MigrationProgress> {
  return waitFor('the migration to end', async () => {
    const p = await source.migrationProgress();
    seen.push(p);
    return p.status === 'completed' || p.status === 'failed' || p.status === 'cancelled' ? p : undefined;
  }, 180_000, 100);
}

async function capabilities(vm: QemuVm): Promise<Record<string, boolean>> {
  const list = await vm.qmp.execute<Array<{ capability: string; state: boolean }>>('query-migrate-capabilities');
  return Object.fromEntries(list.map((c) => [c.capability, c.state]));
}

describe('hv-qemu with real QEMU: the convergence knobs', function () {
  let pool: VmPool;
  vmPoolPerTest((p) => (pool = p));

  it('migrates over two multifd channels when both ends were told before the stream started', async () => {
    const source = await pool.launch(idleSpec('mfd'));
    const destination = await pool.launch(idleSpec('mfd'), { incoming: true });
    const uri = await destination.listenForMigration('127.0.0.1', 0, { multifd: { channels: 2 }, maxBandwidthBytesPerSec: 1 });
    const onDestination = await destination.qmp.execute<Record<string, unknown>>('query-migrate-parameters');
    expect(onDestination['multifd-channels']).to.equal(2);
    expect((await capabilities(destination)).multifd).to.equal(true);
    // Rates are the source's: the destination was given only what both ends must agree on.
    expect(onDestination['max-bandwidth']).to.not.equal(1);
    await source.startMigration(uri, { maxBandwidthBytesPerSec: 1024 * MiB, downtimeLimitMs: 300, multifd: { channels: 2 }, throttle: { initialPct: 1, incrementPct: 1, maxPct: 1 } });
    expect(await capabilities(source)).to.deep.include({ multifd: true, 'auto-converge': true, xbzrle: false });
    const final = await untilDone(source);
    expect(final.status, final.error).to.equal('completed');
    expect(await destination.runState()).to.equal('running');
  });

  it('arms xbzrle and post-copy at the start, resizes the cache and refuses capabilities while it runs, then switches to post-copy and the guest goes on', async function () {
    guestKit();
    const kit = guestKit();
    const spec: VmSpec = { name: 'pc', memoryMiB: 256, vcpus: 1, boot: { kind: 'kernel', kernel: kit.kernel, initrd: kit.initrd, cmdline: kit.cmdline({ dirtyMBps: 64, workingSetMiB: 64 }) } };
    const source = await pool.launch(spec);
    await waitFor('the dirtier to run', () => (parseGuestSerial(readSerial(source.serialLog)).dirtier.length > 0 ? true : undefined), 120_000, 200);
    const destination = await pool.launch(spec, { incoming: true });
    const uri = await destination.listenForMigration('127.0.0.1', 0, { postcopy: true });
    expect((await capabilities(destination))['postcopy-ram']).to.equal(true);
    // A slow link, so pre-copy is still running when the knobs are turned.
    await source.startMigration(uri, { maxBandwidthBytesPerSec: 32 * MiB, downtimeLimitMs: 100, xbzrle: { cacheBytes: 8 * MiB }, postcopy: true });
    await waitFor('pre-copy to run', async () => ((await source.migrationProgress()).status === 'active' ? true : undefined), 30_000, 50);
    await source.tuneMigration({ xbzrle: { cacheBytes: 16 * MiB }, downtimeLimitMs: 150 });
    const parameters = await source.qmp.execute<Record<string, unknown>>('query-migrate-parameters');
    expect(parameters).to.deep.include({ 'xbzrle-cache-size': 16 * MiB, 'downtime-limit': 150 });
    // QEMU fixes capabilities for the life of a migration; its refusal reaches the caller.
    let refused: unknown;
    await source.tuneMigration({ capabilities: { 'auto-converge': true } }).catch((err: unknown) => (refused = err));
    expect(String((refused as Error)?.message)).to.match(/migration process in progress/);

    const before = parseGuestSerial(readSerial(source.serialLog)).heartbeats.at(-1)!.seq;
    await source.startPostcopy();
    const seen: MigrationProgress[] = [];
    const final = await untilDone(source, seen);
    expect(final.status, final.error).to.equal('completed');
    expect(seen.map((s) => s.status), 'it went through post-copy').to.include('postcopy-active');
    await waitFor('heartbeats on the destination', () => (parseGuestSerial(readSerial(destination.serialLog)).heartbeats.length >= 3 ? true : undefined), 60_000, 100);
    const joined = parseGuestSerial(readSerial(source.serialLog) + readSerial(destination.serialLog));
    expect(joined.heartbeats.at(-1)!.seq).to.be.greaterThan(before);
    expect(heartbeatBreaks(joined.heartbeats)).to.deep.equal([]);
    expect(joined.errors).to.deep.equal([]);
  });
});
