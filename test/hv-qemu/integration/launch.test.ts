import { execFileSync } from 'node:child_process';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { MotusError, type HypervisorEvent } from '@motus/sdk';
import { QemuDriver, runBootSector } from '@motus/hv-qemu';
import { requireCommand, tempDir, waitFor } from '../../support/system.js';
import { VmPool, idleSpec, isAlive, vmPoolPerTest } from '../support/vm-pool.js';

async function rejection(promise: Promise<unknown>): Promise<MotusError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof MotusError) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

describe('hv-qemu with real QEMU: probe, launch, stop', function () {
  let pool: VmPool;
  vmPoolPerTest((p) => (pool = p));

  it('reports the QEMU version and the accelerator with its reason', async () => {
    const facts = await new QemuDriver({ accelerator: 'auto', env: {} }).probe();
    expect(facts.kind).to.equal('qemu');
    expect(facts.version).to.match(/^\d+\.\d+/);
    expect(['kvm', 'tcg']).to.include(facts.accelerator);
    expect(facts.acceleratorReason).to.be.a('string').and.not.equal('');
    if (!existsSync('/dev/kvm')) expect(facts.acceleratorReason).to.include('/dev/kvm does not exist');
    const forced = await new QemuDriver({ accelerator: 'auto', env: { MOTUS_ACCEL: 'tcg' } }).probe();
    expect(forced).to.deep.include({ accelerator: 'tcg', acceleratorReason: 'forced by MOTUS_ACCEL=tcg' });
  });

  it('runs the probe boot sector under TCG and sees its marker on the serial port', async () => {
    const run = await runBootSector('qemu-system-x86_64', 'tcg', 20_000);
    expect(run.ok, run.detail).to.equal(true);
  });

  it('launches an idle VM, answers QMP, records its pid, and stops it leaving no process', async () => {
    const vm = await pool.launch({ ...idleSpec('idle-1'), vcpus: 2 });
    expect(vm.pid).to.be.greaterThan(0);
    expect(isAlive(vm.pid)).to.equal(true);
    expect(readFileSync(vm.runFiles.pidFile, 'utf8').trim()).to.equal(String(vm.pid));
    expect(await vm.runState()).to.equal('running');
    expect(await vm.qmp.queryCpusFast()).to.have.length(2);
    expect((await vm.qmp.queryVersion()).qemu.major).to.be.at.least(7);
    await waitFor('the serial log file', () => (existsSync(vm.serialLog) ? true : undefined), 5_000);

    const events: HypervisorEvent[] = [];
    let completed = false;
    vm.events$.subscribe({ next: (e) => events.push(e), complete: () => (completed = true) });
    await vm.qmp.stop();
    expect(await vm.runState()).to.equal('paused');
    await vm.resume();
    expect(await vm.runState()).to.equal('running');

    await vm.stop(3_000);
    expect(isAlive(vm.pid)).to.equal(false);
    expect(await vm.exited).to.deep.equal({ code: 0, signal: null });
    expect(events.map((e) => e.type)).to.deep.equal(['stopped', 'resumed', 'shutdown', 'exited']);
    expect(completed).to.equal(true);
    // Idempotent: a second stop resolves at once.
    await vm.stop();
    expect((await rejection(vm.runState())).code).to.equal('MOTUS_E_QMP_DISCONNECTED');
  });

  it('escalates to signals when QEMU does not quit, and still resolves once it exited', async () => {
    const vm = await pool.launch(idleSpec('frozen'));
    // A stopped process answers nothing and defers SIGTERM; only SIGKILL ends it.
    process.kill(vm.pid, 'SIGSTOP');
    const started = Date.now();
    await vm.stop(300);
    expect(Date.now() - started).to.be.within(500, 8_000);
    expect((await vm.exited).signal).to.equal('SIGKILL');
    expect(isAlive(vm.pid)).to.equal(false);
  });

  it('attaches a qcow2 disk with cache.direct=on and a NIC on the given netdev with the spec MAC, and announces it', async () => {
    const qemuImg = requireCommand('qemu-img', 'qemu-utils');
    const dir = tempDir('hvq-dev');
    try {
      const image = join(dir.path, 'root.qcow2');
      execFileSync(qemuImg, ['create', '-q', '-f', 'qcow2', image, '64M']);
      const vm = await pool.launch(
        { ...idleSpec('devices'), disks: [{ id: 'root', path: image, format: 'qcow2' }], nics: [{ id: 'nic0', mac: '52:54:00:12:34:56', network: 'test' }] },
        { nics: [{ nicId: 'nic0', netdev: `stream,id=n0,server=on,addr.type=unix,addr.path=${join(dir.path, 'port.sock')}` }] },
      );
      const nodes = await vm.qmp.execute<Array<{ 'node-name': string; drv: string; file: string; cache: { direct: boolean } }>>('query-named-block-nodes');
      const format = nodes.find((n) => n['node-name'] === 'disk-root');
      expect(format?.drv).to.equal('qcow2');
      expect(format?.file).to.equal(image);
      expect(format?.cache.direct).to.equal(true);
      const filters = await vm.qmp.execute<Array<{ name: string; 'main-mac': string }>>('query-rx-filter');
      expect(filters).to.deep.equal([{ ...filters[0], name: 'nic0', 'main-mac': '52:54:00:12:34:56' }]);
      await vm.announce();
      await vm.stop();
    } finally {
      dir.remove();
    }
  });

  it('launches paused for an incoming migration', async () => {
    const vm = await pool.launch(idleSpec('incoming'), { incoming: true });
    expect(await vm.runState()).to.equal('inmigrate');
  });

  it('rejects with MOTUS_E_QEMU_LAUNCH carrying stderr when QEMU exits during start', async () => {
    const err = await rejection(pool.launch({ ...idleSpec('bad-cpu'), cpuModel: 'no-such-cpu-model' }));
    expect(err.code).to.equal('MOTUS_E_QEMU_LAUNCH');
    expect(String(err.data['stderr'])).to.match(/no-such-cpu-model|CPU model/i);
    expect(err.message).to.include(String(err.data['stderr']));
  });

  it('rejects with MOTUS_E_QEMU_NOT_INSTALLED when the binary is missing', async () => {
    const missing = new VmPool({ qemuBinary: 'qemu-system-x86_64-not-installed' });
    try {
      expect((await rejection(missing.launch(idleSpec('none')))).code).to.equal('MOTUS_E_QEMU_NOT_INSTALLED');
      expect((await rejection(missing.driver.probe())).code).to.equal('MOTUS_E_QEMU_NOT_INSTALLED');
    } finally {
      await missing.cleanup();
      missing.remove();
    }
  });

  it('stops every VM it launched on dispose, and launches no more after', async () => {
    const a = await pool.launch(idleSpec('d-a'));
    const b = await pool.launch(idleSpec('d-b'));
    expect(pool.driver.running).to.have.length(2);
    await pool.driver.dispose();
    expect(isAlive(a.pid) || isAlive(b.pid)).to.equal(false);
    expect(pool.driver.running).to.have.length(0);
    expect((await rejection(pool.launch(idleSpec('d-c')))).code).to.equal('MOTUS_E_INTERNAL');
  });
});
