import { expect } from 'chai';
import { isNasError, NasDatastore, parseNfsUrl } from '@motus/storage-nas';

describe('storage-nas datastore URLs and names', () => {
  it('parses nfs://server[:port]/export[?mountport=N]', () => {
    expect(parseNfsUrl('nfs://nas1/vol/vms')).to.deep.equal({ host: 'nas1', export: '/vol/vms' });
    expect(parseNfsUrl('nfs://127.0.0.1:2049/srv/export/?mountport=20048')).to.deep.equal({ host: '127.0.0.1', export: '/srv/export', port: 2049, mountPort: 20048 });
    expect(parseNfsUrl('nfs://[::1]/a%20b')).to.deep.equal({ host: '::1', export: '/a b' });
  });

  it('refuses URLs that are not nfs:// or name no server or export, with MOTUS_E_INVALID_REQUEST', () => {
    for (const url of ['http://nas/x', 'nfs:///x', 'nfs://nas', 'nfs://nas/', 'not a url', 'nfs://nas/x?mountport=0', 'nfs://nas/x?mountport=abc']) {
      let err: unknown;
      try {
        parseNfsUrl(url);
      } catch (e) {
        err = e;
      }
      expect(isNasError(err, 'MOTUS_E_INVALID_REQUEST'), url).to.equal(true);
      expect((err as Error).message).to.contain('expected nfs://server[:port]/export');
    }
  });

  it('refuses VM and disk names that could escape their folder or hide, before any network call', async () => {
    const ds = new NasDatastore({ name: 'ds', url: 'nfs://127.0.0.1:1/x?mountport=1', uid: 0, gid: 0, timeoutMs: 100 });
    for (const name of ['', '.', '..', 'a/b', '.hidden', 'x'.repeat(256)]) {
      const err = await ds.createVmFolder(name).then(() => undefined, (e: unknown) => e);
      expect(isNasError(err, 'MOTUS_E_INVALID_REQUEST'), JSON.stringify(name)).to.equal(true);
    }
    const err = await ds.createDiskImage('vm1', 'disk.img', -1).then(() => undefined, (e: unknown) => e);
    expect(isNasError(err, 'MOTUS_E_INVALID_REQUEST')).to.equal(true);
    await ds.close();
  });
});
