/**
 * The agent side of @motus/storage-iscsi: one initiator session per visible
 * datastore, the LUNs each shows (identity, size, registered keys) for the
 * host's facts, and the ownership of VM disks' LUNs (lun-lease.ts) as the
 * StorageProvider the kernel calls before a VM starts, at switchover and when
 * it stops.
 */
import {
  LeaseSet, MotusError, keepRecent, roundMs,
  type DatastoreInfo, type DiskLeaseFacts, type DiskLeaseLoss, type DiskLeaseRelease, type DiskSpec, type Logger, type LunView, type StorageMetrics, type StorageProvider,
} from '@motus/sdk';
import type { Subscription } from 'rxjs';
import type { IscsiDatastoreConfig, IscsiPluginConfig } from './config.js';
import { locateDisk, type DiskLocation } from './disk-url.js';
import { initiatorName, keyHex, reservationKey } from './host-identity.js';
import { IscsiSession } from './iscsi-session.js';
import { checkLease, giveLun, reclaimLun, takeLun, type LunRef } from './lun-lease.js';

/** A LUN as this host sees it: the SDK's LunView without the hosts that see it. */
export type IscsiLunFacts = Omit<LunView, 'seenBy'>;

export interface IscsiDatastoreFacts {
  name: string;
  portal: string;
  target: string;
  accessible: boolean;
  error?: string;
  capacityBytes: number;
  /** Bytes of the LUNs no host holds. */
  freeBytes: number;
  luns: IscsiLunFacts[];
  scannedAt?: string;
}

export interface IscsiLeaseFacts extends DiskLeaseFacts {
  lun: number;
  naa?: string;
  url: string;
}

export interface IscsiReleaseFacts extends DiskLeaseRelease {
  datastore: string;
  lun: number;
}

export interface IscsiLostFacts extends DiskLeaseLoss {
  datastore: string;
  lun: number;
  /** Pids of this host's processes that had the LUN open, killed. */
  fenced: number[];
}

/** `HostInfo.plugins['@motus/storage-iscsi']`. */
export interface IscsiHostFacts {
  host: string;
  initiatorIqn: string;
  key: string;
  datastores: IscsiDatastoreFacts[];
  /** Configured datastores this host is not meant to see. */
  notVisible: string[];
  leases: IscsiLeaseFacts[];
  releases: IscsiReleaseFacts[];
  lost: IscsiLostFacts[];
}

export interface IscsiProviderOptions {
  host: string;
  config: IscsiPluginConfig;
  logger: Logger;
  /** Ends this host's writers of a disk URL (writer-fence.ts); returns their pids. */
  fence(url: string): number[];
  /** Where scans and lease checks are counted (the agent's /metrics). */
  metrics?: StorageMetrics;
}

interface Lease extends IscsiLeaseFacts {}

interface Link {
  config: IscsiDatastoreConfig;
  session?: IscsiSession;
  opening?: Promise<IscsiSession>;
  events?: Subscription;
  /** Reclaims in progress after a reconnection. */
  reclaiming?: number;
  /** Reclaims of this datastore's leases, run one after the other. */
  reclaimQueue: Promise<void>;
  /** Counts lost and restored connections. */
  epoch: number;
  facts: IscsiDatastoreFacts;
}

export class IscsiStorageProvider implements StorageProvider {
  readonly kind = 'iscsi';
  readonly initiatorIqn: string;
  readonly key: bigint;
  private readonly links = new Map<string, Link>();
  private readonly leases = new LeaseSet<Lease>();
  private readonly releases: IscsiReleaseFacts[] = [];
  private readonly lost: IscsiLostFacts[] = [];
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly hostsByKey = new Map<bigint, string>();
  private closed = false;
  private checking = false;
  private scanning = false;

  constructor(private readonly options: IscsiProviderOptions) {
    const { host, config } = options;
    this.initiatorIqn = initiatorName(config.initiatorPrefix, host);
    this.key = reservationKey(host);
    for (const name of [host, ...config.datastores.flatMap((d) => d.hosts ?? [])]) this.hostsByKey.set(reservationKey(name), name);
    for (const ds of config.datastores) {
      if (ds.hosts && !ds.hosts.includes(host)) continue;
      this.links.set(ds.name, {
        config: ds,
        epoch: 0,
        reclaimQueue: Promise.resolve(),
        facts: { name: ds.name, portal: ds.portal, target: ds.target, accessible: false, error: 'not scanned yet', capacityBytes: 0, freeBytes: 0, luns: [] },
      });
    }
  }

  /** First scan, then the periodic scan and lease check. A datastore that cannot be reached is a fact, not a failure. */
  async start(): Promise<void> {
    await this.scan();
    await this.dropStaleRegistrations();
    const every = (ms: number, fn: () => Promise<void>) => {
      const t = setInterval(() => void fn().catch((err: unknown) => this.options.logger.warn('iSCSI background task failed', { error: (err as Error).message })), ms);
      t.unref();
      this.timers.push(t);
    };
    every(this.options.config.factsRefreshMs, () => this.scan());
    every(this.options.config.leaseCheckMs, () => this.checkLeases());
  }

  ownerOf = (key: bigint): string | undefined => this.hostsByKey.get(key);

  /**
   * An operator's act on a LUN stuck with a registration (a host that stays down
   * still holds it): removes `victim`'s key (PREEMPT), or every key (`all`, with
   * CLEAR). This host speaks through its own registration, made for the purpose
   * and dropped afterwards. A host whose registration goes stops its writers at
   * its next lease check (the fence), so a wrongly preempted live host loses
   * its VM rather than sharing the LUN.
   */
  async preemptLun(datastore: string, lunNumber: number, victim: { host: string } | { all: true }): Promise<{ before: string[]; after: string[]; removed: string[] }> {
    const link = this.links.get(datastore);
    if (!link) throw new MotusError('MOTUS_E_DATASTORE_NOT_VISIBLE', `host ${this.options.host} does not see iSCSI datastore ${datastore}`, { datastore, host: this.options.host });
    if (this.leases.values().some((l) => l.datastore === datastore && l.lun === lunNumber)) {
      throw new MotusError('MOTUS_E_INVALID_REQUEST', `host ${this.options.host} holds LUN ${lunNumber} of ${datastore} for a VM of its own; preempt from another host`, { datastore, lun: lunNumber });
    }
    const lun = (await this.sessionOf(link)).lun(lunNumber);
    const before = [...new Set((await lun.readKeys()).keys)];
    let removed: bigint[];
    if ('all' in victim) {
      removed = before.filter((k) => k !== this.key);
      await lun.registerAndIgnore(this.key);
      await lun.clear(this.key);
    } else {
      const key = reservationKey(victim.host);
      if (key === this.key) throw new MotusError('MOTUS_E_INVALID_REQUEST', `host ${this.options.host} cannot preempt its own registration; preempt from another host`, { datastore, lun: lunNumber });
      if (!before.includes(key)) {
        throw new MotusError('MOTUS_E_NOT_FOUND', `host ${victim.host} (key ${keyHex(key)}) is not registered on LUN ${lunNumber} of ${datastore}; registered: ${before.map((k) => this.ownerOf(k) ?? keyHex(k)).join(', ') || 'nobody'}`, {
          datastore,
          lun: lunNumber,
          keys: before.map(keyHex),
        });
      }
      removed = [key];
      await lun.registerAndIgnore(this.key);
      try {
        await lun.preempt(this.key, key, 'WRITE_EXCLUSIVE_REGISTRANTS_ONLY');
      } finally {
        await lun.unregister(this.key).catch(() => undefined);
      }
    }
    const after = [...new Set((await lun.readKeys()).keys)];
    this.options.logger.warn('LUN registration preempted by an operator', { datastore, lun: lunNumber, removed: removed.map(keyHex) });
    await this.scanOne(link);
    const name = (k: bigint) => this.ownerOf(k) ?? keyHex(k);
    return { before: before.map(name), after: after.map(name), removed: removed.map(name) };
  }

  owns(disk: DiskSpec): boolean {
    return locateDisk(this.options.config.datastores, disk.path) !== undefined;
  }

  async datastores(): Promise<DatastoreInfo[]> {
    return [...this.links.values()].map(({ config, facts }) => ({
      name: config.name,
      kind: 'iscsi',
      url: `iscsi://${config.portal}/${config.target}`,
      capacityBytes: facts.capacityBytes,
      freeBytes: facts.freeBytes,
      accessible: facts.accessible,
    }));
  }

  async acquire(vm: string, disks: readonly DiskSpec[]): Promise<void> {
    await this.leases.acquireAll(disks, (disk) => this.take(vm, disk), (taken) => this.release(vm, taken));
  }

  async release(vm: string, disks: readonly DiskSpec[]): Promise<void> {
    await this.leases.releaseAll(vm, disks, async (lease, disk) => {
      try {
        const session = await this.sessionOf(this.links.get(lease.datastore)!);
        const r = await giveLun(session.lun(lease.lun), this.key);
        keepRecent(this.releases, { vm, disk: disk.id, datastore: lease.datastore, lun: lease.lun, at: new Date().toISOString(), ms: roundMs(r.ms), commands: r.commands });
        this.options.logger.info('LUN released', { vm, disk: disk.id, datastore: lease.datastore, lun: lease.lun, ms: roundMs(r.ms) });
      } catch (err) {
        this.options.logger.error('could not release a LUN; its key stays registered until this host takes and gives it again', {
          vm, disk: disk.id, datastore: lease.datastore, lun: lease.lun, error: (err as Error).message,
        });
        throw err;
      }
    }, { concurrently: true });
  }

  facts(): IscsiHostFacts {
    return {
      host: this.options.host,
      initiatorIqn: this.initiatorIqn,
      key: keyHex(this.key),
      datastores: [...this.links.values()].map((l) => l.facts),
      notVisible: this.options.config.datastores.filter((d) => !this.links.has(d.name)).map((d) => d.name),
      leases: this.leases.values().map((l) => ({ ...l })),
      releases: [...this.releases],
      lost: [...this.lost],
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    await Promise.allSettled(
      [...this.links.values()].map(async (link) => {
        link.events?.unsubscribe();
        const s = link.session;
        link.session = undefined;
        if (s) await withTimeout(s.logout(), 5_000).catch(() => undefined);
      }),
    );
  }

  // ---- ownership ----

  private async take(vm: string, disk: DiskSpec): Promise<void> {
    const location = locateDisk(this.options.config.datastores, disk.path)!;
    const link = this.links.get(location.datastore);
    if (!link) {
      throw new MotusError('MOTUS_E_DATASTORE_NOT_VISIBLE', `host ${this.options.host} does not see iSCSI datastore ${location.datastore} (not in its hosts), which holds disk ${disk.id} of VM ${vm}`, {
        host: this.options.host, datastore: location.datastore, disk: disk.id, vm,
      });
    }
    if (this.leases.has(vm, disk.id)) return;
    const session = await this.sessionOf(link).catch((err: unknown) => {
      throw new MotusError('MOTUS_E_DATASTORE_NOT_VISIBLE', `host ${this.options.host} cannot reach iSCSI datastore ${location.datastore}: ${(err as Error).message}`, {
        host: this.options.host, datastore: location.datastore, disk: disk.id, vm,
      }, { cause: err });
    });
    const known = link.facts.luns.find((l) => l.lun === location.lun);
    if (link.facts.scannedAt && link.facts.accessible && !known) {
      throw new MotusError('MOTUS_E_ISCSI_LUN_NOT_FOUND', `iSCSI datastore ${location.datastore} presents no disk LUN ${location.lun} (disk ${disk.id} of VM ${vm})`, {
        datastore: location.datastore, lun: location.lun, disk: disk.id, vm,
      });
    }
    const ref: LunRef = { datastore: location.datastore, lun: location.lun, naa: known?.naa };
    const r = await takeLun(session.lun(location.lun), this.key, ref, this.ownerOf).catch((err: unknown) => {
      if (err instanceof MotusError && err.code === 'MOTUS_E_SCSI_ILLEGAL_REQUEST') {
        throw new MotusError('MOTUS_E_ISCSI_LUN_NOT_FOUND', `iSCSI datastore ${location.datastore} refused LUN ${location.lun}: ${err.message}`, { datastore: location.datastore, lun: location.lun }, { cause: err });
      }
      throw err;
    });
    const lease: Lease = {
      vm, disk: disk.id, datastore: location.datastore, lun: location.lun, url: location.url,
      since: new Date().toISOString(), acquireMs: roundMs(r.ms), commands: r.commands,
      ...(known?.naa ? { naa: known.naa } : {}),
    };
    this.leases.add(lease);
    if (known) known.keys = [keyHex(this.key)], known.owner = this.options.host;
    this.options.logger.info('LUN taken', { vm, disk: disk.id, datastore: lease.datastore, lun: lease.lun, naa: lease.naa, ms: lease.acquireMs, droppedOwnStale: r.droppedOwnStale });
  }

  /**
   * A starting agent holds no lease, and this host's earlier QEMUs died with its
   * earlier agent (they run under --pdeathsig KILL), so any registration of our
   * key is stale: give it back, so a crashed host does not keep its VMs' LUNs
   * from being started elsewhere once its agent is back.
   */
  private async dropStaleRegistrations(): Promise<void> {
    const mine = keyHex(this.key);
    for (const link of this.links.values()) {
      for (const lun of link.facts.luns.filter((l) => l.keys.includes(mine))) {
        try {
          const session = await this.sessionOf(link);
          await giveLun(session.lun(lun.lun), this.key);
          lun.keys = lun.keys.filter((k) => k !== mine);
          delete lun.owner;
          this.options.logger.warn('gave back a LUN registration left by an earlier run of this host', { datastore: link.config.name, lun: lun.lun, naa: lun.naa });
        } catch (err) {
          this.options.logger.warn('could not give back a stale LUN registration', { datastore: link.config.name, lun: lun.lun, error: (err as Error).message });
        }
      }
    }
  }

  private async checkLeases(): Promise<void> {
    if (this.checking || this.closed) return;
    this.checking = true;
    try {
      for (const lease of this.leases.values()) {
        const link = this.links.get(lease.datastore)!;
        // A reconnection's reclaim decides for its leases; a check in between would see the gap.
        if (link.reclaiming || !link.session) continue;
        const epoch = link.epoch;
        let check;
        const started = performance.now();
        const seconds = () => (performance.now() - started) / 1000;
        try {
          check = await checkLease((await this.sessionOf(link)).lun(lease.lun), this.key);
          this.options.metrics?.renewal(lease.datastore, seconds(), check.held);
          // A command re-issued on a new connection may see the target before the reclaim did.
          if (link.epoch !== epoch || link.reclaiming) continue;
        } catch (err) {
          this.options.metrics?.renewal(lease.datastore, seconds(), false);
          // Unreachable is not lost: nobody can take the LUN without removing our key first.
          this.options.logger.warn('could not check a LUN lease', { vm: lease.vm, disk: lease.disk, error: (err as Error).message });
          continue;
        }
        if (!check.held && this.leases.get(lease.vm, lease.disk) === lease) this.loseLease(lease, check.reason);
      }
    } finally {
      this.checking = false;
    }
  }

  private async reclaim(link: Link, session: IscsiSession): Promise<void> {
    link.reclaiming = (link.reclaiming ?? 0) + 1;
    // One at a time: two reconnections in a row (a target coming back) would otherwise
    // race two takes of our own LUN, and the loser's failed RESERVE reads as another
    // host taking it — the lease counted lost and our own VM fenced.
    const run = link.reclaimQueue.then(() => this.reclaimLeases(link, session));
    link.reclaimQueue = run.catch(() => undefined);
    try {
      await run;
    } finally {
      link.reclaiming--;
    }
  }

  private async reclaimLeases(link: Link, session: IscsiSession): Promise<void> {
    for (const lease of this.leases.values().filter((l) => l.datastore === link.config.name)) {
      const epoch = link.epoch;
      try {
        const r = await reclaimLun(session.lun(lease.lun), this.key, { datastore: lease.datastore, lun: lease.lun, naa: lease.naa }, this.ownerOf);
        // Reconnected again meanwhile: a RESERVE sent on the new, unregistered nexus
        // fails like a contender's would. The reclaim of that reconnection decides.
        if (!r.held && link.epoch !== epoch) {
          this.options.logger.warn('a LUN reclaim was cut by another reconnection; the next one decides', { vm: lease.vm, disk: lease.disk, lun: lease.lun, reason: r.reason });
          continue;
        }
        if (!r.held) this.loseLease(lease, r.reason);
        else this.options.logger.info('LUN registration restored after a reconnection', { vm: lease.vm, disk: lease.disk, lun: lease.lun });
      } catch (err) {
        this.options.logger.warn('could not restore a LUN registration after a reconnection', { vm: lease.vm, disk: lease.disk, error: (err as Error).message });
      }
    }
  }

  private loseLease(lease: Lease, reason: string): void {
    this.leases.delete(lease);
    const fenced = this.options.fence(lease.url);
    keepRecent(this.lost, { vm: lease.vm, disk: lease.disk, datastore: lease.datastore, lun: lease.lun, reason, at: new Date().toISOString(), fenced });
    const err = new MotusError('MOTUS_E_ISCSI_LEASE_LOST', `host ${this.options.host} lost LUN ${lease.lun} of iSCSI datastore ${lease.datastore} (disk ${lease.disk} of VM ${lease.vm}): ${reason}`, {
      host: this.options.host, vm: lease.vm, disk: lease.disk, datastore: lease.datastore, lun: lease.lun, fenced,
    });
    this.options.logger.error(err.message, { code: err.code, fenced });
  }

  // ---- sessions and scans ----

  private sessionOf(link: Link): Promise<IscsiSession> {
    if (this.closed) return Promise.reject(new MotusError('MOTUS_E_ISCSI_DISCONNECTED', 'the iSCSI storage provider is closed'));
    if (link.session) return Promise.resolve(link.session);
    if (link.opening) return link.opening;
    const { config } = this.options;
    const ds = link.config;
    link.opening = IscsiSession.login({
      portal: ds.portal,
      targetIqn: ds.target,
      initiatorIqn: this.initiatorIqn,
      ...(ds.chap ? { chap: ds.chap } : {}),
      ...(ds.mutualChap ? { mutualChap: ds.mutualChap } : {}),
      connectTimeoutMs: Math.min(config.commandTimeoutMs, 5_000),
      loginTimeoutMs: config.commandTimeoutMs,
      commandTimeoutMs: config.commandTimeoutMs,
      reconnectTimeoutMs: config.reconnectTimeoutMs,
    }).then(
      (session) => {
        link.opening = undefined;
        link.session = session;
        link.epoch++;
        link.events = session.events$.subscribe({
          next: (event) => {
            if (event.type === 'disconnected' || event.type === 'reconnected' || event.type === 'closed') link.epoch++;
            if (event.type === 'disconnected') this.options.logger.warn('iSCSI connection lost; reconnecting', { datastore: ds.name, error: event.error.message });
            if (event.type === 'reconnected') void this.reclaim(link, session);
            if (event.type === 'closed' && link.session === session) {
              link.session = undefined;
              link.events?.unsubscribe();
            }
          },
          error: () => undefined,
        });
        // A new session after one was lost: tgt keeps the old session's registrations, not for this one.
        if (this.leases.values().some((l) => l.datastore === ds.name)) void this.reclaim(link, session);
        return session;
      },
      (err: unknown) => {
        link.opening = undefined;
        throw err;
      },
    );
    return link.opening;
  }

  private async scan(): Promise<void> {
    if (this.scanning || this.closed) return;
    this.scanning = true;
    try {
      await Promise.all([...this.links.values()].map((link) => this.scanOne(link)));
    } finally {
      this.scanning = false;
    }
  }

  private async scanOne(link: Link): Promise<void> {
    const started = performance.now();
    const scanned = (ok: boolean) => this.options.metrics?.operation(link.config.name, 'check', (performance.now() - started) / 1000, ok);
    try {
      const session = await this.sessionOf(link);
      const luns: IscsiLunFacts[] = [];
      for (const decoded of await session.reportLuns()) {
        if (decoded.lun === undefined) continue;
        const lun = session.lun(decoded.lun);
        const inquiry = await lun.inquiry();
        // LUN 0 of many targets is the controller, not a disk.
        if (inquiry.peripheralDeviceType !== 0 || inquiry.peripheralQualifier !== 0) continue;
        const [ident, capacity, keys] = await Promise.all([lun.deviceIdentification(), lun.capacity(), lun.readKeys()]);
        const distinct = [...new Set(keys.keys)];
        const owner = distinct.length === 1 ? this.ownerOf(distinct[0]!) : undefined;
        luns.push({
          lun: decoded.lun,
          ...(ident.naa ? { naa: ident.naa } : {}),
          bytes: Number(capacity.bytes),
          blockSize: capacity.blockSize,
          vendor: inquiry.vendor,
          product: inquiry.product,
          keys: distinct.map(keyHex),
          ...(owner ? { owner } : {}),
        });
      }
      const capacityBytes = luns.reduce((s, l) => s + l.bytes, 0);
      link.facts = {
        name: link.config.name, portal: link.config.portal, target: link.config.target, accessible: true,
        capacityBytes, freeBytes: luns.filter((l) => l.keys.length === 0).reduce((s, l) => s + l.bytes, 0), luns, scannedAt: new Date().toISOString(),
      };
      scanned(true);
    } catch (err) {
      scanned(false);
      link.facts = { ...link.facts, accessible: false, error: (err as Error).message, scannedAt: new Date().toISOString() };
    }
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new MotusError('MOTUS_E_TIMEOUT', `no answer within ${ms} ms`)), ms);
    p.then((v) => (clearTimeout(t), resolve(v)), (e: unknown) => (clearTimeout(t), reject(e)));
  });
}

export type { DiskLocation };
