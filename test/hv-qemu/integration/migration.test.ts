import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { expect } from 'chai';
import type { HypervisorEvent, MigrationProgress, MigrationStatus } from '@motus/sdk';
import type { QemuVm } from '@motus/hv-qemu';
import { requireCommand, sleep, tempDir, waitFor } from '../../support/system.js';
import { VmPool, idleSpec, vmPoolPerTest } from '../support/vm-pool.js';

const TERMINAL: ReadonlySet<MigrationStatus> = new Set(['completed', 'failed', 'cancelled']);
const FAST = 1024 * 1024 * 1024;
/** Slow enough that even an idle guest's mostly-zero memory takes many seconds. */
const SLOW = 64 * 1024;

async function untilStatus(vm: QemuVm, wanted: (p: MigrationProgress) => boolean, timeoutMs: number, samples?: MigrationProgress[]): Promise<MigrationProgress> {
  return waitFor(
    'the migration status',
    async () => {
      const p = await vm.migrationProgress();
      samples?.push(p);
      return wanted(p) ? p : undefined;
    },
    timeoutMs,
    50,
  );
}

describe('hv-qemu with real QEMU: live migration between two local processes', function () {
  let pool: VmPool;
  vmPoolPerTest((p) => (pool = p));

  async function pair(name: string, memoryMiB = 64): Promise<{ source: QemuVm; destination: QemuVm; uri: string }> {
    const [source, destination] = await Promise.all([pool.launch(idleSpec(name, memoryMiB)), pool.launch(idleSpec(name, memoryMiB), { incoming: true })]);
    const uri = await destination.listenForMigration('127.0.0.1', 0);
    return { source, destination, uri };
  }

  it('migrates an idle 256 MiB guest: destination running, source postmigrate', async () => {
    const { source, destination, uri } = await pair('mig-256', 256);
    expect(uri).to.match(/^tcp:127\.0\.0\.1:\d+$/);
    expect(uri).to.not.equal('tcp:127.0.0.1:0');
    const sourceEvents: HypervisorEvent[] = [];
    const destinationEvents: HypervisorEvent[] = [];
    source.events$.subscribe((e) => sourceEvents.push(e));
    destination.events$.subscribe((e) => destinationEvents.push(e));

    const samples: MigrationProgress[] = [];
    const started = performance.now();
    await source.startMigration(uri, { maxBandwidthBytesPerSec: FAST, downtimeLimitMs: 300 });
    const final = await untilStatus(source, (p) => TERMINAL.has(p.status), 60_000, samples);
    const wallMs = performance.now() - started;
    expect(final.status, final.error).to.equal('completed');
    expect(final.remainingBytes).to.equal(0);
    expect(final.totalBytes).to.be.at.least(256 * 1024 * 1024);
    expect(final.round).to.be.at.least(1);
    expect(final.downtimeMs).to.be.a('number');
    expect(final.setupTimeMs).to.be.a('number');
    expect(final.throughputBytesPerSec).to.be.greaterThan(0);
    expect(samples.some((s) => s.status === 'active' || s.status === 'setup' || s.status === 'completed')).to.equal(true);

    expect(await source.runState()).to.equal('postmigrate');
    await waitFor('the destination to run', async () => ((await destination.runState()) === 'running' ? true : undefined), 10_000);
    expect(sourceEvents.filter((e) => e.type === 'migration-status').map((e) => (e.type === 'migration-status' ? e.status : ''))).to.include('completed');
    expect(destinationEvents.map((e) => e.type)).to.include('resumed');
    console.log(
      `      idle 256 MiB guest over loopback (TCG, max-bandwidth 1 GiB/s): wall ${Math.round(wallMs)} ms, QEMU total ${final.totalTimeMs} ms, ` +
        `downtime ${final.downtimeMs} ms, setup ${final.setupTimeMs} ms, ${final.transferredBytes} bytes sent, ${final.round} rounds`,
    );
  });

  it('fails the migration, leaving the source running, when the destination is killed mid-way', async () => {
    const { source, destination, uri } = await pair('mig-kill');
    await source.startMigration(uri, { maxBandwidthBytesPerSec: SLOW });
    await untilStatus(source, (p) => p.status === 'active' && p.transferredBytes > 0, 20_000);
    process.kill(destination.pid, 'SIGKILL');
    expect((await destination.exited).signal).to.equal('SIGKILL');
    const final = await untilStatus(source, (p) => TERMINAL.has(p.status), 30_000);
    expect(final.status).to.equal('failed');
    expect(final.error).to.be.a('string').and.not.equal('');
    expect(await source.runState()).to.equal('running');
  });

  it('cancels a running migration, leaving the source running', async () => {
    const { source, destination, uri } = await pair('mig-cancel');
    await source.startMigration(uri, { maxBandwidthBytesPerSec: SLOW });
    await untilStatus(source, (p) => p.status === 'active', 20_000);
    await source.cancelMigration();
    const final = await untilStatus(source, (p) => TERMINAL.has(p.status), 30_000);
    expect(final.status).to.equal('cancelled');
    expect(await source.runState()).to.equal('running');
    // The destination gives up on the broken stream by itself.
    const exit = await Promise.race([destination.exited, sleep(15_000).then(() => undefined)]);
    expect(exit, 'destination exit').to.not.equal(undefined);
  });

  it('speeds a slow migration up with tuneMigration, and pauses before switchover until continued', async () => {
    const { source, destination, uri } = await pair('mig-tune');
    await source.startMigration(uri, { maxBandwidthBytesPerSec: SLOW, capabilities: { 'pause-before-switchover': true } });
    await untilStatus(source, (p) => p.status === 'active', 20_000);
    await source.tuneMigration({ maxBandwidthBytesPerSec: FAST });
    const paused = await untilStatus(source, (p) => p.status === 'pre-switchover' || TERMINAL.has(p.status), 30_000);
    expect(paused.status).to.equal('pre-switchover');
    expect(await source.runState()).to.not.equal('running');
    expect(await destination.runState()).to.equal('inmigrate');
    await source.continueMigration();
    const final = await untilStatus(source, (p) => TERMINAL.has(p.status), 30_000);
    expect(final.status, final.error).to.equal('completed');
    await waitFor('the destination to run', async () => ((await destination.runState()) === 'running' ? true : undefined), 10_000);
  });

  it('migrates a VM whose qcow2 disk both processes open, as on shared storage', async () => {
    const qemuImg = requireCommand('qemu-img', 'qemu-utils');
    const dir = tempDir('hvq-shared');
    try {
      const image = join(dir.path, 'shared.qcow2');
      execFileSync(qemuImg, ['create', '-q', '-f', 'qcow2', image, '64M']);
      const spec = { ...idleSpec('mig-disk'), disks: [{ id: 'root', path: image, format: 'qcow2' as const }] };
      const source = await pool.launch(spec);
      const destination = await pool.launch(spec, { incoming: true });
      const uri = await destination.listenForMigration('127.0.0.1', 0);
      await source.startMigration(uri, { maxBandwidthBytesPerSec: FAST });
      const final = await untilStatus(source, (p) => TERMINAL.has(p.status), 60_000);
      expect(final.status, final.error).to.equal('completed');
      await waitFor('the destination to run', async () => ((await destination.runState()) === 'running' ? true : undefined), 10_000);
      // The destination now owns the image: its write permission was taken at switchover.
      const nodes = await destination.qmp.execute<Array<{ 'node-name': string; ro: boolean }>>('query-named-block-nodes');
      expect(nodes.find((n) => n['node-name'] === 'disk-root')?.ro).to.equal(false);
      await source.stop();
      await destination.stop();
    } finally {
      dir.remove();
    }
  });

  it('refuses to listen on a VM not launched for an incoming migration', async () => {
    const vm = await pool.launch(idleSpec('not-incoming'));
    try {
      await vm.listenForMigration('127.0.0.1', 0);
      expect.fail('expected a rejection');
    } catch (err) {
      expect((err as { code?: string }).code).to.equal('MOTUS_E_INVALID_REQUEST');
    }
  });

  it('reports a refused migrate as MOTUS_E_QMP_COMMAND', async () => {
    const vm = await pool.launch(idleSpec('bad-uri'));
    try {
      await vm.startMigration('bogus:nowhere');
      expect.fail('expected a rejection');
    } catch (err) {
      expect((err as { code?: string }).code).to.equal('MOTUS_E_QMP_COMMAND');
    }
    expect(await vm.runState()).to.equal('running');
  });
});
