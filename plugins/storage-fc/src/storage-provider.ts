/**
 * The agent side of @motus/storage-fc: the host's FC view (HBAs, remote ports,
 * LUNs and their paths, read from sysfs and udev's links) for its facts, rescans
 * of its SCSI hosts, the device each VM disk opens on this host (localPath:
 * the multipath map of the LUN named by the disk's WWN), and the ownership of
 * the LUNs as the StorageProvider lease (lun-lease.ts over sg_persist).
 */
import {
  LeaseSet, MotusError, keepRecent, keyHex, reservationKey, roundMs,
  type DatastoreInfo, type DiskLeaseFacts, type DiskLeaseLoss, type DiskLeaseRelease, type DiskSpec, type Logger, type PersistentReservationDevice, type StorageMetrics, type StorageProvider,
} from '@motus/sdk';
import { rootFor, type FcDatastoreConfig, type FcPluginConfig } from './config.js';
import { discoverFc, type FcInventory, type FcRoots } from './discovery.js';
import { locateDisk, type DiskLocation } from './disk-path.js';
import { checkLease, giveLun, takeLun, type LunRef } from './lun-lease.js';
import { lunLabel, type FcLun } from './multipath.js';
import { rescanFcHosts, type RescanResult } from './rescan.js';
import { SgPersistDevice } from './sg-persist.js';

export interface FcPathFacts {
  hctl: string;
  hba: string;
  targetWwpn?: string;
  lun?: number;
  device?: string;
  byPath?: string;
  speedGbit?: number;
  state: 'active' | 'failed';
  reason?: string;
}

export interface FcLunFacts {
  wwn?: string;
  wwid: string;
  lunNumbers: number[];
  /** The datastore it belongs to, when the site names it. */
  datastore?: string;
  usable: boolean;
  reason?: string;
  /** The node QEMU opens on this host. */
  device?: string;
  multipath?: { name?: string; dm: string };
  sizeBytes?: number;
  vendor?: string;
  model?: string;
  linkSpeedGbit?: number;
  activePaths: number;
  failedPaths: number;
  paths: FcPathFacts[];
  warnings: string[];
  /** Registered reservation keys (datastore LUNs only, when reservations are on). */
  keys?: string[];
  /** The host whose key is registered, when the site names it. */
  owner?: string;
  keysError?: string;
}

export interface FcDatastoreFacts {
  name: string;
  /** Every LUN of it seen here with an active path. */
  accessible: boolean;
  error?: string;
  capacityBytes: number;
  /** Bytes of its LUNs nobody holds (when keys could be read). */
  freeBytes: number;
  luns: Array<{ wwn: string; visible: boolean; usable: boolean; reason?: string; lunNumbers: number[]; activePaths: number; device?: string }>;
}

export interface FcLeaseFacts extends DiskLeaseFacts {
  wwn: string;
  device: string;
  /** Whether the array enforces it (a persistent reservation is held); the reason when not. */
  enforced: boolean;
  unenforcedReason?: string;
  paths: string[];
}

/** `HostInfo.plugins['@motus/storage-fc']`. */
export interface FcHostFacts {
  host: string;
  key: string;
  roots: FcRoots;
  reservations: FcPluginConfig['reservations'];
  scannedAt?: string;
  scanMs?: number;
  hbas: FcInventory['hbas'];
  remotePorts: FcInventory['remotePorts'];
  luns: FcLunFacts[];
  unidentified: Array<{ hctl: string; reason: string }>;
  problems: string[];
  datastores: FcDatastoreFacts[];
  notVisible: string[];
  leases: FcLeaseFacts[];
  releases: Array<DiskLeaseRelease & { wwn: string }>;
  lost: Array<DiskLeaseLoss & { wwn: string }>;
  lastRescan?: { at: string; results: RescanResult[] };
}

export interface FcProviderOptions {
  host: string;
  config: FcPluginConfig;
  logger: Logger;
  /** One path's node as a reservation device; sg_persist by default. */
  reservationDevice?: (device: string) => PersistentReservationDevice;
  /** Rescans the SCSI hosts; the scan files by default (tests add what the kernel would find). */
  rescanHosts?: typeof rescanFcHosts;
  /** Where scans (a `check` per datastore) and lease checks are counted (the agent's /metrics). */
  metrics?: StorageMetrics;
}

interface Lease extends FcLeaseFacts {
  reservedVia: number;
}

export class FcStorageProvider implements StorageProvider {
  readonly kind = 'fc';
  readonly key: bigint;
  readonly roots: FcRoots;
  private inventory: FcInventory | undefined;
  private keysByWwn = new Map<string, { keys?: bigint[]; error?: string }>();
  private readonly visible: FcDatastoreConfig[];
  private readonly leases = new LeaseSet<Lease>();
  private readonly releases: FcHostFacts['releases'] = [];
  private readonly lost: FcHostFacts['lost'] = [];
  private readonly hostsByKey = new Map<bigint, string>();
  private lastRescan: FcHostFacts['lastRescan'];
  private timer: NodeJS.Timeout | undefined;
  private scanning: Promise<FcInventory> | undefined;
  private closed = false;
  private readonly prDevice: (device: string) => PersistentReservationDevice;

  constructor(private readonly options: FcProviderOptions) {
    const { host, config } = options;
    this.key = reservationKey(host);
    this.roots = { sys: rootFor(config.sysRoot, host), dev: rootFor(config.devRoot, host) };
    this.visible = config.datastores.filter((d) => !d.hosts || d.hosts.includes(host));
    for (const name of [host, ...config.datastores.flatMap((d) => d.hosts ?? [])]) this.hostsByKey.set(reservationKey(name), name);
    this.prDevice = options.reservationDevice ?? ((device) => new SgPersistDevice(device, { binary: config.sgPersist, timeoutMs: config.commandTimeoutMs }));
  }

  async start(): Promise<void> {
    await this.scan();
    this.timer = setInterval(() => {
      void this.scan().catch((err: unknown) => this.options.logger.warn('FC scan failed', { error: (err as Error).message }));
    }, this.options.config.factsRefreshMs);
    this.timer.unref();
  }

  ownerOf = (key: bigint): string | undefined => this.hostsByKey.get(key);

  owns(disk: DiskSpec): boolean {
    return locateDisk(this.options.config.datastores, disk.path) !== undefined;
  }

  /** Reads sysfs again (one scan at a time; callers during a scan share it), then the datastore LUNs' keys. */
  scan(): Promise<FcInventory> {
    if (this.scanning) return this.scanning;
    this.scanning = (async () => {
      try {
        const started = performance.now();
        const inventory = await discoverFc(this.roots);
        this.inventory = inventory;
        const seconds = (performance.now() - started) / 1000;
        for (const ds of this.datastoreFacts()) this.options.metrics?.operation(ds.name, 'check', seconds, ds.accessible);
        await this.readKeys(inventory);
        return inventory;
      } finally {
        this.scanning = undefined;
      }
    })();
    return this.scanning;
  }

  /** Rescans this host's FC SCSI hosts, then reads sysfs again. */
  async rescan(): Promise<{ results: RescanResult[]; inventory: FcInventory }> {
    const results = await (this.options.rescanHosts ?? rescanFcHosts)(this.roots.sys, { timeoutMs: this.options.config.rescanTimeoutMs });
    this.lastRescan = { at: new Date().toISOString(), results };
    for (const r of results.filter((x) => !x.ok)) this.options.logger.warn('SCSI host rescan failed', { host: r.host, reason: r.reason });
    await this.scanning?.catch(() => undefined);
    const inventory = await this.scan();
    this.options.logger.info('FC hosts rescanned', { hosts: results.map((r) => r.host), luns: inventory.luns.length });
    return { results, inventory };
  }

  /** What this host sees of the given WWNs: usable, not usable (why), or absent. */
  visibility(wwns: readonly string[]): Array<{ wwn: string; visible: boolean; usable: boolean; reason?: string; lunNumbers: number[] }> {
    return wwns.map((wwn) => {
      const lun = this.find(wwn);
      if (!lun) return { wwn, visible: false, usable: false, reason: 'no path to it on any FC HBA', lunNumbers: [] };
      return { wwn, visible: true, usable: lun.usable, ...(lun.reason ? { reason: lun.reason } : {}), lunNumbers: lun.lunNumbers };
    });
  }

  async datastores(): Promise<DatastoreInfo[]> {
    return this.datastoreFacts().map((d) => ({
      name: d.name,
      kind: 'fc',
      url: `fc:${d.luns.map((l) => l.wwn).join(',')}`,
      capacityBytes: d.capacityBytes,
      freeBytes: d.freeBytes,
      accessible: d.accessible,
    }));
  }

  async localPath(disk: DiskSpec): Promise<string> {
    const location = this.locate(disk);
    return (await this.usableLun(location, disk.id)).device!;
  }

  async acquire(vm: string, disks: readonly DiskSpec[]): Promise<void> {
    await this.leases.acquireAll(disks, (disk) => this.take(vm, disk), (taken) => this.release(vm, taken));
  }

  async release(vm: string, disks: readonly DiskSpec[]): Promise<void> {
    await this.leases.releaseAll(vm, disks, async (lease, disk) => {
      if (!lease.enforced) return;
      try {
        const r = await giveLun(lease.paths.map(this.prDevice), this.key, lease.reservedVia);
        keepRecent(this.releases, { vm, disk: disk.id, wwn: lease.wwn, at: new Date().toISOString(), ms: roundMs(r.ms), commands: r.commands });
        this.options.logger.info('FC LUN released', { vm, disk: disk.id, wwn: lease.wwn, ms: roundMs(r.ms) });
      } catch (err) {
        this.options.logger.error('could not release an FC LUN; its key stays registered until this host takes and gives it again', { vm, disk: disk.id, wwn: lease.wwn, error: (err as Error).message });
        throw err;
      }
    });
  }

  facts(): FcHostFacts {
    const inv = this.inventory;
    const datastoreOf = new Map(this.options.config.datastores.flatMap((d) => d.luns.map((w) => [w, d.name] as const)));
    return {
      host: this.options.host,
      key: keyHex(this.key),
      roots: this.roots,
      reservations: this.options.config.reservations,
      ...(inv ? { scannedAt: inv.scannedAt, scanMs: inv.ms } : {}),
      hbas: inv?.hbas ?? [],
      remotePorts: inv?.remotePorts ?? [],
      luns: (inv?.luns ?? []).map((l) => this.lunFacts(l, l.wwn ? datastoreOf.get(l.wwn) : undefined)),
      unidentified: (inv?.unidentified ?? []).map((p) => ({ hctl: p.hctl, reason: p.reason ?? 'no identity' })),
      problems: inv?.problems ?? ['not scanned yet'],
      datastores: this.datastoreFacts(),
      notVisible: this.options.config.datastores.filter((d) => !this.visible.includes(d)).map((d) => d.name),
      leases: this.leases.values().map(({ reservedVia: _r, ...l }) => ({ ...l })),
      releases: [...this.releases],
      lost: [...this.lost],
      ...(this.lastRescan ? { lastRescan: this.lastRescan } : {}),
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.scanning?.catch(() => undefined);
  }

  // ---- LUNs ----

  private find(wwn: string): FcLun | undefined {
    return this.inventory?.luns.find((l) => l.wwn === wwn);
  }

  private locate(disk: DiskSpec): DiskLocation {
    const location = locateDisk(this.options.config.datastores, disk.path);
    if (!location) throw new MotusError('MOTUS_E_INVALID_REQUEST', `disk ${disk.id} (${disk.path}) is not a LUN of an FC datastore`, { disk: disk.id, path: disk.path });
    return location;
  }

  /**
   * The LUN of a disk, usable on this host: when it is not seen, the SCSI hosts
   * are rescanned once (a LUN newly mapped to this host appears only then).
   */
  private async usableLun(location: DiskLocation, disk: string, vm?: string): Promise<FcLun> {
    const { host } = this.options;
    if (!this.visible.some((d) => d.name === location.datastore)) {
      throw new MotusError('MOTUS_E_DATASTORE_NOT_VISIBLE', `host ${host} is not among the hosts of FC datastore ${location.datastore}, which holds disk ${disk}${vm ? ` of VM ${vm}` : ''}`, {
        host, datastore: location.datastore, wwn: location.wwn, disk, ...(vm ? { vm } : {}),
      });
    }
    let lun = this.find(location.wwn);
    if (!lun) {
      await this.rescan();
      lun = this.find(location.wwn);
    }
    if (!lun) {
      throw new MotusError('MOTUS_E_DATASTORE_NOT_VISIBLE', `host ${host} does not see LUN ${location.wwn} of FC datastore ${location.datastore} (no path on any HBA, also after a rescan), which holds disk ${disk}${vm ? ` of VM ${vm}` : ''}`, {
        host, datastore: location.datastore, wwn: location.wwn, disk, ...(vm ? { vm } : {}),
      });
    }
    if (!lun.usable || !lun.device) {
      throw new MotusError('MOTUS_E_FC_NO_USABLE_PATH', `host ${host}: ${lun.reason ?? `${lunLabel(lun)} has no device`} (FC datastore ${location.datastore}, disk ${disk}${vm ? ` of VM ${vm}` : ''})`, {
        host, datastore: location.datastore, wwn: location.wwn, lun: lun.lunNumbers[0], disk, paths: lun.paths.map((p) => ({ hctl: p.hctl, state: p.state, reason: p.reason })),
      });
    }
    return lun;
  }

  private async take(vm: string, disk: DiskSpec): Promise<void> {
    if (this.leases.has(vm, disk.id)) return;
    const location = this.locate(disk);
    const lun = await this.usableLun(location, disk.id, vm);
    const paths = lun.paths.filter((p) => p.state === 'active' && p.devicePath).map((p) => p.devicePath!);
    const base = { vm, disk: disk.id, datastore: location.datastore, wwn: location.wwn, device: lun.device!, since: new Date().toISOString(), paths };
    const mode = this.options.config.reservations;
    if (mode === 'off') {
      this.leases.add({ ...base, enforced: false, unenforcedReason: 'reservations are off in the site file', acquireMs: 0, commands: 0, reservedVia: 0 });
      return;
    }
    const ref: LunRef = { datastore: location.datastore, wwn: location.wwn, lunNumbers: lun.lunNumbers };
    try {
      const r = await takeLun(paths.map(this.prDevice), this.key, ref, this.ownerOf);
      this.leases.add({ ...base, enforced: true, acquireMs: roundMs(r.ms), commands: r.commands, reservedVia: r.reservedVia });
      this.keysByWwn.set(location.wwn, { keys: [this.key] });
      this.options.logger.info('FC LUN taken', { vm, disk: disk.id, wwn: location.wwn, paths: paths.length, ms: roundMs(r.ms) });
    } catch (err) {
      if (mode === 'if-supported' && err instanceof MotusError && err.code === 'MOTUS_E_FC_NOT_SCSI') {
        this.leases.add({ ...base, enforced: false, unenforcedReason: err.message, acquireMs: 0, commands: 0, reservedVia: 0 });
        this.options.logger.warn('FC LUN used without a reservation', { vm, disk: disk.id, wwn: location.wwn, reason: err.message });
        return;
      }
      throw err;
    }
  }

  /** The registered keys of the datastore LUNs (for owners and free space in the facts), and a check of our leases. */
  private async readKeys(inventory: FcInventory): Promise<void> {
    if (this.options.config.reservations === 'off' || this.closed) return;
    const wanted = new Set(this.visible.flatMap((d) => d.luns));
    const next = new Map<string, { keys?: bigint[]; error?: string }>();
    for (const lun of inventory.luns) {
      if (!lun.wwn || !wanted.has(lun.wwn) || !lun.usable) continue;
      const path = lun.paths.find((p) => p.state === 'active' && p.devicePath);
      if (!path) continue;
      const dev = this.prDevice(path.devicePath!);
      try {
        next.set(lun.wwn, { keys: [...new Set((await dev.readKeys()).keys)] });
        for (const lease of this.leases.values().filter((l) => l.wwn === lun.wwn && l.enforced)) {
          const started = performance.now();
          const check = await checkLease(dev, this.key, this.ownerOf).catch((err: unknown) => {
            this.options.metrics?.renewal(lease.datastore, (performance.now() - started) / 1000, false);
            throw err;
          });
          this.options.metrics?.renewal(lease.datastore, (performance.now() - started) / 1000, check.held);
          if (!check.held) this.loseLease(lease, check.reason);
        }
      } catch (err) {
        next.set(lun.wwn, { error: (err as Error).message });
      }
    }
    this.keysByWwn = next;
  }

  /**
   * Our registration or reservation is gone: another host may own the LUN now.
   * Nothing to fence here, unlike iSCSI: QEMU writes through this host's own
   * unregistered nexuses now, and the array refuses them (RESERVATION CONFLICT).
   */
  private loseLease(lease: Lease, reason: string): void {
    this.leases.delete(lease);
    keepRecent(this.lost, { vm: lease.vm, disk: lease.disk, wwn: lease.wwn, reason, at: new Date().toISOString() });
    const err = new MotusError('MOTUS_E_FC_LEASE_LOST', `host ${this.options.host} lost LUN ${lease.wwn} of FC datastore ${lease.datastore} (disk ${lease.disk} of VM ${lease.vm}): ${reason}`, {
      host: this.options.host, vm: lease.vm, disk: lease.disk, wwn: lease.wwn,
    });
    this.options.logger.error(err.message, { code: err.code });
  }

  private lunFacts(l: FcLun, datastore: string | undefined): FcLunFacts {
    const k = l.wwn ? this.keysByWwn.get(l.wwn) : undefined;
    const keys = k?.keys;
    const owner = keys && keys.length === 1 ? this.ownerOf(keys[0]!) : undefined;
    return {
      ...(l.wwn ? { wwn: l.wwn } : {}),
      wwid: l.wwid,
      lunNumbers: l.lunNumbers,
      ...(datastore ? { datastore } : {}),
      usable: l.usable,
      ...(l.reason ? { reason: l.reason } : {}),
      ...(l.device ? { device: l.device } : {}),
      ...(l.multipath ? { multipath: { dm: l.multipath.dm, ...(l.multipath.name ? { name: l.multipath.name } : {}) } } : {}),
      ...(l.sizeBytes !== undefined ? { sizeBytes: l.sizeBytes } : {}),
      ...(l.vendor ? { vendor: l.vendor } : {}),
      ...(l.model ? { model: l.model } : {}),
      ...(l.linkSpeedGbit !== undefined ? { linkSpeedGbit: l.linkSpeedGbit } : {}),
      activePaths: l.activePaths,
      failedPaths: l.failedPaths,
      paths: l.paths.map((p) => ({
        hctl: p.hctl, hba: p.hba, state: p.state,
        ...(p.targetWwpn ? { targetWwpn: p.targetWwpn } : {}),
        ...(p.lun !== undefined ? { lun: p.lun } : {}),
        ...(p.device ? { device: p.device } : {}),
        ...(p.byPath ? { byPath: p.byPath } : {}),
        ...(p.speedGbit !== undefined ? { speedGbit: p.speedGbit } : {}),
        ...(p.reason ? { reason: p.reason } : {}),
      })),
      warnings: l.warnings,
      ...(keys ? { keys: keys.map(keyHex) } : {}),
      ...(owner ? { owner } : {}),
      ...(k?.error ? { keysError: k.error } : {}),
    };
  }

  private datastoreFacts(): FcDatastoreFacts[] {
    return this.visible.map((ds) => {
      const luns = ds.luns.map((wwn) => {
        const lun = this.find(wwn);
        if (!lun) return { wwn, visible: false, usable: false, reason: this.inventory ? 'no path to it on any FC HBA' : 'not scanned yet', lunNumbers: [], activePaths: 0 };
        return { wwn, visible: true, usable: lun.usable, ...(lun.reason ? { reason: lun.reason } : {}), lunNumbers: lun.lunNumbers, activePaths: lun.activePaths, ...(lun.device ? { device: lun.device } : {}) };
      });
      const bad = luns.filter((l) => !l.usable);
      const size = (wwn: string) => this.find(wwn)?.sizeBytes ?? 0;
      const free = luns.filter((l) => l.usable && this.keysByWwn.get(l.wwn)?.keys?.length === 0).reduce((s, l) => s + size(l.wwn), 0);
      return {
        name: ds.name,
        accessible: bad.length === 0,
        ...(bad.length > 0 ? { error: bad.map((l) => `LUN ${l.wwn}: ${l.reason}`).join('; ') } : {}),
        capacityBytes: luns.reduce((s, l) => s + size(l.wwn), 0),
        freeBytes: free,
        luns,
      };
    });
  }
}
