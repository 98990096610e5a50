import { expect } from 'chai';
import { kernelSpelling, mapCpuinfoFlags } from '@motus/cpu-compat';
import { recordedCpuInfo, recordedReport } from '../support/fixtures.js';

describe('cpu-compat: kernel ↔ QEMU feature names', () => {
  const known = new Set(recordedReport().catalog.knownFeatures);

  it('maps the kernel spellings to the names the recorded QEMU uses', () => {
    const flags = ['sse4_1', 'sse4_2', 'tsc_deadline_timer', 'avx512_vpopcntdq', 'avx512_vnni', 'avx512_bf16', 'lahf_lm', 'sha_ni', 'pni', 'avx_vnni', 'cr8_legacy', 'pausefilter', 'fxsr_opt', 'avx2'];
    const { toQemu, linuxOnly } = mapCpuinfoFlags(flags, known);
    expect(Object.fromEntries(toQemu)).to.deep.equal({
      sse4_1: 'sse4.1',
      sse4_2: 'sse4.2',
      tsc_deadline_timer: 'tsc-deadline',
      avx512_vpopcntdq: 'avx512-vpopcntdq',
      avx512_vnni: 'avx512vnni',
      avx512_bf16: 'avx512-bf16',
      lahf_lm: 'lahf-lm',
      sha_ni: 'sha-ni',
      pni: 'pni',
      avx_vnni: 'avx-vnni',
      cr8_legacy: 'cr8legacy',
      pausefilter: 'pause-filter',
      fxsr_opt: 'fxsr-opt',
      avx2: 'avx2',
    });
    expect(linuxOnly).to.deep.equal([]);
  });

  it("leaves Linux's own synthetic flags unmapped", () => {
    const { toQemu, linuxOnly } = mapCpuinfoFlags(['constant_tsc', 'nopl', 'rep_good', 'xtopology', 'cpuid', 'fpu'], known);
    expect([...toQemu.keys()]).to.deep.equal(['fpu']);
    expect(linuxOnly).to.deep.equal(['constant_tsc', 'nopl', 'rep_good', 'xtopology', 'cpuid']);
  });

  it('maps every flag of the recorded host that has a QEMU feature to a name QEMU knows', () => {
    const info = recordedCpuInfo();
    const { toQemu, linuxOnly } = mapCpuinfoFlags(info.flags, known);
    for (const q of toQemu.values()) expect(known.has(q), q).to.equal(true);
    expect(toQemu.size + linuxOnly.length).to.equal(info.flags.length);
    expect(toQemu.get('sse4_2')).to.equal('sse4.2');
  });

  it('spells QEMU features the kernel way for messages', () => {
    expect(kernelSpelling('tsc-deadline')).to.equal('tsc_deadline_timer');
    expect(kernelSpelling('sse4.2', ['sse4_2'])).to.equal('sse4_2');
    expect(kernelSpelling('avx512vnni', ['avx512_vnni'])).to.equal('avx512_vnni');
    expect(kernelSpelling('avx512-vpopcntdq')).to.equal('avx512_vpopcntdq');
  });
});
