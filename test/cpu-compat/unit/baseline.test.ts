import { expect } from 'chai';
import { baselineImpact, computeBaseline, effectiveCpu, hostCpuFacts, judge, parseCpuString } from '@motus/cpu-compat';
import { isMotusError } from '@motus/sdk';
import { modelledHost, recordedCpuInfo, recordedModels, recordedReport } from '../support/fixtures.js';

const models = recordedModels();

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected an error');
}

describe('cpu-compat: cluster baselines', () => {
  const ivy = modelledHost('ivy', 'IvyBridge-v2');
  const haswell = modelledHost('haswell', 'Haswell-v4');
  const skylake = modelledHost('skylake', 'Skylake-Server-v5');
  const rome = modelledHost('rome', 'EPYC-Rome-v4');
  const genoa = modelledHost('genoa', 'EPYC-Genoa-v1');

  it('auto: the richest named model every host runs', () => {
    expect(computeBaseline('auto', [skylake, haswell], models).cpu).to.equal('Haswell-v4');
    expect(computeBaseline('auto', [skylake, haswell, ivy], models).cpu).to.equal('IvyBridge-v2');
    expect(computeBaseline('auto', [skylake], models).cpu).to.match(/^Skylake-Server/);
    expect(computeBaseline('auto', [genoa, rome], models).cpu).to.equal('EPYC-Rome-v4');
    const b = computeBaseline('auto', [haswell, ivy], models);
    expect(b.mode).to.equal('auto');
    expect(b.vendor).to.equal('GenuineIntel');
    expect(b.features).to.deep.equal([...models.model('IvyBridge-v2').features]);
    expect(b.refused).to.deep.equal([]);
  });

  it('auto refuses to mix vendors, naming the hosts of each', () => {
    const err = thrown(() => computeBaseline('auto', [haswell, rome, ivy], models));
    expect(isMotusError(err, 'MOTUS_E_CPU_VENDOR_MISMATCH')).to.equal(true);
    expect((err as Error).message).to.contain('GenuineIntel: haswell, ivy').and.contain('AuthenticAMD: rome');
  });

  it('a named baseline refuses the hosts that cannot provide it, with the missing features', () => {
    const b = computeBaseline('Haswell-v4', [skylake, haswell, ivy, rome], models);
    expect(b.mode).to.equal('model');
    expect(b.refused.map((r) => r.host)).to.deep.equal(['ivy', 'rome']);
    const ivyRefusal = b.refused[0]!;
    expect(ivyRefusal.missing).to.include.members(['avx2', 'fma', 'bmi1', 'bmi2', 'movbe']);
    expect(ivyRefusal.missing).to.deep.equal(models.model('Haswell-v4').features.filter((f) => !ivy.features.includes(f)));
    expect(b.refused[1]!.vendorMismatch).to.deep.equal({ cpu: 'GenuineIntel', host: 'AuthenticAMD' });
  });

  it('a custom baseline is a model with features added and removed', () => {
    const b = computeBaseline({ model: 'Skylake-Server-v5', remove: ['avx512f', 'avx512dq', 'avx512cd', 'avx512bw', 'avx512vl'] }, [skylake, haswell], models);
    expect(b.mode).to.equal('custom');
    expect(b.cpu).to.equal('Skylake-Server-v5,-avx512bw,-avx512cd,-avx512dq,-avx512f,-avx512vl');
    expect(b.features).to.not.include('avx512f');
    expect(b.refused.map((r) => r.host)).to.deep.equal(['haswell']);
    expect(b.refused[0]!.missing).to.not.include('avx512f');
    expect(() => computeBaseline({ model: 'Haswell-v4', add: ['warp-drive'] }, [haswell], models)).to.throw(/warp-drive/);
  });

  it('the recorded TCG host runs the generations QEMU says it can, and lab limits narrow it', () => {
    const info = recordedCpuInfo();
    const report = recordedReport();
    const full = hostCpuFacts('lab-a', info, report);
    const runnableByQemu = Object.entries(report.view.unavailable).filter(([name, u]) => u.length === 0 && models.generations().some((g) => g.name === name)).map(([n]) => n).sort();
    expect([...full.runnableModels].sort()).to.deep.equal(runnableByQemu);
    expect(full.qemu.accelerator).to.equal('tcg');
    expect(full.vendor).to.equal(info.vendor);
    const old = hostCpuFacts('lab-b', info, report, { maxModel: 'Conroe', hideFeatures: ['ssse3'] });
    expect(old.features).to.not.include('ssse3').and.not.include('sse4.1');
    expect(old.limits).to.deep.equal({ maxModel: 'Conroe', hideFeatures: ['ssse3'] });
    expect(old.runnableModels).to.not.include('Conroe-v1');
    expect(() => hostCpuFacts('lab-c', info, report, { hideFeatures: ['avx-9000'] })).to.throw(/avx-9000/);
  });
});

describe('cpu-compat: per-VM masks and the effective CPU', () => {
  const haswell = modelledHost('haswell', 'Haswell-v4');
  const skylake = modelledHost('skylake', 'Skylake-Server-v5');
  const baseline = computeBaseline('auto', [skylake, haswell], models);

  it('hides features on top of the baseline', () => {
    expect(effectiveCpu(baseline, undefined, models)).to.equal('Haswell-v4');
    expect(effectiveCpu(baseline, { hide: ['avx2', 'fma'] }, models)).to.equal('Haswell-v4,-avx2,-fma');
    const custom = computeBaseline({ model: 'Haswell-v4', add: ['pku'], remove: ['rdrand'] }, [], models);
    expect(effectiveCpu(custom, { hide: ['pku', 'avx2'] }, models)).to.equal('Haswell-v4,-avx2,-rdrand');
  });

  it('pins an older model inside the baseline, and refuses one beyond it', () => {
    expect(effectiveCpu(baseline, { pinModel: 'SandyBridge-v2', hide: ['avx'] }, models)).to.equal('SandyBridge-v2,-avx');
    const beyond = thrown(() => effectiveCpu(baseline, { pinModel: 'Skylake-Server-v5' }, models));
    expect(isMotusError(beyond, 'MOTUS_E_CPU_BASELINE')).to.equal(true);
    expect((beyond as Error).message).to.contain('avx512f');
    expect(isMotusError(thrown(() => effectiveCpu(baseline, { pinModel: 'EPYC-v4' }, models)), 'MOTUS_E_CPU_VENDOR_MISMATCH')).to.equal(true);
    expect(isMotusError(thrown(() => effectiveCpu(baseline, { hide: ['avx-3'] }, models)), 'MOTUS_E_CPU_UNKNOWN_FEATURE')).to.equal(true);
  });

  it('the effective CPU runs on every host of the cluster', () => {
    for (const mask of [undefined, { hide: ['avx2'] }, { pinModel: 'Nehalem-v2' }]) {
      const cpu = effectiveCpu(baseline, mask, models);
      for (const host of [haswell, skylake]) expect(judge(models, cpu, host).compatible, `${cpu} on ${host.host}`).to.equal(true);
    }
  });

  it('says which running VMs a baseline change affects', () => {
    const lower = computeBaseline('IvyBridge-v2', [], models);
    const beyondIvy = models.model('Haswell-v4').features.filter((f) => !lower.features.includes(f));
    const vms = [
      { name: 'web', cpuModel: 'Haswell-v4' },
      { name: 'db', cpuModel: `Haswell-v4,${beyondIvy.map((f) => `-${f}`).join(',')}` },
      { name: 'old', cpuModel: 'IvyBridge-v2' },
      { name: 'none' },
    ];
    const down = baselineImpact(baseline, lower, vms, models);
    expect(down.beyond.map((b) => b.vm)).to.deep.equal(['web']);
    expect(down.beyond[0]!.features).to.include.members(['avx2', 'fma']);
    const up = baselineImpact(lower, baseline, vms, models);
    expect(up.beyond).to.deep.equal([]);
    expect(up.couldGain.map((g) => g.vm)).to.deep.equal(['old']);
    expect(up.couldGain[0]!.features).to.include('avx2');
    expect(parseCpuString(vms[1]!.cpuModel!).disable).to.include('avx2');
  });
});
