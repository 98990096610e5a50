import { expect } from 'chai';
import { statfsSync, statSync, mkdirSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { NasDatastore } from '@motus/storage-nas';
import { startGanesha, libnfs, type GaneshaServer } from '../support/ganesha.js';
import { freePort } from '../../support/index.js';

describe('storage-nas NAS datastore against nfs-ganesha', function () {
  this.timeout(60000);
  let server: GaneshaServer;
  let ds: NasDatastore;

  before(async () => {
    server = await startGanesha();
    ds = new NasDatastore({ name: 'nas1', url: `nfs://127.0.0.1:${server.nfsPort}${server.exportPath}?mountport=${server.mountPort}`, uid: 0, gid: 0, timeoutMs: 5000 });
  });

  after(async () => {
    await ds?.close();
    await server?.stop();
  });

  it('reports capacity and free space from FSSTAT, as the server file system has them', async () => {
    const info = await ds.info();
    const local = statfsSync(server.dir);
    expect(info).to.include({ name: 'nas1', kind: 'nas', accessible: true });
    expect(info.capacityBytes).to.equal(local.blocks * local.bsize);
    expect(info.freeBytes).to.be.closeTo(local.bavail * local.bsize, 256 * 1024 * 1024);
    expect(info.error).to.equal(undefined);
  });

  it('creates VM folders and sparse disk images, lists them, and refuses duplicates', async () => {
    await ds.createVmFolder('vm-a');
    await ds.createVmFolder('vm-b');
    mkdirSync(join(server.dir, '.motus'));
    const created = await ds.createDiskImage('vm-a', 'disk0.img', 1024 ** 3);
    expect(created).to.deep.equal({ name: 'disk0.img', path: 'vm-a/disk0.img', sizeBytes: 1024 ** 3 });
    const local = statSync(join(server.dir, 'vm-a/disk0.img'));
    expect(local.size).to.equal(1024 ** 3);
    // Sparse: a gibibyte image takes (almost) no blocks on the server.
    expect(local.blocks * 512).to.be.lessThan(1024 * 1024);
    expect(await ds.listVms()).to.deep.equal(['vm-a', 'vm-b']);
    expect(await ds.listDisks('vm-a')).to.deep.equal([created]);
    const again = await ds.createVmFolder('vm-a').then(() => undefined, (e: unknown) => e as { code: string });
    expect(again?.code).to.equal('MOTUS_E_NFS_EXISTS');
    const disk = await ds.createDiskImage('vm-a', 'disk0.img', 4096).then(() => undefined, (e: unknown) => e as { code: string });
    expect(disk?.code).to.equal('MOTUS_E_NFS_EXISTS');
    const noVm = await ds.createDiskImage('vm-z', 'disk0.img', 4096).then(() => undefined, (e: unknown) => e as { code: string; message: string });
    expect(noVm?.code).to.equal('MOTUS_E_NFS_NOT_FOUND');
    expect(libnfs('nfs-ls', [server.url('vm-a')])).to.contain('1073741824');
  });

  it('checks reachability: reachable here, not writable for another user on a read-only folder, unreachable when nothing listens', async () => {
    const ok = await ds.checkReachable();
    expect(ok.reachable).to.equal(true);
    expect(ok.latencyMs).to.be.greaterThan(0);
    chmodSync(server.dir, 0o755);
    const other = new NasDatastore({ name: 'ro', url: `nfs://127.0.0.1:${server.nfsPort}${server.exportPath}?mountport=${server.mountPort}`, uid: 1000, gid: 1000, timeoutMs: 5000 });
    try {
      const info = await other.info();
      expect(info.accessible).to.equal(false);
      expect(info.error).to.contain('not writable with uid 1000');
    } finally {
      await other.close();
      chmodSync(server.dir, 0o777);
    }
    const port = await freePort();
    const gone = new NasDatastore({ name: 'gone', url: `nfs://127.0.0.1:${port}/x?mountport=${port}`, uid: 0, gid: 0, timeoutMs: 500 });
    try {
      const info = await gone.info();
      expect(info).to.include({ accessible: false, capacityBytes: 0, freeBytes: 0 });
      expect(info.error).to.contain('no reply within 500 ms');
      const probe = await gone.checkReachable();
      expect(probe.reachable).to.equal(false);
    } finally {
      await gone.close();
    }
  });
});
