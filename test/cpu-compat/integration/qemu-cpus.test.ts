import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { execFileSync } from 'node:child_process';
import {
  CpuCompatConfigSchema,
  buildReport,
  CpuModels,
  computeBaseline,
  effectiveCpu,
  hostCpuFacts,
  judge,
  parseCpuInfo,
  probeQemuCpus,
  probeQemuReplies,
  type QemuCpuReport,
} from '@motus/cpu-compat';
import { QmpClient, isMotusError } from '@motus/sdk';
import { requireCommand, tempDir, waitFor } from '../../support/system.js';
import { recordedReplies } from '../support/fixtures.js';

/** QEMU processes of this test process (probes and the VMs started below). */
function ourQemus(): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(process.pid)], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .map(Number)
      .filter((pid) => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('qemu-system');
        } catch {
          return false;
        }
      });
  } catch {
    return [];
  }
}

describe('cpu-compat with the real QEMU of this machine', function () {
  this.timeout(180_000);
  let report: QemuCpuReport;
  let probeMs: number;

  before(async () => {
    requireCommand('qemu-system-x86_64', 'qemu-system-x86');
    const t0 = performance.now();
    report = await probeQemuCpus({ accelerator: 'auto' });
    probeMs = performance.now() - t0;
  });

  afterEach(() => {
    expect(ourQemus(), 'QEMU processes left behind').to.deep.equal([]);
  });

  it('reads every named model, its feature set and its runnability through QMP', () => {
    const models = new CpuModels(report.catalog);
    console.log(
      `      probe: QEMU ${report.view.qemuVersion} (${report.view.accelerator}), ${report.catalog.models.length} models, ${report.view.features.length} host features, ${Object.values(report.view.unavailable).filter((u) => u.length === 0).length} runnable, ${probeMs.toFixed(0)} ms`,
    );
    expect(report.view.accelerator).to.be.oneOf(['kvm', 'tcg']);
    for (const n of ['Nehalem', 'Westmere', 'SandyBridge', 'IvyBridge', 'Haswell', 'Broadwell', 'Skylake-Client', 'Skylake-Server', 'Cascadelake-Server', 'Icelake-Server', 'SapphireRapids', 'GraniteRapids', 'EPYC', 'EPYC-Rome', 'EPYC-Milan', 'EPYC-Genoa']) {
      expect(models.model(n).features.length, n).to.be.greaterThan(20);
    }
    expect(models.model('SapphireRapids').features).to.include('amx-tile');
    expect(report.view.features).to.include.members(['sse2', 'lm']);
    expect(Object.keys(report.view.unavailable)).to.include('Nehalem-v1');
  });

  it('matches the recorded fixture when the QEMU version is the same', async () => {
    const recorded = recordedReplies();
    if (recorded.qemuVersion !== report.view.qemuVersion) {
      throw new Error(`the fixture is from QEMU ${recorded.qemuVersion}, this machine runs ${report.view.qemuVersion}: re-record with node test/dist/cpu-compat/support/record-qemu-cpus.js`);
    }
    const live = await probeQemuReplies({ accelerator: 'tcg' });
    expect(live.definitions.map((d) => d.name)).to.deep.equal(recorded.definitions.map((d) => d.name));
    const recordedModels = new CpuModels(buildReport(recorded).catalog);
    const liveModels = new CpuModels(buildReport(live).catalog);
    for (const m of liveModels.generations()) expect(m.features, m.name).to.deep.equal(recordedModels.model(m.name).features);
  });

  it("builds this host's facts: /proc/cpuinfo mapped onto QEMU's view", () => {
    const info = parseCpuInfo(readFileSync('/proc/cpuinfo', 'utf8'));
    if (!info.ok) throw new Error(info.error);
    const facts = hostCpuFacts('here', info.value, report);
    console.log(`      host: ${facts.vendor} family ${facts.family} model ${facts.model} stepping ${facts.stepping} (${facts.modelName}); runnable: ${facts.runnableModels.join(', ')}`);
    console.log(`      in /proc/cpuinfo but not given by QEMU (${facts.qemu.accelerator}): ${facts.cpuinfoNotProvided.join(' ') || 'none'}`);
    expect(facts.vendor).to.equal(info.value.vendor);
    expect(facts.runnableModels.length).to.be.greaterThan(0);
    const auto = computeBaseline('auto', [facts], new CpuModels(report.catalog));
    expect(facts.runnableModels).to.include(auto.spec.model);
  });

  it('a VM started with the computed baseline plus a mask runs, and QEMU shows the masked features off', async () => {
    requireCommand('setpriv', 'util-linux');
    const models = new CpuModels(report.catalog);
    const info = parseCpuInfo(readFileSync('/proc/cpuinfo', 'utf8'));
    if (!info.ok) throw new Error(info.error);
    const facts = hostCpuFacts('here', info.value, report);
    const baseline = computeBaseline('auto', [facts], models);
    const hide = baseline.features.filter((f) => ['sse4.2', 'popcnt', 'ssse3', 'pni', 'cx16'].includes(f)).slice(0, 2);
    expect(hide.length, `baseline ${baseline.cpu} has none of the features to hide`).to.equal(2);
    const cpu = effectiveCpu(baseline, { hide }, models);
    expect(judge(models, cpu, facts).compatible).to.equal(true);
    const dir = tempDir('cpu-vm');
    const socket = join(dir.path, 'qmp.sock');
    const qemu = spawn('setpriv', ['--pdeathsig', 'KILL', 'qemu-system-x86_64', '-machine', 'pc', '-accel', report.view.accelerator, '-cpu', cpu, '-m', '32', '-nodefaults', '-display', 'none', '-qmp', `unix:${socket},server=on,wait=off`], {
      stdio: 'ignore',
    });
    const exited = new Promise((r) => qemu.once('exit', r));
    try {
      await waitFor('the VM QMP socket', () => (existsSync(socket) ? true : undefined), 30_000);
      const qmp = await QmpClient.connect(socket, { commandTimeoutMs: 20_000 });
      try {
        expect((await qmp.queryStatus()).running).to.equal(true);
        const [cpuPath] = (await qmp.queryCpusFast()).map((c) => c['qom-path']);
        for (const f of hide) expect(await qmp.execute('qom-get', { path: cpuPath, property: f }), f).to.equal(false);
        for (const f of baseline.features.filter((f) => !hide.includes(f)).slice(0, 12)) expect(await qmp.execute('qom-get', { path: cpuPath, property: f }), f).to.equal(true);
        console.log(`      ran -cpu ${cpu}: ${hide.join(', ')} off`);
      } finally {
        qmp.close();
      }
    } finally {
      qemu.kill('SIGKILL');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      dir.remove();
    }
  });

  it('a QEMU that does not answer fails the probe with a coded error in time, leaving nothing behind', async () => {
    const dir = tempDir('cpu-mute');
    const mute = join(dir.path, 'qemu-mute');
    // Ignores its arguments and never opens QMP, like a QEMU wedged at start.
    writeFileSync(mute, '#!/bin/sh\nexec sleep 600\n');
    chmodSync(mute, 0o755);
    try {
      const t0 = performance.now();
      const err = await probeQemuCpus({ qemuBinary: mute, accelerator: 'tcg', timeoutMs: 1_500 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isMotusError(err, 'MOTUS_E_CPU_PROBE'), String(err)).to.equal(true);
      expect((err as Error).message).to.contain('no QMP socket within 1500 ms');
      expect(performance.now() - t0).to.be.lessThan(10_000);
      const missing = await probeQemuCpus({ qemuBinary: join(dir.path, 'nope') }).catch((e: unknown) => e);
      expect(isMotusError(missing, 'MOTUS_E_QEMU_NOT_INSTALLED')).to.equal(true);
    } finally {
      dir.remove();
    }
  });

  it('config refuses malformed baselines and lab limits', () => {
    expect(CpuCompatConfigSchema.safeParse({ baseline: 'Haswell-v4,-avx2' }).success).to.equal(true);
    expect(CpuCompatConfigSchema.safeParse({ baseline: { model: 'Haswell-v4', remove: ['AVX2'] } }).success).to.equal(false);
    expect(CpuCompatConfigSchema.safeParse({ hosts: { b: { maxModel: 'Nehalem', colour: 'red' } } }).success).to.equal(false);
  });
});
