/**
 * Discovery and multipath grouping against fixture trees of two FC hosts
 * (fixtures/host-a.json, host-b.json, built by support/fc-fixture.ts as the
 * kernel and udev lay them out): two HBAs on two fabrics, four paths per LUN,
 * a Blocked remote port, a LUN mapped to one host only, LUNs 256 and 300 in
 * flat space addressing, multipath maps and a LUN without one.
 */
import { expect } from 'chai';
import { join } from 'node:path';
import { discoverFc, type FcInventory, type FcLun } from '@motus/storage-fc';
import { tempDir } from '../../support/index.js';
import { buildFcHost, loadFixture, type BuiltHost } from '../support/fc-fixture.js';

const W = (suffix: string) => `0x600a0980383030454f2b4d6c6e6f${suffix}`;

describe('storage-fc discovery on fixture hosts', () => {
  let dir: { path: string; remove: () => void };
  let a: BuiltHost;
  let b: BuiltHost;
  let invA: FcInventory;
  let invB: FcInventory;
  const lunOf = (inv: FcInventory, wwn: string): FcLun => {
    const lun = inv.luns.find((l) => l.wwn === wwn);
    if (!lun) throw new Error(`no LUN ${wwn} in ${inv.luns.map((l) => l.wwn).join(', ')}`);
    return lun;
  };

  before(async () => {
    dir = tempDir('fc-fixture');
    a = buildFcHost(join(dir.path, 'host-a'), loadFixture('host-a'));
    b = buildFcHost(join(dir.path, 'host-b'), loadFixture('host-b'));
    invA = await discoverFc({ sys: a.sys, dev: a.dev });
    invB = await discoverFc({ sys: b.sys, dev: b.dev });
  });
  after(() => dir.remove());

  it('reads both HBAs: port names, state, speed, fabric (two fabrics)', () => {
    expect(invA.problems).to.deep.equal([]);
    expect(invA.hbas.map((h) => [h.name, h.wwpn, h.portState, h.speedGbit, h.fabricName, h.usable])).to.deep.equal([
      ['host3', '0x2100f4e9d4000a01', 'Online', 16, '0x100000051e000a01', true],
      ['host4', '0x2100f4e9d4000a02', 'Online', 32, '0x100000051e000b01', true],
    ]);
  });

  it('reads the remote ports; the Blocked one is unusable with the reason', () => {
    expect(invA.remotePorts).to.have.length(4);
    const blocked = invA.remotePorts.filter((r) => !r.usable);
    expect(blocked.map((r) => [r.name, r.wwpn, r.portState])).to.deep.equal([['rport-4:0-1', '0x500a098200000002', 'Blocked']]);
    expect(blocked[0]!.reason).to.include('rport-4:0-1').and.include('Blocked');
    expect(invA.remotePorts.filter((r) => r.usable).every((r) => r.roles.includes('FCP Target') && r.scsiTargetId !== undefined)).to.equal(true);
  });

  it('groups four paths per LUN by WWID; the path over the Blocked port is failed', () => {
    expect(invA.luns.map((l) => l.lunNumbers[0])).to.deep.equal([1, 2, 5, 256, 300]);
    for (const lun of invA.luns) {
      expect(lun.paths, lun.wwn).to.have.length(4);
      expect([lun.activePaths, lun.failedPaths], lun.wwn).to.deep.equal([3, 1]);
      const failed = lun.paths.find((p) => p.state === 'failed')!;
      expect(failed.hba).to.equal('host4');
      expect(failed.targetWwpn).to.equal('0x500a098200000002');
      expect(failed.reason).to.include('Blocked');
      expect(lun.usable).to.equal(true);
      expect(new Set(lun.paths.map((p) => p.hba))).to.deep.equal(new Set(['host3', 'host4']));
    }
    expect(invB.luns.every((l) => l.activePaths === 4 && l.failedPaths === 0)).to.equal(true);
  });

  it('prefers the dm-multipath map, found from the paths\' holders', () => {
    const lun1 = lunOf(invA, W('7001'));
    expect(lun1.wwid).to.equal('3600a0980383030454f2b4d6c6e6f7001');
    expect(lun1.multipath).to.deep.include({ name: 'mpatha', uuid: 'mpath-3600a0980383030454f2b4d6c6e6f7001' });
    expect(lun1.device).to.equal(join(a.dev, 'disk', 'by-id', 'dm-uuid-mpath-3600a0980383030454f2b4d6c6e6f7001'));
    expect(lun1.paths.every((p) => p.holder === lun1.multipath!.dm)).to.equal(true);
    expect(lun1.sizeBytes).to.equal(64 << 20);
    expect(lun1.vendor).to.equal('NETAPP');
    expect(lun1.linkSpeedGbit).to.equal(32);
  });

  it('without a map, opens an active path (not the failed one udev\'s wwn link names)', () => {
    const lun300 = lunOf(invA, W('712c'));
    expect(lun300.multipath).to.equal(undefined);
    const active = lun300.paths.filter((p) => p.state === 'active').map((p) => p.devicePath);
    expect(active).to.include(lun300.device);
    const failed = lun300.paths.find((p) => p.state === 'failed')!;
    expect(lun300.device).to.not.equal(failed.devicePath);
    // On host-b every path is active, so udev's wwn-0x… link is the one to open.
    expect(lunOf(invB, W('712c')).device).to.equal(join(b.dev, 'disk', 'by-id', `wwn-${W('712c')}`));
  });

  it('shows LUNs ≥ 256 in the extended forms: kernel LUN 0x4100, by-path lun-0x4100000000000000', () => {
    const lun256 = lunOf(invA, W('7100'));
    expect(lun256.lunNumbers).to.deep.equal([256]);
    for (const p of lun256.paths) {
      expect(p.linuxLun).to.equal(0x4100);
      expect(p.lunAddressing).to.equal('flat');
      expect(p.hctl).to.match(/:16640$/);
    }
    expect(lun256.paths.filter((p) => p.state === 'active').every((p) => p.byPath?.endsWith('-lun-0x4100000000000000'))).to.equal(true);
    const lun300 = lunOf(invA, W('712c'));
    expect(lun300.paths[0]!.linuxLun).to.equal(0x412c);
    expect(lun300.paths[0]!.byPath).to.match(/-fc-0x500a0981000000\d\d-lun-0x412c000000000000$/);
    expect(lunOf(invA, W('7001')).paths[0]!.byPath).to.equal('pci-0000:3b:00.0-fc-0x500a098100000001-lun-1');
  });

  it('LUN 5 is seen by host-a only', () => {
    expect(lunOf(invA, W('7005')).usable).to.equal(true);
    expect(invB.luns.find((l) => l.wwn === W('7005'))).to.equal(undefined);
    expect(invB.luns).to.have.length(4);
  });

  it('ignores SCSI devices that are not below an FC host', async () => {
    const dir2 = tempDir('fc-local');
    try {
      const h = buildFcHost(dir2.path, loadFixture('host-b'));
      // A local SATA disk: host0, no fc_host.
      const { TreeWriter } = await import('../support/fc-fixture.js');
      const w = new TreeWriter(dir2.path);
      w.file('sys/devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/state', 'running\n');
      w.file('sys/devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/wwid', 'naa.5000c500a1b2c3d4\n');
      w.link('sys/class/scsi_device/0:0:0:0', 'sys/devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0');
      const inv = await discoverFc({ sys: h.sys, dev: h.dev });
      expect(inv.luns).to.have.length(4);
      expect(inv.luns.flatMap((l) => l.paths).some((p) => p.hctl === '0:0:0:0')).to.equal(false);
    } finally {
      dir2.remove();
    }
  });
});
