/**
 * The agent side of the plugin against a real nfs-ganesha: two hosts' providers
 * pass a VM's disk lock forth (migration) and back (rollback) with the server's
 * handover orders, report their datastores, refuse a disk on a datastore the
 * host does not mount, and fence the writers when a lock is lost.
 */
import { expect } from 'chai';
import { StorageMetrics, type DiskSpec, type Logger } from '@motus/sdk';
import { MetricsRegistry } from '@motus/core';
import { NasDatastore, NasPluginConfigSchema, NasStorageProvider, NfsClient, diskUri, isNasError, readLock, type NasPluginConfig } from '@motus/storage-nas';
import { parseExposition, valueOf, waitFor } from '../../support/index.js';
import { startGanesha, type GaneshaServer } from '../support/ganesha.js';

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {}, child() { return quiet; } } as unknown as Logger;

describe('storage-nas StorageProvider against nfs-ganesha', function () {
  this.timeout(90_000);
  let server: GaneshaServer;
  let config: NasPluginConfig;
  let nfs: NfsClient;
  let disk: DiskSpec;
  const providers: NasStorageProvider[] = [];
  const fenced: Array<{ host: string; disk: string }> = [];

  const provider = async (host: string, metrics?: StorageMetrics) => {
    const p = new NasStorageProvider({ host, config, logger: quiet, fence: (d) => (fenced.push({ host, disk: d }), []), ...(metrics ? { metrics } : {}) });
    providers.push(p);
    await p.start();
    return p;
  };

  before(async () => {
    server = await startGanesha();
    const url = `nfs://127.0.0.1${server.exportPath}?nfsport=${server.nfsPort}&mountport=${server.mountPort}`;
    config = NasPluginConfigSchema.parse({
      datastores: [{ name: 'nas1', url, hosts: ['host-a', 'host-b'] }],
      heartbeatMs: 200,
      leaseMs: 1000,
      timeoutMs: 2000,
      settleMs: 500,
      factsRefreshMs: 500,
    });
    const ds = new NasDatastore({ name: 'nas1', url, uid: 0, gid: 0, timeoutMs: 2000 });
    await ds.createVmFolder('vm1');
    await ds.createDiskImage('vm1', 'disk0.img', 1 << 20);
    await ds.close();
    disk = { id: 'disk0', path: diskUri(url, 'vm1/disk0.img'), format: 'raw' };
    nfs = await NfsClient.connect({ host: '127.0.0.1', export: server.exportPath, port: server.nfsPort, mountPort: server.mountPort, uid: 0, gid: 0, timeoutMs: 2000 });
  });

  after(async () => {
    for (const p of providers) await p.close();
    await nfs?.close().catch(() => undefined);
    await server?.stop();
  });

  it('reports the datastores a host mounts, with capacity and free space, and the ones it does not', async () => {
    const a = await provider('host-a');
    const c = await provider('host-c');
    const [info] = await a.datastores();
    expect(info).to.include({ name: 'nas1', kind: 'nas', accessible: true });
    expect(info!.capacityBytes).to.be.greaterThan(0);
    expect(info!.freeBytes).to.be.within(1, info!.capacityBytes);
    expect(a.facts().notMounted).to.deep.equal([]);
    expect(await c.datastores()).to.deep.equal([]);
    expect(c.facts().notMounted).to.deep.equal(['nas1']);
    expect(a.owns(disk) && c.owns(disk)).to.equal(true);
    expect(a.owns({ id: 'x', path: '/var/lib/x.img', format: 'raw' })).to.equal(false);
    const err = await c.acquire('vm1', [disk]).catch((e: unknown) => e);
    expect(isNasError(err, 'MOTUS_E_DATASTORE_NOT_VISIBLE')).to.equal(true);
    expect((err as Error).message).to.equal('host host-c does not mount datastore nas1, which holds disk disk0');
  });

  it('passes the lock to the destination and back with the handover orders, never freeing the name', async () => {
    const a = await provider('host-a');
    const b = await provider('host-b');
    await a.acquire('vm1', [disk]);
    expect(a.facts().locks).to.have.length(1);
    expect(a.facts().locks[0]).to.include({ vm: 'vm1', disk: 'disk0', how: 'created', lockPath: 'vm1/.disk0.img.lck' });
    const fileid = (await readLock(nfs, 'vm1/.disk0.img.lck'))!.fileid;

    a.handover({ vm: 'vm1', direction: 'give', peer: 'host-b', token: 't-forth' });
    b.handover({ vm: 'vm1', direction: 'take', peer: 'host-a', token: 't-forth' });
    let t = performance.now();
    await a.release('vm1', [disk]);
    await b.acquire('vm1', [disk]);
    const forth = performance.now() - t;
    expect(b.facts().locks[0]).to.include({ how: 'adopted' });
    expect(a.facts().locks).to.deep.equal([]);
    expect(await readLock(nfs, 'vm1/.disk0.img.lck')).to.include({ owner: 'host-b', fileid });

    // Rollback after the switchover: the destination gives it back, the source adopts it.
    b.handover({ vm: 'vm1', direction: 'give', peer: 'host-a', token: 't-back' });
    a.handover({ vm: 'vm1', direction: 'take', peer: 'host-b', token: 't-back' });
    t = performance.now();
    await b.release('vm1', [disk]);
    await a.acquire('vm1', [disk]);
    const back = performance.now() - t;
    expect(a.facts().locks[0]).to.include({ how: 'adopted' });
    expect(await readLock(nfs, 'vm1/.disk0.img.lck')).to.include({ owner: 'host-a', fileid });
    expect(forth + back, 'neither way waits the settle time').to.be.lessThan(config.settleMs!);
    console.log(`      release + acquire: ${forth.toFixed(1)} ms forth, ${back.toFixed(1)} ms back (settle would be ${config.settleMs} ms)`);

    // Without orders a release frees the name, and the next acquire settles.
    await a.release('vm1', [disk]);
    expect(await readLock(nfs, 'vm1/.disk0.img.lck')).to.equal(undefined);
    t = performance.now();
    await b.acquire('vm1', [disk]);
    expect(performance.now() - t).to.be.at.least(config.settleMs!);
    expect(b.facts().locks[0]).to.include({ how: 'created' });
    await b.release('vm1', [disk]);
  });

  it("adopts on rollback even when the source asks before the destination gave the lock back (its own settling may ask first)", async () => {
    const a = await provider('host-a');
    const b = await provider('host-b');
    await a.acquire('vm1', [disk]);
    a.handover({ vm: 'vm1', direction: 'give', peer: 'host-b', token: 't-forth2' });
    b.handover({ vm: 'vm1', direction: 'take', peer: 'host-a', token: 't-forth2' });
    await a.release('vm1', [disk]);
    await b.acquire('vm1', [disk]);
    const fileid = (await readLock(nfs, 'vm1/.disk0.img.lck'))!.fileid;

    b.handover({ vm: 'vm1', direction: 'give', peer: 'host-a', token: 't-back2' });
    a.handover({ vm: 'vm1', direction: 'take', peer: 'host-b', token: 't-back2' });
    // The source asks first, while host-b still holds (and refreshes) the lock for a while
    // longer than a lease: it waits for the grant instead of taking a live lock or giving up.
    const asked = a.acquire('vm1', [disk]);
    await new Promise((resolve) => setTimeout(resolve, 1.3 * config.leaseMs));
    expect(a.facts().locks, 'nothing taken while host-b holds it').to.deep.equal([]);
    await b.release('vm1', [disk]);
    await asked;
    expect(a.facts().locks[0]).to.include({ how: 'adopted' });
    expect(await readLock(nfs, 'vm1/.disk0.img.lck')).to.include({ owner: 'host-a', fileid });
    await a.release('vm1', [disk]);
  });

  it('counts datastore checks and lock refreshes (lease renewals) with their latency, by datastore, for /metrics', async () => {
    const registry = new MetricsRegistry();
    const a = await provider('host-a', new StorageMetrics(registry.forPlugin('@motus/storage-nas'), 'nas'));
    await a.acquire('vm1', [disk]);
    const renewals = async () => valueOf(parseExposition(await registry.exposition()), 'motus_storage_lease_renewals_total', { kind: 'nas', datastore: 'nas1', outcome: 'ok' }) ?? 0;
    // Heartbeats every 200 ms: a few renewals within a second or two.
    await waitFor('three lock refreshes', async () => ((await renewals()) >= 3 ? true : undefined), 10_000, 100);
    await a.release('vm1', [disk]);
    const families = parseExposition(await registry.exposition());
    expect(valueOf(families, 'motus_storage_operation_seconds_count', { kind: 'nas', datastore: 'nas1', operation: 'check' })).to.be.at.least(1);
    expect(valueOf(families, 'motus_storage_operation_seconds_count', { kind: 'nas', datastore: 'nas1', operation: 'lease_refresh' })).to.be.at.least(3);
    expect(valueOf(families, 'motus_storage_operation_seconds_sum', { kind: 'nas', datastore: 'nas1', operation: 'lease_refresh' })).to.be.greaterThan(0);
    expect(valueOf(families, 'motus_storage_errors_total', { kind: 'nas', datastore: 'nas1', operation: 'check' })).to.equal(undefined);
  });

  it('refuses a disk whose lock another live host holds, naming it', async () => {
    const a = await provider('host-a');
    const b = await provider('host-b');
    await a.acquire('vm1', [disk]);
    const err = await b.acquire('vm1-twin', [disk]).catch((e: unknown) => e);
    expect(isNasError(err, 'MOTUS_E_NFS_LOCK_HELD')).to.equal(true);
    expect((err as Error).message).to.include('held by host-a');
    expect(b.facts().locks).to.deep.equal([]);
    await a.release('vm1', [disk]);
  });

  it('fences the writers of a disk whose lock is lost, and reports the loss', async () => {
    const a = await provider('host-a');
    await a.acquire('vm1', [disk]);
    fenced.length = 0;
    // Through NFS, as another host would: ganesha does not see changes made behind its back at once.
    await nfs.remove('vm1/.disk0.img.lck');
    await waitFor('the loss to be noticed', () => (a.facts().lost.length > 0 ? true : undefined), 5_000, 50);
    expect(fenced).to.deep.equal([{ host: 'host-a', disk: disk.path }]);
    expect(a.facts().lost[0]).to.include({ vm: 'vm1', disk: 'disk0', datastore: 'nas1', reason: 'the lock file was removed' });
    expect(a.facts().locks).to.deep.equal([]);
    await a.release('vm1', [disk]);
  });
});
