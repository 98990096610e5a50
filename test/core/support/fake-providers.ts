import {
  API_VERSION,
  MotusError,
  NetworkProviderToken,
  StorageProviderToken,
  definePlugin,
  type DatastoreInfo,
  type DiskSpec,
  type NetworkProvider,
  type NicAttachment,
  type NicSpec,
  type StorageProvider,
} from '@motus/sdk';

/** Shared state of the fake storage and network of every host of one test platform. */
export interface FakeFabric {
  /** disk path → host holding its lease */
  leases: Map<string, string>;
  /** every lease operation, in order: 'acquire host-a vm1', … */
  log: string[];
  /** hosts whose acquire fails */
  refuse: Set<string>;
  /** attached ports, as 'host:vm/nic' */
  ports: Set<string>;
}

export function createFakeFabric(): FakeFabric {
  return { leases: new Map(), log: [], refuse: new Set(), ports: new Set() };
}

class FakeStorage implements StorageProvider {
  readonly kind = 'fake-san';
  constructor(
    private readonly fabric: FakeFabric,
    private readonly host: string,
  ) {}
  async datastores(): Promise<DatastoreInfo[]> {
    return [{ name: 'ds1', kind: this.kind, url: 'fake://ds1', capacityBytes: 1 << 30, freeBytes: 1 << 29, accessible: true }];
  }
  owns(disk: DiskSpec): boolean {
    return disk.path.startsWith('fake://');
  }
  async acquire(vm: string, disks: readonly DiskSpec[]): Promise<void> {
    this.fabric.log.push(`acquire ${this.host} ${vm}`);
    if (this.fabric.refuse.has(this.host)) throw new MotusError('MOTUS_E_INTERNAL', `lease refused on ${this.host}`);
    for (const disk of disks) {
      const holder = this.fabric.leases.get(disk.path);
      if (holder && holder !== this.host) throw new MotusError('MOTUS_E_INTERNAL', `${disk.path} is leased by ${holder}`);
    }
    for (const disk of disks) this.fabric.leases.set(disk.path, this.host);
  }
  async release(vm: string, disks: readonly DiskSpec[]): Promise<void> {
    this.fabric.log.push(`release ${this.host} ${vm}`);
    for (const disk of disks) if (this.fabric.leases.get(disk.path) === this.host) this.fabric.leases.delete(disk.path);
  }
}

class FakeNetwork implements NetworkProvider {
  readonly kind = 'fake-switch';
  constructor(
    private readonly fabric: FakeFabric,
    private readonly host: string,
  ) {}
  async networks(): Promise<string[]> {
    return ['lan'];
  }
  async attach(vm: string, nic: NicSpec): Promise<NicAttachment> {
    this.fabric.ports.add(`${this.host}:${vm}/${nic.id}`);
    return { nicId: nic.id, netdev: `stream,id=n-${nic.id},server=off,addr.type=unix,addr.path=/fake/${this.host}/${vm}` };
  }
  async detach(vm: string, nicId: string): Promise<void> {
    this.fabric.ports.delete(`${this.host}:${vm}/${nicId}`);
  }
  async locate(): Promise<string | undefined> {
    return undefined;
  }
}

/** Storage and network providers on every agent, sharing one fabric. */
export function fakeFabricPlugin(fabric: FakeFabric) {
  return definePlugin({
    name: 'fake-fabric',
    version: '1.0.0',
    apiVersion: API_VERSION,
    provides: [StorageProviderToken, NetworkProviderToken],
    roles: ['agent'],
    setup(ctx) {
      ctx.provide(StorageProviderToken, new FakeStorage(fabric, ctx.host!));
      ctx.provide(NetworkProviderToken, new FakeNetwork(fabric, ctx.host!));
    },
  });
}
