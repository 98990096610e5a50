/**
 * The real sg_persist (Debian sg3-utils) from the plugin: on a device that is
 * not SCSI — a loop device standing for a LUN, reached through the fixture's
 * multipath map node — it fails in SG_IO, which the plugin reports as
 * MOTUS_E_FC_NOT_SCSI; `reservations: required` then refuses the LUN and
 * `if-supported` uses it unprotected and says so. A missing binary says what
 * to install. (No FC target exists here; the reservation commands themselves
 * are tested against tgt in reservations.test.ts.)
 */
import { expect } from 'chai';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { MotusError, type DiskSpec, type Logger } from '@motus/sdk';
import { FcPluginConfigSchema, FcStorageProvider, SgPersistDevice, diskPath } from '@motus/storage-fc';
import { requireCommand, tempDir } from '../../support/index.js';
import { buildFcHost, loadFixture } from '../support/fc-fixture.js';
import { attachLoop, type LoopDevice } from '../support/loop-device.js';

const WWN = '0x600a0980383030454f2b4d6c6e6f7001';
const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => quiet };

describe('storage-fc with the real sg_persist on a loop device', function () {
  this.timeout(60_000);
  let dir: { path: string; remove: () => void };
  let loop: LoopDevice;
  const disk: DiskSpec = { id: 'disk0', path: diskPath(WWN), format: 'raw' };
  const provider = async (reservations: 'required' | 'if-supported', sgPersist = 'sg_persist') => {
    const p = new FcStorageProvider({
      host: 'host-b',
      config: FcPluginConfigSchema.parse({ datastores: [{ name: 'fcds1', luns: [WWN] }], sysRoot: join(dir.path, '{host}', 'sys'), devRoot: join(dir.path, '{host}', 'dev'), reservations, sgPersist }),
      logger: quiet,
    });
    await p.start();
    return p;
  };

  before(() => {
    requireCommand('sg_persist', 'sg3-utils');
    dir = tempDir('fc-sg');
    loop = attachLoop(join(dir.path, 'lun1.img'), 16);
    const spec = loadFixture('host-b');
    spec.luns.find((l) => l.wwn === WWN)!.node = { major: loop.major, minor: loop.minor };
    buildFcHost(join(dir.path, 'host-b'), spec);
  });
  after(() => {
    loop?.detach();
    dir?.remove();
  });

  it('sg_persist on the loop device fails in SCSI pass-through: MOTUS_E_FC_NOT_SCSI naming the device', async () => {
    const err = await new SgPersistDevice(loop.device).readKeys().catch((e: unknown) => e);
    expect(err).to.be.instanceOf(MotusError);
    expect((err as MotusError).code).to.equal('MOTUS_E_FC_NOT_SCSI');
    expect((err as MotusError).message).to.include(loop.device);
    console.log(`      ${(err as MotusError).message}`);
  });

  it('reservations: required — the LUN whose paths are not SCSI is refused', async () => {
    const p = await provider('required');
    try {
      expect(statSync(await p.localPath(disk)).isBlockDevice()).to.equal(true);
      const err = await p.acquire('vm1', [disk]).catch((e: unknown) => e);
      expect((err as MotusError).code).to.equal('MOTUS_E_FC_NOT_SCSI');
      expect(p.facts().leases).to.deep.equal([]);
      expect(p.facts().luns.find((l) => l.wwn === WWN)!.keysError).to.include('takes no SCSI pass-through commands');
    } finally {
      await p.close();
    }
  });

  it('reservations: if-supported — used without a reservation, and the lease says why', async () => {
    const p = await provider('if-supported');
    try {
      await p.acquire('vm1', [disk]);
      const lease = p.facts().leases[0]!;
      expect(lease).to.include({ vm: 'vm1', wwn: WWN, enforced: false });
      expect(lease.unenforcedReason).to.include('takes no SCSI pass-through commands');
      expect(lease.device).to.equal(join(dir.path, 'host-b', 'dev', 'disk', 'by-id', 'dm-uuid-mpath-3600a0980383030454f2b4d6c6e6f7001'));
      await p.release('vm1', [disk]);
      expect(p.facts().leases).to.deep.equal([]);
    } finally {
      await p.close();
    }
  });

  it('a missing sg_persist is MOTUS_E_FC_SG_PERSIST saying what to install', async () => {
    const p = await provider('required', join(dir.path, 'no-such-sg_persist'));
    try {
      const err = await p.acquire('vm1', [disk]).catch((e: unknown) => e);
      expect((err as MotusError).code).to.equal('MOTUS_E_FC_SG_PERSIST');
      expect((err as MotusError).message).to.include('sg3-utils');
    } finally {
      await p.close();
    }
  });
});
