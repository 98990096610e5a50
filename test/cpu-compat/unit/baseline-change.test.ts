import { expect } from 'chai';
import { CpuCompatConfigSchema, CpuDryRun, CpuPolicy } from '@motus/cpu-compat';
import { MotusError, type HostCpuFacts, type VmInfo } from '@motus/sdk';
import { modelledHost, recordedReport } from '../support/fixtures.js';

function vm(name: string, cpuModel: string | undefined, state: VmInfo['state'] = 'running'): VmInfo {
  return { name, host: 'skylake', state, spec: { name, memoryMiB: 128, vcpus: 1, ...(cpuModel ? { cpuModel } : {}), boot: { kind: 'kernel', kernel: '/k' } } };
}

/** `motus cpu baseline --dry-run NEW`: which running VMs a baseline change would touch, over recorded CPU facts. */
describe('cpu-compat: a baseline change as a dry run', () => {
  const hosts = new Map<string, HostCpuFacts>([
    ['skylake', modelledHost('skylake', 'Skylake-Server-v5')],
    ['haswell', modelledHost('haswell', 'Haswell-v4')],
    ['ivy', modelledHost('ivy', 'IvyBridge-v2')],
  ]);
  const dryRun = (cluster: string[], vms: VmInfo[]) => {
    const config = CpuCompatConfigSchema.parse({ baseline: 'Haswell-v4', cluster });
    const policy = new CpuPolicy(config, { facts: async (h) => hosts.get(h)!, catalog: async () => recordedReport().catalog, clusterHosts: () => cluster });
    return new CpuDryRun(policy, { hosts: async () => [], vms: async () => vms }, cluster, config.defaultCpu);
  };

  it('lists the running VMs a lower baseline leaves beyond it, and those a higher one would let gain features', async () => {
    const vms = [vm('old', 'Haswell-v4'), vm('pinned', 'IvyBridge-v2'), vm('stopped', 'Haswell-v4', 'stopped'), vm('nocpu', undefined)];
    const down = await dryRun(['skylake', 'haswell'], vms).baselineChange({ baseline: 'IvyBridge-v2' });
    expect(down).to.include({ from: 'Haswell-v4', to: 'IvyBridge-v2' });
    expect(down.added).to.deep.equal([]);
    expect(down.removed).to.include.members(['avx2', 'fma']);
    expect(down.beyond.map((v) => v.vm)).to.deep.equal(['old']);
    expect(down.beyond[0]!.features).to.include('avx2');
    expect(down.couldGain).to.deep.equal([]);
    expect(down.unaffected).to.deep.equal(['pinned', 'nocpu']);

    const up = await dryRun(['skylake', 'haswell'], vms).baselineChange({ baseline: 'Skylake-Server-v5' });
    expect(up.to).to.equal('Skylake-Server-v5');
    expect(up.added).to.include('avx512f');
    expect(up.refused.map((r) => r.host), 'haswell cannot provide it').to.deep.equal(['haswell']);
    expect(up.couldGain.map((v) => v.vm)).to.deep.equal(['old']);
    expect(up.beyond).to.deep.equal([]);
  });

  it('answers auto over the cluster, and refuses a malformed request with a coded error', async () => {
    const auto = await dryRun(['skylake', 'haswell', 'ivy'], [vm('old', 'Haswell-v4')]).baselineChange({ baseline: 'auto' });
    expect(auto.to).to.equal('IvyBridge-v2');
    expect(auto.beyond.map((v) => v.vm)).to.deep.equal(['old']);
    for (const payload of [{}, { baseline: 'bad model!' }, { baseline: 'auto', extra: 1 }, null]) {
      const err = await dryRun(['skylake'], []).baselineChange(payload).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, JSON.stringify(payload)).to.be.instanceOf(MotusError);
      expect((err as MotusError).code).to.equal('MOTUS_E_INVALID_REQUEST');
    }
  });
});
