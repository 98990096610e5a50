import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { MotusError, StorageProviderToken, type HostInfo, type MigrationHookContext, type PluginContext, type Veto, type VmInfo } from '@motus/sdk';
import nasPlugin, { NasPluginConfigSchema, diskUri, locateDisk, lockPathOf, parseNfsUrl, writersOf, fenceWriters, type NasPluginConfig } from '@motus/storage-nas';

const DATASTORES = [
  { name: 'nas1', url: 'nfs://10.0.0.5/srv/vms?nfsport=2049&mountport=20048' },
  { name: 'nas1-gold', url: 'nfs://10.0.0.5/srv/vms/gold' },
  { name: 'nas2', url: 'nfs://10.0.0.6/export' },
];

describe('storage-nas plugin: config, disk locations', () => {
  it('accepts the libnfs URL form (nfsport=, mountport=) and refuses two different NFS ports', () => {
    expect(parseNfsUrl('nfs://127.0.0.1/x?nfsport=2049&mountport=20048&version=3')).to.deep.equal({ host: '127.0.0.1', export: '/x', port: 2049, mountPort: 20048 });
    expect(() => parseNfsUrl('nfs://h:2049/x?nfsport=2050')).to.throw(/two NFS ports/);
    expect(() => parseNfsUrl('nfs://h/x?nfsport=0')).to.throw(/invalid nfsport/);
  });

  it('fills defaults and refuses bad datastores, duplicate names and a lease shorter than two heartbeats', () => {
    const ok = NasPluginConfigSchema.parse({ datastores: [{ name: 'nas1', url: 'nfs://h/x' }] });
    expect(ok).to.include({ uid: 0, gid: 0, timeoutMs: 10_000, heartbeatMs: 3_000, leaseMs: 15_000, factsRefreshMs: 5_000 });
    const issues = (input: unknown) => {
      const r = NasPluginConfigSchema.safeParse(input);
      return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    };
    expect(issues({ datastores: [{ name: 'nas1', url: 'http://h/x' }] }).join()).to.match(/datastores\.0\.url: .*nfs:\/\//);
    expect(issues({ datastores: [{ name: 'NAS 1', url: 'nfs://h/x' }] }).join()).to.match(/datastores\.0\.name/);
    expect(issues({ datastores: [{ name: 'a', url: 'nfs://h/x' }, { name: 'a', url: 'nfs://h/y' }] }).join()).to.match(/listed twice/);
    expect(issues({ heartbeatMs: 1000, leaseMs: 1500 }).join()).to.match(/leaseMs: .*two heartbeats/);
    expect(issues({ datastores: [], extra: 1 }).length).to.equal(1);
  });

  it('finds the datastore of a disk URI by server and export, the longest export winning, whatever the query', () => {
    expect(locateDisk(DATASTORES, 'nfs://10.0.0.5/srv/vms/vm1/disk0.img')).to.deep.equal({ datastore: 'nas1', path: 'vm1/disk0.img' });
    expect(locateDisk(DATASTORES, 'nfs://10.0.0.5/srv/vms/gold/vm2/d.img?uid=0')).to.deep.equal({ datastore: 'nas1-gold', path: 'vm2/d.img' });
    expect(locateDisk(DATASTORES, 'nfs://10.0.0.6/export/vm3/d.img')).to.deep.equal({ datastore: 'nas2', path: 'vm3/d.img' });
    for (const path of ['/var/lib/vm.img', 'nfs://10.0.0.7/srv/vms/vm1/d.img', 'nfs://10.0.0.5/srv/vmsx/d.img', 'nfs://10.0.0.5/srv/vms', 'nfs://10.0.0.5/srv/vms/../etc/x', 'iscsi://h/iqn/0']) {
      expect(locateDisk(DATASTORES, path), path).to.equal(undefined);
    }
  });

  it('puts the lock file hidden next to the image, and gives QEMU a URI without ports (its libnfs asks the portmapper)', () => {
    expect(lockPathOf('vm1/disk0.img')).to.equal('vm1/.disk0.img.lck');
    expect(lockPathOf('disk.img')).to.equal('.disk.img.lck');
    expect(diskUri(DATASTORES[0]!.url, 'vm1/disk0.img')).to.equal('nfs://10.0.0.5/srv/vms/vm1/disk0.img');
    expect(locateDisk(DATASTORES, diskUri(DATASTORES[0]!.url, 'vm1/disk0.img'))).to.deep.equal({ datastore: 'nas1', path: 'vm1/disk0.img' });
  });
});

/** The server half of the plugin, set up on a context that records its taps (a mock of the kernel). */
function serverSide(config: NasPluginConfig) {
  const taps = new Map<string, (...args: unknown[]) => Promise<unknown>>();
  const calls: Array<{ host: string; method: string; payload: unknown }> = [];
  const hook = (name: string) => ({ tapPromise: (_n: string, fn: (...args: unknown[]) => Promise<unknown>) => void taps.set(name, fn) });
  const ctx = {
    name: '@motus/storage-nas',
    role: 'server',
    config,
    logger: { debug() {}, info() {}, warn() {}, error() {}, child() { return this; } },
    hooks: { validate: hook('validate'), prepareDestination: hook('prepareDestination'), switchover: hook('switchover'), announce: hook('announce'), cleanup: hook('cleanup'), failed: hook('failed') },
    provide: () => {
      throw new Error('the server side provides nothing');
    },
    callAgent: async (host: string, method: string, payload: unknown) => {
      calls.push({ host, method, payload });
      return { ok: true };
    },
  } as unknown as PluginContext<NasPluginConfig>;
  return { taps, calls, setup: () => nasPlugin.setup(ctx) };
}

function host(name: string, facts?: unknown): HostInfo {
  return { name, state: 'connected', plugins: facts === undefined ? {} : { '@motus/storage-nas': facts } } as unknown as HostInfo;
}

function migration(destination: HostInfo, disks: Array<{ id: string; path: string }>): MigrationHookContext {
  const vm = { name: 'vm1', host: 'host-a', state: 'running', spec: { name: 'vm1', memoryMiB: 128, vcpus: 1, disks: disks.map((d) => ({ ...d, format: 'raw' })) } } as unknown as VmInfo;
  return { migrationId: 'm-1', vm, source: host('host-a'), destination } as unknown as MigrationHookContext;
}

describe('storage-nas plugin: server side', () => {
  const config = NasPluginConfigSchema.parse({ datastores: DATASTORES });
  const disk = { id: 'disk0', path: 'nfs://10.0.0.5/srv/vms/vm1/disk0.img' };
  const seen = (accessible: boolean, error?: string) => ({ datastores: [{ name: 'nas1', kind: 'nas', url: '', capacityBytes: 1, freeBytes: 1, accessible, ...(error ? { error } : {}) }], notMounted: [], locks: [], lost: [] });

  it('declares the storage contract and taps validate, prepareDestination, failed and cleanup — not switchover', async () => {
    expect(nasPlugin.provides).to.deep.equal([StorageProviderToken]);
    const s = serverSide(config);
    await s.setup();
    expect([...s.taps.keys()].sort()).to.deep.equal(['cleanup', 'failed', 'prepareDestination', 'validate']);
  });

  it('vetoes a destination that does not mount, cannot use, or has not reported the datastore, naming datastore and host', async () => {
    const s = serverSide(config);
    await s.setup();
    const validate = s.taps.get('validate')!;
    expect(await validate(migration(host('host-b', seen(true)), [disk]))).to.equal(undefined);
    expect(await validate(migration(host('host-b', seen(false)), [{ id: 'local', path: '/var/lib/x.img' }])), 'no NAS disk: nothing to check').to.equal(undefined);
    const cases: Array<[HostInfo, RegExp]> = [
      [host('host-c', { datastores: [], notMounted: ['nas1'], locks: [], lost: [] }), /does not mount it/],
      [host('host-c', seen(false, 'NFS3ERR_ACCES')), /cannot use it: NFS3ERR_ACCES/],
      [host('host-c'), /reports no NAS datastores/],
    ];
    for (const [destination, why] of cases) {
      const veto = (await validate(migration(destination, [disk]))) as Veto;
      expect(veto).to.include({ plugin: '@motus/storage-nas', code: 'MOTUS_E_DATASTORE_NOT_VISIBLE' });
      expect(veto.reason).to.match(/host host-c does not see datastore nas1/).and.match(why).and.match(/disk disk0 of VM vm1/);
      expect(veto.data).to.deep.equal({ host: 'host-c', datastore: 'nas1', disk: 'disk0', vm: 'vm1' });
    }
  });

  it('orders the handover source → destination before pre-copy, the way back on failure, and clears both at cleanup', async () => {
    const s = serverSide(config);
    await s.setup();
    const mctx = migration(host('host-b', seen(true)), [disk]);
    await s.taps.get('prepareDestination')!(mctx);
    const [give, take] = s.calls.splice(0) as Array<{ host: string; method: string; payload: { direction: string; peer: string; token: string; vm: string } }>;
    expect([give!.host, give!.method, give!.payload.direction, give!.payload.peer]).to.deep.equal(['host-a', 'handover', 'give', 'host-b']);
    expect([take!.host, take!.payload.direction, take!.payload.peer, take!.payload.vm]).to.deep.equal(['host-b', 'take', 'host-a', 'vm1']);
    expect(give!.payload.token).to.match(/^[0-9a-f]{24}$/).and.equal(take!.payload.token);
    await s.taps.get('failed')!(mctx, new MotusError('MOTUS_E_MIGRATION_FAILED', 'x'), 'switchover');
    const back = s.calls.splice(0) as typeof give[];
    expect(back.map((c) => [c!.host, c!.payload.direction, c!.payload.peer])).to.deep.equal([['host-b', 'give', 'host-a'], ['host-a', 'take', 'host-b']]);
    expect(back[0]!.payload.token, 'a new token for the way back').not.to.equal(give!.payload.token);
    await s.taps.get('cleanup')!(mctx);
    expect(s.calls.map((c) => [c.host, c.method])).to.deep.equal([['host-a', 'handover-clear'], ['host-b', 'handover-clear']]);
    s.calls.length = 0;
    await s.taps.get('prepareDestination')!(migration(host('host-b'), [{ id: 'local', path: '/var/lib/x.img' }]));
    expect(s.calls, 'a VM without NAS disks needs no handover').to.deep.equal([]);
  });
});

describe('storage-nas writer fence', () => {
  it('finds and kills only processes under this one whose arguments name the disk', async function () {
    this.timeout(10_000);
    const disk = `nfs://127.0.0.1/fence-test-${process.pid}/vm1/disk0.img`;
    const child = spawn('sh', ['-c', 'sleep 30', disk], { stdio: 'ignore' });
    const other = spawn('sh', ['-c', 'sleep 30', `${disk}.other`], { stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 200));
      expect(writersOf(disk)).to.deep.equal([child.pid]);
      expect(writersOf(disk, 1 << 22), 'not under that ancestor').to.deep.equal([]);
      const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_c, signal) => resolve(signal)));
      expect(fenceWriters(disk)).to.deep.equal([child.pid]);
      expect(await exited).to.equal('SIGKILL');
      expect(other.exitCode).to.equal(null);
    } finally {
      child.kill('SIGKILL');
      other.kill('SIGKILL');
    }
  });
});
