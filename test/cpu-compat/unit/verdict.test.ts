import { expect } from 'chai';
import { CpuDryRun, CpuPolicy, CpuCompatConfigSchema, judge, verdictMatrix, type CpuCatalog } from '@motus/cpu-compat';
import { MotusError } from '@motus/sdk';
import type { HostCpuFacts, HostInfo, MigrationHookContext, VmInfo } from '@motus/sdk';
import { modelledHost, recordedModels, recordedReport } from '../support/fixtures.js';

const models = recordedModels();

describe('cpu-compat: verdicts', () => {
  const ivy = modelledHost('host-ivy', 'IvyBridge-v2');
  const rome = modelledHost('host-rome', 'EPYC-Rome-v4');

  it('names every missing feature and the host, and says what to do', () => {
    const v = judge(models, 'Haswell-v4', ivy, 'web1');
    expect(v.compatible).to.equal(false);
    expect(v.host).to.equal('host-ivy');
    const expected = models.model('Haswell-v4').features.filter((f) => !ivy.features.includes(f));
    expect(v.missing).to.deep.equal(expected);
    expect(v.message).to.contain('host host-ivy lacks').and.contain('VM web1 (CPU Haswell-v4)');
    for (const f of expected) expect(v.message).to.contain(f);
    expect(v.message).to.contain(`Haswell-v4,${expected.map((f) => `-${f}`).join(',')}`);
    expect(v.message).to.contain('IvyBridge-v2');
    // The suggested CPU is accepted.
    const lowered = judge(models, `Haswell-v4,${expected.map((f) => `-${f}`).join(',')}`, ivy);
    expect(lowered.compatible).to.equal(true);
  });

  it('refuses a cross-vendor move outright', () => {
    const v = judge(models, 'Haswell-v4', rome, 'web1');
    expect(v.compatible).to.equal(false);
    expect(v.vendorMismatch).to.deep.equal({ cpu: 'GenuineIntel', host: 'AuthenticAMD' });
    expect(v.message).to.contain('never moves between CPU vendors');
  });

  it("treats QEMU's generic models as vendor-neutral", () => {
    // qemu64 turns svm on: an Intel host (no svm) cannot give it, whatever the vendor string.
    expect(judge(models, 'qemu64', ivy).missing).to.deep.equal(['svm']);
    expect(judge(models, 'qemu64', ivy).message).to.contain('IvyBridge-v2');
    expect(judge(models, 'qemu64,-svm', ivy).compatible).to.equal(true);
    expect(judge(models, 'qemu64', rome).compatible).to.equal(true);
  });

  it('counts only the features the current host gave the guest', () => {
    const ivy2 = modelledHost('host-ivy2', 'IvyBridge-v2');
    // Started on an Intel host, qemu64 runs without svm, so another Intel host will do.
    expect(judge(models, 'qemu64', ivy2, 'vm', ivy).compatible).to.equal(true);
    // Started on an AMD host the guest has svm, which the Intel host lacks (and the vendors differ in name only for qemu64).
    expect(judge(models, 'qemu64', ivy2, 'vm', rome).missing).to.deep.equal(['svm']);
    // Features the source gave are still required.
    expect(judge(models, 'Haswell-v4', ivy2, 'vm', modelledHost('hsw', 'Haswell-v4')).missing).to.include('avx2');
  });

  it('accepts a CPU within the host', () => {
    const v = judge(models, 'IvyBridge-v2,-avx', ivy);
    expect(v).to.deep.include({ compatible: true, missing: [], cpu: 'IvyBridge-v2,-avx' });
  });
});

describe('cpu-compat: the validate tap (hosts faked, logic real)', () => {
  const catalog: CpuCatalog = recordedReport().catalog;
  const hosts: Record<string, HostCpuFacts> = {
    'host-a': modelledHost('host-a', 'Skylake-Server-v5'),
    'host-b': modelledHost('host-b', 'Westmere-v2'),
  };
  const policy = (config: Record<string, unknown> = {}) =>
    new CpuPolicy(CpuCompatConfigSchema.parse({ cluster: ['host-a', 'host-b'], ...config }), {
      facts: async (h) => hosts[h]!,
      catalog: async () => catalog,
      clusterHosts: () => ['host-a', 'host-b'],
    });
  const hostInfo = (name: string, facts: unknown): HostInfo => ({ name, state: 'connected', url: '', migrationAddress: '', memoryTotalMiB: 0, memoryUsedMiB: 0, cpus: 1, plugins: { '@motus/cpu-compat': facts } });
  const ctx = (cpuModel: string | undefined, destination: unknown): MigrationHookContext => {
    const vm: VmInfo = { name: 'vm1', host: 'host-a', state: 'running', spec: { name: 'vm1', memoryMiB: 64, vcpus: 1, boot: { kind: 'disk' }, ...(cpuModel ? { cpuModel } : {}) } };
    return { migrationId: 'm1', vm, source: hostInfo('host-a', hosts['host-a']), destination: hostInfo('host-b', destination), container: undefined as never, signal: new AbortController().signal };
  };

  it('vetoes a destination that lacks features of the VM CPU, naming them', async () => {
    const veto = await policy().validate(ctx('SandyBridge-v2', hosts['host-b']));
    expect(veto?.code).to.equal('MOTUS_E_CPU_INCOMPATIBLE');
    expect(veto?.plugin).to.equal('@motus/cpu-compat');
    expect(veto?.reason).to.contain('host host-b lacks').and.contain('avx').and.contain('xsave');
    expect((veto?.data as { missing: string[] }).missing).to.include.members(['avx', 'xsave']);
  });

  it('lets a VM whose CPU the destination provides through; a VM without cpuModel is judged as the default CPU', async () => {
    expect(await policy().validate(ctx('Westmere-v2', hosts['host-b']))).to.equal(undefined);
    const fromAmd = { ...ctx(undefined, hosts['host-b']), source: hostInfo('host-a', modelledHost('host-a', 'EPYC-v4')) };
    expect((await policy().validate(fromAmd))?.reason).to.contain('CPU qemu64').and.contain('svm');
    expect(await policy().validate(ctx(undefined, hosts['host-b']))).to.equal(undefined);
    expect(await policy({ defaultCpu: 'qemu64,-svm' }).validate(ctx(undefined, hosts['host-b']))).to.equal(undefined);
  });

  it('vetoes when the destination has no CPU facts yet or its probe failed', async () => {
    const probing = await policy().validate(ctx('Westmere-v2', { state: 'probing' }));
    expect(probing?.code).to.equal('MOTUS_E_CPU_PROBE');
    expect(probing?.reason).to.contain('host-b');
    const failed = await policy().validate(ctx('Westmere-v2', { error: 'QEMU did not answer', code: 'MOTUS_E_CPU_PROBE' }));
    expect(failed?.reason).to.contain('QEMU did not answer');
  });

  it('vetoes an unknown model in a VM spec with the code of the cause', async () => {
    const veto = await policy().validate(ctx('Westmere-v9', hosts['host-b']));
    expect(veto?.code).to.equal('MOTUS_E_CPU_UNKNOWN_MODEL');
  });

  it('vetoes a destination that cannot provide the cluster baseline', async () => {
    const refused = { ...hosts['host-b']!, baseline: { cpu: 'Haswell-v4', ok: false, missing: ['avx2', 'fma'] } };
    const veto = await policy().validate(ctx('Westmere-v2', refused));
    expect(veto?.code).to.equal('MOTUS_E_CPU_BASELINE');
    expect(veto?.reason).to.contain('cannot provide the cluster CPU baseline Haswell-v4').and.contain('avx2, fma');
  });

  it('answers baselines, effective CPUs, dry runs and the matrix from the hosts', async () => {
    const p = policy();
    expect((await p.baseline()).cpu).to.equal('Westmere-v2');
    expect(await p.effectiveCpu({ hide: ['aes'] })).to.equal('Westmere-v2,-aes');
    expect((await p.check('Skylake-Server-v5', 'host-b')).compatible).to.equal(false);
    const matrix = await p.matrix([{ name: 'a', cpuModel: 'Westmere-v2' }, { name: 'b', cpuModel: 'Skylake-Server-v5' }], ['host-a', 'host-b']);
    expect([0, 1].map((v) => [0, 1].map((h) => matrix.can(v, h)))).to.deep.equal([[true, true], [true, false]]);
    expect(matrix.explain(1, 1).missing).to.include('avx512f');
    const named = policy({ baseline: 'Skylake-Server-v5' });
    expect((await named.baseline()).refused.map((r) => r.host)).to.deep.equal(['host-b']);
  });

  it('answers the dry runs (check VM --to HOST, the cluster matrix) from the reported facts, as the validate tap would', async () => {
    const p = policy();
    const vm = (name: string, cpuModel?: string, state: VmInfo['state'] = 'running'): VmInfo => ({
      name,
      host: 'host-a',
      state,
      spec: { name, memoryMiB: 64, vcpus: 1, boot: { kind: 'disk' }, ...(cpuModel ? { cpuModel } : {}) },
    });
    const site = {
      hosts: async () => [hostInfo('host-a', hosts['host-a']), hostInfo('host-b', hosts['host-b']), hostInfo('host-c', { state: 'probing' })],
      vms: async () => [vm('web', 'Skylake-Server-v5'), vm('db', 'Westmere-v2'), vm('plain'), vm('old', 'Skylake-Server-v5', 'stopped')],
    };
    const dry = new CpuDryRun(p, site, undefined, 'qemu64');
    const web = await dry.check({ vm: 'web', to: 'host-b' });
    const veto = await p.validate(ctx('Skylake-Server-v5', hosts['host-b']));
    expect(web).to.deep.include({ vm: 'web', host: 'host-b', compatible: false, code: 'MOTUS_E_CPU_INCOMPATIBLE', message: veto!.reason.replace('VM vm1', 'VM web') });
    expect(web.missing).to.deep.equal((veto!.data as { missing: string[] }).missing);
    expect(await dry.check({ vm: 'db', to: 'host-b' })).to.deep.include({ compatible: true, missing: [], cpu: 'Westmere-v2' });
    // Running on an Intel host, qemu64 never had svm: the Intel destination will do.
    expect((await dry.check({ vm: 'plain', to: 'host-b' })).compatible).to.equal(true);
    expect(await dry.check({ vm: 'db', to: 'host-c' })).to.deep.include({ compatible: false, code: 'MOTUS_E_CPU_PROBE' });
    const failure = (payload: unknown) => dry.check(payload).then(() => expect.fail('refused'), (e: MotusError) => e.code);
    expect(await failure({ vm: 'nope', to: 'host-b' })).to.equal('MOTUS_E_VM_NOT_FOUND');
    expect(await failure({ vm: 'web', to: 'host-z' })).to.equal('MOTUS_E_HOST_NOT_FOUND');
    expect(await failure({ vm: 'web' })).to.equal('MOTUS_E_INVALID_REQUEST');

    const matrix = await dry.matrix({});
    expect(matrix.hosts).to.deep.equal(['host-a', 'host-b', 'host-c']);
    expect(matrix.unavailable.map((u) => [u.host, u.code])).to.deep.equal([['host-c', 'MOTUS_E_CPU_PROBE']]);
    const row = (name: string) => matrix.rows.find((r) => r.vm === name)!;
    expect(row('web')).to.deep.include({ runsOn: 'host-a', allowed: ['host-a'] });
    expect(row('web').refused.map((r) => r.host)).to.deep.equal(['host-c', 'host-b']);
    expect(row('web').refused.find((r) => r.host === 'host-b')!.missing).to.deep.equal(web.missing);
    expect(row('db').allowed).to.deep.equal(['host-a', 'host-b']);
    expect(row('plain').allowed).to.deep.equal(['host-a', 'host-b']);
    // A stopped VM is judged on its CPU alone (it will start wherever it is placed).
    expect(row('old')).to.not.have.property('runsOn');
    expect(row('old').allowed).to.deep.equal(['host-a']);
    expect((await dry.matrix({ hosts: ['host-b'] })).rows.map((r) => r.allowed.length)).to.deep.equal([0, 1, 1, 0]);
    expect(await dry.matrix({ hosts: ['host-x'] }).then(() => 'ok', (e: MotusError) => e.code)).to.equal('MOTUS_E_HOST_NOT_FOUND');
  });

  it('records the cluster baseline with the mask for a new VM, and leaves the default CPU alone on a site without a cluster', async () => {
    expect(await policy().cpuForNewVm({ hide: ['aes'] })).to.equal('Westmere-v2,-aes');
    expect(await policy().cpuForNewVm()).to.equal('Westmere-v2');
    const noCluster = new CpuPolicy(CpuCompatConfigSchema.parse({}), { facts: async (h) => hosts[h]!, catalog: async () => catalog, clusterHosts: () => [] });
    expect(await noCluster.cpuForNewVm()).to.equal(undefined);
    expect(await noCluster.cpuForNewVm({ hide: ['aes'] }).then(() => 'ok', (e: MotusError) => e.code)).to.equal('MOTUS_E_INVALID_REQUEST');
  });
});

describe('cpu-compat: the verdict matrix', () => {
  it('agrees with one verdict per cell, for every generation against every other', () => {
    const names = ['Nehalem-v1', 'Westmere-v2', 'SandyBridge-v2', 'IvyBridge-v2', 'Haswell-v4', 'Broadwell-v4', 'Skylake-Server-v5', 'Cascadelake-Server-v5', 'Icelake-Server-v7', 'SapphireRapids-v3', 'EPYC-v4', 'EPYC-Rome-v4', 'EPYC-Milan-v2', 'EPYC-Genoa-v1'];
    const hosts = names.map((n) => modelledHost(`h-${n}`, n));
    const vms: Array<{ name: string; cpuModel?: string }> = [...names.map((n) => ({ name: `vm-${n}`, cpuModel: n })), { name: 'masked', cpuModel: 'Haswell-v4,-avx2,-fma' }, { name: 'default' }];
    const matrix = verdictMatrix(models, vms, hosts, 'qemu64,-svm');
    expect(matrix.distinctHosts).to.equal(names.length);
    vms.forEach((vm, v) =>
      hosts.forEach((h, i) => expect(matrix.can(v, i), `${vm.name} on ${h.host}`).to.equal(judge(models, vm.cpuModel ?? 'qemu64,-svm', h).compatible)),
    );
    expect(matrix.can(names.indexOf('Haswell-v4'), names.indexOf('IvyBridge-v2'))).to.equal(false);
    expect(matrix.can(names.indexOf('IvyBridge-v2'), names.indexOf('Haswell-v4'))).to.equal(true);
  });
});
