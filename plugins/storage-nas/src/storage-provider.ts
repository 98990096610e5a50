/**
 * The agent side of the plugin: a StorageProvider whose leases are file locks on
 * the NAS datastores (see vm-lock.ts), and the host's view of those datastores
 * for its facts.
 */
import { MotusError, type DiskSpec, type Logger, type StorageMetrics, type StorageProvider } from '@motus/sdk';
import type { NasDatastoreEntry, NasPluginConfig } from './config.js';
import { NasDatastore, type NasDatastoreInfo } from './datastore.js';
import { locateDisk, lockPathOf, type DiskLocation } from './disk-location.js';
import { nasError } from './errors.js';
import { NfsLockManager, type HeldLock } from './vm-lock.js';

/** A handover the server announced for a VM's next release (give) or acquire (take). */
export interface HandoverOrder {
  vm: string;
  direction: 'give' | 'take';
  /** The other host: the receiver of a give, the grantor of a take. */
  peer: string;
  token: string;
}

/** How long an acquire with a take order waits for the grantor's give-back, in leases. */
const GRANT_WAIT_LEASES = 2;

export interface HeldDiskLock {
  vm: string;
  disk: string;
  datastore: string;
  lockPath: string;
  /** How it was taken: created on a free name (after settling), adopted from a handover, or taken over after the lease. */
  how: 'created' | 'adopted';
  acquireMs: number;
  since: string;
}

export interface LostDiskLock {
  vm: string;
  disk: string;
  datastore: string;
  reason: string;
  at: string;
  /** QEMU processes killed so that nothing more is written. */
  fenced: number[];
}

/** What an agent reports, in HostInfo.plugins['@motus/storage-nas']. */
export interface NasHostFacts {
  datastores: NasDatastoreInfo[];
  /** Configured datastores this host does not mount. */
  notMounted: string[];
  locks: HeldDiskLock[];
  lost: LostDiskLock[];
}

interface Store {
  entry: NasDatastoreEntry;
  ds: NasDatastore;
  locks?: NfsLockManager;
}

interface Held {
  location: DiskLocation;
  diskPath: string;
  lock: HeldLock;
  info: HeldDiskLock;
}

export interface NasStorageProviderOptions {
  host: string;
  config: NasPluginConfig;
  logger: Logger;
  /** Stops this host's writers of a disk whose lock was lost; the pids stopped. */
  fence(diskPath: string): number[];
  /** Where datastore checks and lock refreshes are counted (the agent's /metrics). */
  metrics?: StorageMetrics;
}

export class NasStorageProvider implements StorageProvider {
  readonly kind = 'nas';
  private readonly stores = new Map<string, Store>();
  private readonly held = new Map<string, Held[]>();
  private readonly gives = new Map<string, HandoverOrder>();
  private readonly takes = new Map<string, HandoverOrder>();
  private readonly lostLocks: LostDiskLock[] = [];
  private infos: NasDatastoreInfo[] = [];
  private refreshing: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly options: NasStorageProviderOptions) {
    const { config, host } = options;
    for (const entry of config.datastores) {
      if (entry.hosts && !entry.hosts.includes(host)) continue;
      this.stores.set(entry.name, {
        entry,
        ds: new NasDatastore({ name: entry.name, url: entry.url, uid: config.uid, gid: config.gid, timeoutMs: config.timeoutMs }),
      });
    }
  }

  /** Starts the periodic refresh of the datastores' capacity and reachability. */
  start(): Promise<void> {
    const tick = () => {
      this.timer = setTimeout(() => void this.refresh().finally(() => !this.closed && tick()), this.options.config.factsRefreshMs);
      this.timer.unref();
    };
    tick();
    return this.refresh();
  }

  refresh(): Promise<void> {
    this.refreshing ??= Promise.all(
      [...this.stores.values()].map(async (s) => {
        const started = performance.now();
        const info = await s.ds.info();
        this.options.metrics?.operation(s.entry.name, 'check', (performance.now() - started) / 1000, info.accessible);
        return info;
      }),
    )
      .then((infos) => {
        this.infos = infos;
      })
      .finally(() => {
        this.refreshing = undefined;
      });
    return this.refreshing;
  }

  async datastores(): Promise<NasDatastoreInfo[]> {
    await this.refresh();
    return this.infos;
  }

  facts(): NasHostFacts {
    return {
      datastores: this.infos,
      notMounted: this.options.config.datastores.filter((d) => !this.stores.has(d.name)).map((d) => d.name),
      locks: [...this.held.values()].flat().map((h) => h.info),
      lost: this.lostLocks.slice(-20),
    };
  }

  /** Every disk on a configured datastore, mounted here or not: acquire then says which one is missing. */
  owns(disk: DiskSpec): boolean {
    return locateDisk(this.options.config.datastores, disk.path) !== undefined;
  }

  handover(order: HandoverOrder): void {
    (order.direction === 'give' ? this.gives : this.takes).set(order.vm, order);
  }

  clearHandover(vm: string): void {
    this.gives.delete(vm);
    this.takes.delete(vm);
  }

  async acquire(vm: string, disks: readonly DiskSpec[]): Promise<void> {
    const taken: Held[] = [];
    // The order stays until a lock is adopted with it: an attempt that fails (the
    // grantor has not given it back yet) must not leave the next one without it.
    const take = this.takes.get(vm);
    try {
      for (const disk of disks) {
        if (this.held.get(vm)?.some((h) => h.diskPath === disk.path)) continue;
        const location = this.locate(disk);
        const locks = await this.lockManager(location.datastore);
        const lockPath = lockPathOf(location.path);
        const started = performance.now();
        let lock = take ? await locks.adoptWhenGranted(lockPath, take.peer, take.token, GRANT_WAIT_LEASES * this.options.config.leaseMs) : undefined;
        const how = lock ? 'adopted' : 'created';
        if (lock && this.takes.get(vm) === take) this.takes.delete(vm);
        lock ??= await locks.acquire(lockPath);
        const held: Held = {
          location,
          diskPath: disk.path,
          lock,
          info: { vm, disk: disk.id, datastore: location.datastore, lockPath, how, acquireMs: Math.round(performance.now() - started), since: new Date().toISOString() },
        };
        taken.push(held);
        this.held.set(vm, [...(this.held.get(vm) ?? []), held]);
        void lock.lost.then((reason) => this.onLost(vm, held, reason));
      }
    } catch (err) {
      for (const held of taken) {
        this.forget(vm, held);
        await held.lock.release().catch(() => undefined);
      }
      throw err;
    }
  }

  async release(vm: string, disks: readonly DiskSpec[]): Promise<void> {
    const give = this.gives.get(vm);
    this.gives.delete(vm);
    const failures: unknown[] = [];
    for (const held of (this.held.get(vm) ?? []).filter((h) => disks.some((d) => d.path === h.diskPath))) {
      this.forget(vm, held);
      try {
        if (give) await held.lock.handOver(give.peer, give.token);
        else await held.lock.release();
      } catch (err) {
        failures.push(err);
      }
    }
    if (failures.length > 0) throw MotusError.from(failures[0]);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    for (const [vm, list] of [...this.held]) {
      for (const held of list) {
        this.forget(vm, held);
        await held.lock.release().catch(() => undefined);
      }
    }
    await Promise.allSettled([...this.stores.values()].map((s) => s.ds.close()));
  }

  private locate(disk: DiskSpec): DiskLocation {
    const location = locateDisk(this.options.config.datastores, disk.path);
    if (!location) throw nasError('MOTUS_E_INVALID_REQUEST', `disk ${disk.id} (${disk.path}) is on no NAS datastore of the site`, { disk: disk.id, path: disk.path });
    if (!this.stores.has(location.datastore)) {
      throw nasError('MOTUS_E_DATASTORE_NOT_VISIBLE', `host ${this.options.host} does not mount datastore ${location.datastore}, which holds disk ${disk.id}`, {
        host: this.options.host,
        datastore: location.datastore,
        disk: disk.id,
      });
    }
    return location;
  }

  private async lockManager(datastore: string): Promise<NfsLockManager> {
    const store = this.stores.get(datastore)!;
    if (!store.locks) {
      const { config, host } = this.options;
      const client = await store.ds.client();
      store.locks ??= new NfsLockManager(client, {
        host,
        heartbeatMs: config.heartbeatMs,
        leaseMs: config.leaseMs,
        onRefresh: (ok, seconds) => this.options.metrics?.renewal(datastore, seconds, ok),
        ...(config.settleMs === undefined ? {} : { settleMs: config.settleMs }),
      });
    }
    return store.locks;
  }

  private forget(vm: string, held: Held): void {
    const rest = (this.held.get(vm) ?? []).filter((h) => h !== held);
    if (rest.length > 0) this.held.set(vm, rest);
    else this.held.delete(vm);
  }

  private onLost(vm: string, held: Held, reason: string): void {
    if (!(this.held.get(vm) ?? []).includes(held)) return;
    this.forget(vm, held);
    const fenced = this.options.fence(held.diskPath);
    this.lostLocks.push({ vm, disk: held.info.disk, datastore: held.location.datastore, reason, at: new Date().toISOString(), fenced });
    this.options.logger.error('lost the lock of a VM disk: its writers on this host are stopped', {
      vm,
      disk: held.info.disk,
      datastore: held.location.datastore,
      reason,
      killed: fenced,
    });
  }
}
