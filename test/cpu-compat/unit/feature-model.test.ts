import { expect } from 'chai';
import { formatCpuString, parseCpuString } from '@motus/cpu-compat';
import { isMotusError as isCoded } from '@motus/sdk';
import { recordedModels, recordedReplies, recordedReport } from '../support/fixtures.js';

describe("cpu-compat: QEMU's named models as the feature model (recorded QEMU replies)", () => {
  const models = recordedModels();

  it('holds the Intel and AMD generations with their versions', () => {
    const names = new Set(models.catalog.models.map((m) => m.name));
    for (const n of ['Nehalem', 'Nehalem-v1', 'Westmere', 'SandyBridge', 'IvyBridge', 'Haswell-v4', 'Broadwell', 'Skylake-Client-v4', 'Skylake-Server-v5', 'Cascadelake-Server', 'Icelake-Server-v7', 'SapphireRapids-v1', 'GraniteRapids', 'EPYC', 'EPYC-Rome', 'EPYC-Milan-v2', 'EPYC-Genoa']) {
      expect(names.has(n), n).to.equal(true);
    }
    expect(names.has('max')).to.equal(false);
    expect(models.catalog.models.length).to.equal(recordedReplies().definitions.length - 3);
  });

  it("takes each model's features from QEMU's static expansion, and follows aliases", () => {
    expect(models.model('Haswell').name).to.equal('Haswell-v1');
    expect(models.model('nehalem').name).to.equal('Nehalem-v1');
    expect(models.model('Nehalem').features).to.include.members(['sse4.2', 'popcnt', 'ssse3']).and.not.include('avx');
    expect(models.model('SandyBridge').features).to.include('avx').and.not.include('avx2');
    expect(models.model('Haswell-v4').features).to.include.members(['avx2', 'fma', 'bmi2']);
    expect(models.model('Skylake-Server-v4').features).to.include('avx512f');
    expect(models.model('EPYC-Genoa').features).to.include.members(['avx512f', 'avx512-bf16']);
    expect(models.model('Skylake-Client-v4').vendor).to.equal('GenuineIntel');
    expect(models.model('EPYC-v4').vendor).to.equal('AuthenticAMD');
    const raw = recordedReplies().expansions['Nehalem-v1']!.model.props!;
    expect(models.model('Nehalem-v1').features).to.deep.equal(Object.keys(raw).filter((k) => raw[k] === true).sort());
  });

  it('lists migration-safe versioned models as generations', () => {
    const generations = models.generations().map((m) => m.name);
    expect(generations).to.include.members(['Nehalem-v1', 'Haswell-v4', 'EPYC-Genoa-v1']);
    expect(generations).to.not.include('Haswell');
  });

  it("records what this host's QEMU cannot run, as QEMU said it", () => {
    const view = recordedReport().view;
    expect(view.hostModel).to.equal(view.accelerator === 'kvm' ? 'host' : 'max');
    expect(view.unavailable['Nehalem-v1']).to.deep.equal([]);
    // QEMU's own verdict and the feature sets agree on which models run here; QEMU
    // leaves the bits of an MSR it cannot give (arch-capabilities: mds-no, …) out
    // of its list, the feature sets name them.
    for (const m of models.generations()) {
      const lacking = m.features.filter((f) => !view.features.includes(f));
      const qemuSays = view.unavailable[m.name]!.filter((f) => m.features.includes(f));
      expect(lacking, m.name).to.include.members(qemuSays);
      expect(lacking.length === 0, m.name).to.equal(view.unavailable[m.name]!.length === 0);
    }
  });

  it('refuses unknown model and feature names with coded errors', () => {
    try {
      models.model('Haswel');
      expect.fail('no error');
    } catch (err) {
      expect(isCoded(err, 'MOTUS_E_CPU_UNKNOWN_MODEL')).to.equal(true);
      expect((err as Error).message).to.contain('Haswell');
    }
    expect(() => models.features(parseCpuString('Nehalem,-avx9000'))).to.throw(/avx9000/).that.satisfies((e: unknown) => isCoded(e, 'MOTUS_E_CPU_UNKNOWN_FEATURE'));
  });
});

describe('cpu-compat: -cpu values', () => {
  it('reads both switch spellings and writes one canonical form', () => {
    expect(parseCpuString('Haswell-v4,-avx2,fma=off,+pcid,vmx=on')).to.deep.equal({ model: 'Haswell-v4', enable: ['pcid', 'vmx'], disable: ['avx2', 'fma'] });
    expect(formatCpuString(parseCpuString('Haswell-v4,fma=off,-avx2,+pcid'))).to.equal('Haswell-v4,+pcid,-avx2,-fma');
    expect(parseCpuString('Nehalem,+avx,-avx').disable).to.deep.equal(['avx']);
  });

  it('refuses options that are not feature switches', () => {
    for (const bad of ['', ',avx', 'Haswell,vendor=AuthenticAMD', 'Haswell,model-id=x', 'Haswell,-AVX', 'Has well']) {
      expect(() => parseCpuString(bad), bad).to.throw().that.satisfies((e: unknown) => isCoded(e, 'MOTUS_E_INVALID_REQUEST'));
    }
  });
});
