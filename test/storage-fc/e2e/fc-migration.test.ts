/**
 * A guest whose disk is an FC LUN, named by its WWN, migrates host-a → host-b
 * on an all-in-one site (hv-qemu + storage-fc) while it writes numbered durable
 * records. Each host's agent reads its own fixture FC tree (fixtures/host-a.json,
 * host-b.json: two HBAs, four paths per LUN, a Blocked port on host-a, LUN 5 on
 * host-a only); in both trees the multipath map and path nodes of LUN 1 are
 * block device nodes of one loop device over a file image — the shared "LUN".
 * No FC HBA exists here, and a loop device takes no SCSI commands, so the site
 * runs with `reservations: if-supported` and the leases say they are not
 * enforced (the reservations themselves are tested against tgt in the
 * integration tier). What this proves: WWN → each host's own multipath device →
 * QEMU's host_device driver on both ends of a live migration, the facts, and the
 * validate veto naming LUN and host.
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MotusError, type MigrationEvent } from '@motus/sdk';
import { diskPath, type FcHostFacts } from '@motus/storage-fc';
import { requireCommand, tempDir, waitFor } from '../../support/index.js';
import { pluginFactsByHost, qemuPidsOf, startSite, type TestSite } from '../../support/site.js';
import { DISK_RECORD_BYTES, acknowledgedSeqs, diskRecordProblem, diskWriterSiteYaml, diskWriterSpec, migrateAndFollow, vmInfoOf } from '../../support/disk-writer-guest.js';
import { buildFcHost, loadFixture, type BuiltHost } from '../support/fc-fixture.js';
import { attachLoop, type LoopDevice } from '../support/loop-device.js';

const PLUGIN = '@motus/storage-fc';
const LUN1 = '0x600a0980383030454f2b4d6c6e6f7001';
const LUN5 = '0x600a0980383030454f2b4d6c6e6f7005';

function argvOf(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0');
}

describe('FC datastore: a writing guest on a WWN-named LUN migrates host-a → host-b (all-in-one site, QEMU, fixture FC hosts, loop device)', function () {
  this.timeout(900_000);
  let dir: { path: string; remove: () => void };
  let lun1: LoopDevice;
  let lun5: LoopDevice;
  const trees = new Map<string, BuiltHost>();
  let site: TestSite | undefined;
  const serialLogs: string[] = [];
  const hostsFacts = () => pluginFactsByHost<FcHostFacts>(site!.client, PLUGIN);
  const mapOf = (host: string) => join(dir.path, host, 'dev', 'disk', 'by-id', `dm-uuid-mpath-3${LUN1.slice(2)}`);

  before(async () => {
    requireCommand('qemu-system-x86_64', 'qemu-system-x86');
    requireCommand('setpriv', 'util-linux');
    dir = tempDir('fc-e2e');
    lun1 = attachLoop(join(dir.path, 'lun1.img'), 32);
    lun5 = attachLoop(join(dir.path, 'lun5.img'), 16);
    for (const host of ['host-a', 'host-b']) {
      const spec = loadFixture(host);
      for (const lun of spec.luns) {
        if (lun.wwn === LUN1) lun.node = { major: lun1.major, minor: lun1.minor };
        if (lun.wwn === LUN5) lun.node = { major: lun5.major, minor: lun5.minor };
      }
      trees.set(host, buildFcHost(join(dir.path, host), spec));
    }
    site = await startSite(diskWriterSiteYaml('fc-e2e', `
  - package: '@motus/hv-qemu'
  - package: '${PLUGIN}'
    config:
      datastores:
        - name: fcds1
          luns: ['${LUN1}']
        # LUN 5 is zoned to host-a only. (A host meant to see a datastore that misses one of its
        # LUNs reports it not accessible, which the placement health signals take for a storage
        # path failure: such a host is degraded and takes no migrations at all.)
        - name: fcds2
          luns: ['${LUN5}']
          hosts: [host-a]
      sysRoot: '${dir.path}/{host}/sys'
      devRoot: '${dir.path}/{host}/dev'
      # A loop device takes no SCSI commands: run unprotected, and say so in the leases.
      reservations: if-supported
      factsRefreshMs: 1000
`) + `placement:
  # Two cores shared with other test runs: missed heartbeats and CPU load are not what this test is about.
  health:
    missedHeartbeats: 0
    overloadCpu: 4
    onDegraded: report
`);
  });

  after(async () => {
    await site?.stop();
    lun1?.detach();
    lun5?.detach();
    dir?.remove();
  });

  it('each host reports its HBAs, the LUN over its paths at its link speed, its own multipath device; host-b does not see LUN 5', async () => {
    const facts = await waitFor('FC facts of host-a and host-b', async () => {
      const f = await hostsFacts();
      return f.get('host-a')?.luns.length && f.get('host-b')?.luns.length ? f : undefined;
    }, 60_000, 250);
    const a = facts.get('host-a')!;
    const b = facts.get('host-b')!;
    expect(a.hbas.map((h) => [h.name, h.portState, h.speedGbit])).to.deep.equal([['host3', 'Online', 16], ['host4', 'Online', 32]]);
    const a1 = a.luns.find((l) => l.wwn === LUN1)!;
    const b1 = b.luns.find((l) => l.wwn === LUN1)!;
    expect(a1).to.deep.include({ datastore: 'fcds1', usable: true, activePaths: 3, failedPaths: 1, device: mapOf('host-a'), lunNumbers: [1], linkSpeedGbit: 32 });
    expect(b1).to.deep.include({ datastore: 'fcds1', usable: true, activePaths: 4, failedPaths: 0, device: mapOf('host-b'), lunNumbers: [1], linkSpeedGbit: 16 });
    expect(a1.paths.find((p) => p.state === 'failed')!.reason).to.include('Blocked');
    expect(a.luns.find((l) => l.wwn === LUN5)?.usable).to.equal(true);
    expect(b.luns.find((l) => l.wwn === LUN5)).to.equal(undefined);
    expect(b.datastores.map((d) => [d.name, d.accessible])).to.deep.equal([['fcds1', true]]);
    expect(b.notVisible).to.deep.equal(['fcds2']);
    expect(facts.get('host-c')!.problems[0]).to.include('no FC HBAs');
  });

  it('starts the guest on host-a: QEMU opens host-a\'s multipath map with host_device; the lease says it is not enforced', async () => {
    await site!.client.startVm(diskWriterSpec(diskPath(LUN1)), 'host-a');
    const vm = await vmInfoOf(site!.client, 'vm1');
    serialLogs.push(vm.serialLog!);
    expect(argvOf(vm.pid!).join(' ')).to.include(`driver=host_device,node-name=proto-0,filename=${mapOf('host-a')}`);
    expect(vm.spec.disks![0]!.path, 'the spec keeps the site-wide name').to.equal(diskPath(LUN1));
    await waitFor('20 acknowledged disk records', () => (acknowledgedSeqs(serialLogs).length >= 20 ? true : undefined), 180_000, 250);
    const lease = (await hostsFacts()).get('host-a')!.leases[0]!;
    expect(lease).to.include({ vm: 'vm1', disk: 'disk0', wwn: LUN1, enforced: false, device: mapOf('host-a') });
    expect(lease.unenforcedReason).to.include('takes no SCSI pass-through commands');
    expect(lease.paths).to.have.length(3);
  });

  it('vetoes moving a VM on LUN 5 (zoned to host-a only) to host-b, naming the LUN and the host', async () => {
    await site!.client.startVm({ name: 'vm5', memoryMiB: 32, vcpus: 1, boot: { kind: 'disk' }, disks: [{ id: 'data', path: diskPath(LUN5), format: 'raw' }] }, 'host-a');
    const err = await site!.client.migrate({ vm: 'vm5', destination: 'host-b' }).then(() => undefined, (e: unknown) => e);
    expect(err).to.be.instanceOf(MotusError);
    expect((err as MotusError).code).to.equal('MOTUS_E_MIGRATION_VETOED');
    expect((err as MotusError).message).to.include('host host-b does not see').and.include(LUN5).and.include('(LUN 5)').and.include("not among the datastore's hosts");
    console.log(`      veto: ${(err as MotusError).message}`);
    expect((await vmInfoOf(site!.client, 'vm5')).host).to.equal('host-a');
    await site!.client.stopVm('vm5');
  });

  it('migrates host-a → host-b while the guest writes; host-b\'s QEMU opens host-b\'s own multipath map', async () => {
    const before = acknowledgedSeqs(serialLogs).length;
    const events: MigrationEvent[] = await migrateAndFollow(site!.client, 'vm1', 'host-b');
    const last = events.at(-1)!;
    expect(last.type, JSON.stringify(events.filter((e) => e.type !== 'progress'))).to.equal('completed');
    const completed = last as Extract<MigrationEvent, { type: 'completed' }>;
    const vm = await vmInfoOf(site!.client, 'vm1');
    expect([vm.host, vm.state]).to.deep.equal(['host-b', 'running']);
    serialLogs.push(vm.serialLog!);
    await waitFor('the source QEMU to end', async () => ((await qemuPidsOf('vm1')).join() === String(vm.pid) ? true : undefined), 20_000, 100);
    expect(argvOf(vm.pid!).join(' ')).to.include(`driver=host_device,node-name=proto-0,filename=${mapOf('host-b')}`);
    const facts = await waitFor('the lease on host-b', async () => {
      const f = await hostsFacts();
      return f.get('host-b')?.leases.length === 1 && f.get('host-a')?.leases.length === 0 ? f : undefined;
    }, 15_000, 250);
    expect(facts.get('host-b')!.leases[0]).to.include({ vm: 'vm1', wwn: LUN1, device: mapOf('host-b') });
    expect(facts.get('host-b')!.leases[0]!.paths).to.have.length(4);
    await waitFor('the guest to go on writing on host-b', () => (acknowledgedSeqs(serialLogs).length >= before + 40 ? true : undefined), 180_000, 250);
    console.log(`      host-a → host-b: downtime ${completed.downtimeMs} ms, total ${completed.totalTimeMs} ms`);
  });

  it('has every acknowledged record in the image behind both hosts\' "LUN"', async () => {
    await site!.client.stopVm('vm1');
    await waitFor('vm1 to end', async () => ((await qemuPidsOf('vm1')).length === 0 ? true : undefined), 20_000);
    const acks = acknowledgedSeqs(serialLogs);
    expect(acks.length).to.be.greaterThan(60);
    acks.forEach((seq, i) => expect(seq, 'acknowledged in order, none skipped').to.equal(i + 1));
    lun1.detach();
    const image = readFileSync(lun1.image);
    const problems = acks.flatMap((seq) => diskRecordProblem(image.subarray(seq * DISK_RECORD_BYTES, (seq + 1) * DISK_RECORD_BYTES), seq) ?? []);
    expect(problems).to.deep.equal([]);
    console.log(`      ${acks.length} acknowledged records verified in the image`);
  });
});
