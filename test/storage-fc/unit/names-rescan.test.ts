/**
 * The names Linux gives FC objects (port WWNs, LUN identities, LUN numbers in
 * the kernel's, SAM's and udev's forms) and rescans that write the fixture's
 * scan files.
 */
import { expect } from 'chai';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { byPathLun, diskPath, linuxLunOf, locateDisk, normalizeLunWwn, parseByPath, parsePortWwn, parseSysfsWwid, rescanFcHosts, samLunOf, wwnOfDiskPath, FcPluginConfigSchema } from '@motus/storage-fc';
import { tempDir } from '../../support/index.js';
import { buildFcHost, byPathLunSuffix, linuxLun, loadFixture } from '../support/fc-fixture.js';

describe('storage-fc names', () => {
  it('port WWNs: sysfs form, colons, garbage and zero', () => {
    expect(parsePortWwn('0x500A098100000001\n')).to.deep.equal({ ok: true, value: '0x500a098100000001' });
    expect(parsePortWwn('50:0a:09:81:00:00:00:01')).to.deep.equal({ ok: true, value: '0x500a098100000001' });
    expect(parsePortWwn('0x500a0981')).to.deep.include({ ok: false });
    expect(parsePortWwn('0x0000000000000000')).to.deep.include({ ok: false });
  });

  it('LUN identities: sysfs wwid naa./eui./t10., every WWN spelling a site file may use', () => {
    expect(parseSysfsWwid('naa.600A0980383030454F2B4D6C6E6F7001')).to.deep.equal({ ok: true, value: { wwid: '3600a0980383030454f2b4d6c6e6f7001', wwn: '0x600a0980383030454f2b4d6c6e6f7001' } });
    expect(parseSysfsWwid('naa.5000c500a1b2c3d4')).to.deep.equal({ ok: true, value: { wwid: '35000c500a1b2c3d4', wwn: '0x5000c500a1b2c3d4' } });
    expect(parseSysfsWwid('eui.0025385b71b0a1c2')).to.deep.equal({ ok: true, value: { wwid: '20025385b71b0a1c2' } });
    expect(parseSysfsWwid('t10.ATA     QEMU HARDDISK')).to.deep.equal({ ok: true, value: { wwid: '1ATA_QEMU_HARDDISK' } });
    expect(parseSysfsWwid('naa.6001')).to.deep.include({ ok: false });
    expect(parseSysfsWwid('naa.5000c500a1b2c3d4e5f6a7b8c9d0e1f2')).to.deep.include({ ok: false });
    for (const spelling of ['0x600a0980383030454f2b4d6c6e6f7001', 'naa.600a0980383030454f2b4d6c6e6f7001', 'wwn-0x600a0980383030454f2b4d6c6e6f7001', '3600a0980383030454f2b4d6c6e6f7001']) {
      expect(normalizeLunWwn(spelling), spelling).to.deep.equal({ ok: true, value: '0x600a0980383030454f2b4d6c6e6f7001' });
    }
    expect(normalizeLunWwn('0x600a09')).to.deep.include({ ok: false });
    expect(normalizeLunWwn('/dev/sdb')).to.deep.include({ ok: false });
  });

  it('LUN numbers: kernel integer ↔ SAM LUN (the SDK decodes it) ↔ udev by-path, below and above 256', () => {
    for (const lun of [0, 1, 255, 256, 300, 1023, 16383]) {
      const kernel = linuxLunOf(lun);
      expect(kernel, `LUN ${lun}`).to.equal(linuxLun(lun));
      expect(samLunOf(kernel).lun).to.equal(lun);
      expect(samLunOf(kernel).addressMethod).to.equal(lun < 256 ? 'peripheral' : 'flat');
      const suffix = byPathLun(kernel);
      expect(suffix).to.equal(byPathLunSuffix(kernel));
      expect(parseByPath(`pci-0000:3b:00.0-fc-0x500a098100000001-${suffix}`)).to.deep.equal({ bus: 'pci-0000:3b:00.0', targetWwpn: '0x500a098100000001', linuxLun: kernel });
    }
    expect(linuxLunOf(256)).to.equal(0x4100);
    expect(byPathLun(0x4100)).to.equal('lun-0x4100000000000000');
    expect(parseByPath('pci-0000:3b:00.0-fc-0x500a098100000001-lun-1-part1')).to.equal(undefined);
    expect(parseByPath('pci-0000:3b:00.0-fc-0x500a098100000001-lun-300')).to.equal(undefined);
    expect(parseByPath('pci-0000:00:1f.2-ata-1')).to.equal(undefined);
  });

  it('VM disks are named by WWN in udev by-id form and belong to the datastore listing the LUN', () => {
    const config = FcPluginConfigSchema.parse({ datastores: [{ name: 'fcds1', luns: ['naa.600a0980383030454f2b4d6c6e6f7001'] }] });
    expect(config.datastores[0]!.luns).to.deep.equal(['0x600a0980383030454f2b4d6c6e6f7001']);
    const path = diskPath('3600a0980383030454f2b4d6c6e6f7001');
    expect(path).to.equal('/dev/disk/by-id/wwn-0x600a0980383030454f2b4d6c6e6f7001');
    expect(wwnOfDiskPath('/dev/disk/by-id/dm-uuid-mpath-3600a0980383030454f2b4d6c6e6f7001')).to.equal('0x600a0980383030454f2b4d6c6e6f7001');
    expect(locateDisk(config.datastores, path)).to.deep.equal({ datastore: 'fcds1', wwn: '0x600a0980383030454f2b4d6c6e6f7001' });
    expect(locateDisk(config.datastores, diskPath('0x600a0980383030454f2b4d6c6e6f7002'))).to.equal(undefined);
    expect(locateDisk(config.datastores, '/var/lib/images/vm1.raw')).to.equal(undefined);
  });

  it('the site file slice refuses a bad WWN and a LUN in two datastores, naming the field', () => {
    const bad = FcPluginConfigSchema.safeParse({ datastores: [{ name: 'a', luns: ['0x1234'] }] });
    expect(bad.success).to.equal(false);
    expect(JSON.stringify(bad.error!.issues[0]!.path)).to.equal('["datastores",0,"luns",0]');
    const twice = FcPluginConfigSchema.safeParse({ datastores: [{ name: 'a', luns: ['0x600a0980383030454f2b4d6c6e6f7001'] }, { name: 'b', luns: ['naa.600a0980383030454f2b4d6c6e6f7001'] }] });
    expect(twice.success).to.equal(false);
    expect(twice.error!.issues[0]!.message).to.include('in datastores a and b');
  });
});

describe('storage-fc rescans', () => {
  let dir: { path: string; remove: () => void };
  before(() => (dir = tempDir('fc-rescan')));
  after(() => dir.remove());

  it('writes "- - -" to the scan file of every FC HBA\'s SCSI host', async () => {
    const h = buildFcHost(join(dir.path, 'a'), loadFixture('host-a'));
    const results = await rescanFcHosts(h.sys);
    expect(results.map((r) => [r.host, r.ok])).to.deep.equal([['host3', true], ['host4', true]]);
    expect(readFileSync(h.scanFile(3), 'latin1')).to.equal('- - -\n');
    expect(readFileSync(h.scanFile(4), 'latin1')).to.equal('- - -\n');
  });

  it('names the hosts whose scan file is missing or that are not SCSI hosts, and creates nothing', async () => {
    const h = buildFcHost(join(dir.path, 'b'), loadFixture('host-b'));
    rmSync(h.scanFile(2));
    const results = await rescanFcHosts(h.sys, { hosts: ['host1', 'host2', 'host9', '../etc'] });
    expect(results.map((r) => [r.host, r.ok, r.reason])).to.deep.equal([
      ['host1', true, undefined],
      ['host2', false, 'no scan file (not a SCSI host)'],
      ['host9', false, 'no scan file (not a SCSI host)'],
      ['../etc', false, "'../etc' is not a SCSI host name"],
    ]);
    expect(existsSync(h.scanFile(2))).to.equal(false);
  });
});
