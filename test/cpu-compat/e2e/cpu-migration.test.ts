/**
 * An all-in-one site whose two hosts are the same machine; the plugin config makes
 * host-b pass for an older CPU (lab limit: no newer than a pre-AVX model of this
 * machine's vendor). A guest whose CPU uses AVX is refused to host-b with every
 * missing feature named and nothing started there (the dry runs `motus cpu check`
 * and `motus cpu matrix` say so first); restarted on the cluster baseline with a
 * mask, its effective CPU recorded at creation, the same VM migrates for real and
 * keeps running with the same CPU.
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { CpuModels, hostCpuFacts, isVendorNeutral, parseCpuInfo, parseCpuString, formatCpuString, probeQemuCpus, type QemuCpuReport } from '@motus/cpu-compat';
import { MotusError, type CpuCheck, type CpuMatrix, type HostCpuFacts, type MigrationEvent, type Veto, type VmInfo, type VmSpec } from '@motus/sdk';
import { guestKit, parseHeartbeats, requireGuestKitSite, waitFor } from '../../support/index.js';
import { alive, qemuPidsOf, startSite, twoHostSiteYaml, type TestSite } from '../../support/site.js';

function spec(name: string, cpuModel: string): VmSpec {
  const kit = guestKit();
  return { name, memoryMiB: 256, vcpus: 1, cpuModel, boot: { kind: 'kernel', kernel: kit.kernel, initrd: kit.initrd, cmdline: kit.cmdline() } };
}

async function vmInfo(site: TestSite, name: string): Promise<VmInfo> {
  const vm = (await site.client.vms()).find((v) => v.name === name);
  if (!vm) throw new Error(`VM ${name} is not in the inventory`);
  return vm;
}

function beats(vm: VmInfo) {
  return parseHeartbeats(readFileSync(vm.serialLog!, 'utf8'));
}

async function cpuFacts(site: TestSite, host: string): Promise<HostCpuFacts> {
  return waitFor(
    `CPU facts of ${host}`,
    async () => {
      const info = (await site.client.hosts()).find((h) => h.name === host);
      const facts = info?.plugins['@motus/cpu-compat'] as Record<string, unknown> | undefined;
      if (facts && typeof facts['error'] === 'string') throw new Error(`${host} reports a CPU probe error: ${String(facts['error'])}`);
      return facts && Array.isArray(facts['features']) ? (facts as unknown as HostCpuFacts) : undefined;
    },
    90_000,
    250,
  );
}

describe('cpu-compat end to end: a CPU-feature veto, then a masked VM that migrates (all-in-one site, QEMU)', function () {
  this.timeout(600_000);
  let site: TestSite | undefined;
  let models: CpuModels;
  let avxCpu: string;
  let olderModel: string;
  let expectedMissing: string[];

  before(async () => {
    requireGuestKitSite();
    // Choose the models from what this machine's QEMU says, so the test holds on
    // Intel and AMD machines, under TCG or KVM.
    const report: QemuCpuReport = await probeQemuCpus();
    models = new CpuModels(report.catalog);
    const info = parseCpuInfo(readFileSync('/proc/cpuinfo', 'utf8'));
    if (!info.ok) throw new Error(info.error);
    const here = hostCpuFacts('here', info.value, report);
    const ours = models.generations().filter((m) => m.vendor === here.vendor);
    const byFeatures = (a: { features: string[] }, b: { features: string[] }) => a.features.length - b.features.length;
    // AVX2 too, so the model is of a generation the guest kernel knows well (under
    // TCG, Debian's kernel hangs at boot on the Bulldozer-era Opteron_G4/G5 models).
    const avxModel = ours.filter((m) => m.features.includes('avx2') && here.features.includes('avx2')).sort(byFeatures)[0];
    if (!avxModel) throw new Error(`QEMU offers no ${here.vendor} model with AVX2 that this host can provide`);
    // The AVX model with what this host cannot give masked off, so it runs on host-a.
    avxCpu = formatCpuString({ model: avxModel.name, enable: [], disable: avxModel.features.filter((f) => !here.features.includes(f)) });
    const older = ours.filter((m) => !isVendorNeutral(m.name) && !m.features.includes('avx') && here.runnableModels.includes(m.name)).sort(byFeatures).at(-1);
    if (!older) throw new Error(`no ${here.vendor} model without AVX runs here`);
    olderModel = older.name;
    const olderFeatures = new Set(older.features.filter((f) => here.features.includes(f)));
    expectedMissing = [...models.features(parseCpuString(avxCpu))].filter((f) => !olderFeatures.has(f)).sort();
    site = await startSite(`${twoHostSiteYaml('cpu-e2e', 256)}plugins:
  - package: '@motus/hv-qemu'
  - package: '@motus/cpu-compat'
    config:
      baseline: auto
      cluster: [host-a, host-b]
      hosts:
        host-b: { maxModel: '${olderModel}' }
`);
  });

  after(async () => {
    await site?.stop();
    expect(await qemuPidsOf('cpu1')).to.deep.equal([]);
  });

  it('agents report their CPU facts: host-b is limited to the older model', async () => {
    const a = await cpuFacts(site!, 'host-a');
    const b = await cpuFacts(site!, 'host-b');
    expect(a.qemu.version).to.match(/^\d+\.\d+/);
    expect(b.limits).to.deep.equal({ maxModel: olderModel });
    expect(a.features).to.include('avx');
    expect(b.features).to.not.include('avx');
    console.log(`      host-a: ${a.vendor} ${a.modelName}, ${a.qemu.accelerator}, ${a.features.length} features; host-b limited to ${olderModel}: ${b.features.length} features`);
  });

  it('refuses a VM with an AVX CPU to host-b, naming every missing feature; nothing starts there', async () => {
    await site!.client.startVm(spec('cpu1', avxCpu), 'host-a');
    let vm = await vmInfo(site!, 'cpu1');
    await waitFor('3 heartbeats of cpu1', () => (beats(vm).length >= 3 ? true : undefined), 120_000, 250);
    const [pid] = await qemuPidsOf('cpu1');
    const err = await site!.client.migrate({ vm: 'cpu1', destination: 'host-b' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(MotusError);
    const e = err as MotusError;
    expect(e.code).to.equal('MOTUS_E_MIGRATION_VETOED');
    const veto = e.data['veto'] as Veto;
    expect(veto.code).to.equal('MOTUS_E_CPU_INCOMPATIBLE');
    expect(veto.data?.['missing']).to.deep.equal(expectedMissing);
    expect(e.message).to.contain('host host-b lacks').and.contain('VM cpu1').and.contain('avx');
    for (const f of expectedMissing) expect(e.message).to.contain(f);
    console.log(`      veto: ${e.message}`);
    const cli = await site!.cli('migrate', 'cpu1', '--to', 'host-b');
    expect(cli.code).to.not.equal(0);
    expect(cli.stderr).to.contain('MOTUS_E_MIGRATION_VETOED').and.contain('avx');
    expect(await qemuPidsOf('cpu1')).to.deep.equal([pid]);
    vm = await vmInfo(site!, 'cpu1');
    expect([vm.host, vm.state]).to.deep.equal(['host-a', 'running']);

    // The dry runs say the same before anything is asked for: per VM and host, and for the whole cluster.
    const dry = await site!.cli('cpu', 'check', 'cpu1', '--to', 'host-b', '--json');
    expect(dry.code, dry.stderr).to.equal(4);
    const check = JSON.parse(dry.stdout) as CpuCheck;
    expect(check).to.deep.include({ vm: 'cpu1', host: 'host-b', compatible: false, code: 'MOTUS_E_CPU_INCOMPATIBLE', missing: expectedMissing });
    expect((await site!.cli('cpu', 'check', 'cpu1', '--to', 'host-a')).code).to.equal(0);
    const matrix = JSON.parse((await site!.cli('cpu', 'matrix', '--json')).stdout) as CpuMatrix;
    expect(matrix.hosts).to.deep.equal(['host-a', 'host-b']);
    const row = matrix.rows.find((r) => r.vm === 'cpu1')!;
    expect(row).to.deep.include({ runsOn: 'host-a', allowed: ['host-a'] });
    expect(row.refused.map((r) => [r.host, r.missing])).to.deep.equal([['host-b', expectedMissing]]);
    console.log(`      motus cpu matrix:\n${(await site!.cli('cpu', 'matrix')).stdout.replace(/^/gm, '        ').split('\n').slice(0, 3).join('\n')}`);
  });

  it('restarts the VM on the cluster baseline with a mask (recorded at creation): the dry run agrees, it migrates for real and keeps the same CPU', async () => {
    await site!.client.stopVm('cpu1');
    await waitFor('cpu1 QEMU to end', async () => ((await qemuPidsOf('cpu1')).length === 0 ? true : undefined), 60_000, 250);
    const baseline = JSON.parse((await site!.cli('cpu', 'baseline', '--json')).stdout) as { cpu: string; features: string[] };
    const base = parseCpuString(baseline.cpu);
    const inBaseline = models.features(base);
    // A feature the guest kernel does without (never apic or the like).
    const hide = ['aes', 'popcnt', 'sse4.2', 'cx16', 'lahf-lm', 'sse3'].find((f) => inBaseline.has(f)) ?? [...inBaseline].sort()[0]!;
    const kit = guestKit();
    const started = await site!.cli('vm', 'start', 'cpu1', '--host', 'host-a', '--memory', '256', '--cpu-hide', hide, '--kernel', kit.kernel, '--initrd', kit.initrd!, '--append', kit.cmdline());
    expect(started.code, started.stderr).to.equal(0);
    const lowered = formatCpuString({ model: base.model, enable: base.enable.filter((f) => f !== hide), disable: [...base.disable, hide] });
    let vm = await vmInfo(site!, 'cpu1');
    expect(vm.spec.cpuModel, 'the effective CPU is recorded with the VM').to.equal(lowered);
    expect(vm.spec.cpuMask).to.deep.equal({ hide: [hide] });
    const [first] = await qemuPidsOf('cpu1');
    const startedWith = readFileSync(`/proc/${first}/cmdline`, 'utf8').split('\0');
    expect(parseCpuString(startedWith[startedWith.indexOf('-cpu') + 1]!)).to.deep.equal(parseCpuString(lowered));
    expect((await site!.cli('cpu', 'check', 'cpu1', '--to', 'host-b')).code).to.equal(0);
    await waitFor('3 heartbeats of cpu1', () => (beats(vm).length >= 3 ? true : undefined), 120_000, 250);
    const sourceLog = vm.serialLog!;
    // Through the real CLI against the real daemon: the migration is recorded as the token's user.
    const moved = await site!.cli('migrate', 'cpu1', '--to', 'host-b', '--json');
    expect(moved.code, moved.stderr).to.equal(0);
    const events = moved.stdout.trim().split('\n').map((line) => JSON.parse(line) as MigrationEvent);
    expect((events[0] as Extract<MigrationEvent, { type: 'requested' }>).requestedBy).to.equal('admin');
    const last = events.at(-1)!;
    expect(last.type, JSON.stringify(events.filter((e) => e.type !== 'progress'))).to.equal('completed');
    vm = await vmInfo(site!, 'cpu1');
    expect([vm.host, vm.state, vm.spec.cpuModel]).to.deep.equal(['host-b', 'running', lowered]);
    const pids = await qemuPidsOf('cpu1');
    expect(pids).to.have.length(1);
    expect(alive(pids[0]!)).to.equal(true);
    const cmdline = readFileSync(`/proc/${pids[0]}/cmdline`, 'utf8').split('\0');
    const cpuArg = cmdline[cmdline.indexOf('-cpu') + 1]!;
    expect(parseCpuString(cpuArg)).to.deep.equal(parseCpuString(lowered));
    const before = parseHeartbeats(readFileSync(sourceLog, 'utf8')).at(-1)!;
    const after = await waitFor('heartbeats on host-b', () => {
      const b = beats(vm);
      return b.length >= 2 ? b : undefined;
    }, 60_000, 250);
    expect(after.at(-1)!.boot).to.equal(before.boot);
    expect(after.at(-1)!.seq).to.be.greaterThan(before.seq);
    const completed = last as Extract<MigrationEvent, { type: 'completed' }>;
    console.log(`      migrated with -cpu ${lowered}: downtime ${completed.downtimeMs} ms, total ${completed.totalTimeMs} ms; heartbeat ${before.seq} -> ${after.at(-1)!.seq}`);
  });
});
