import { createToken } from '../tokens.js';
import type { DiskSpec } from '../model.js';

/** A datastore as a host sees it. */
export interface DatastoreInfo {
  name: string;
  kind: string;
  url: string;
  capacityBytes: number;
  freeBytes: number;
  accessible: boolean;
}

/** One LUN of a SAN datastore as an operator sees it (`motus datastore show`). */
export interface LunView {
  lun: number;
  /** Identity every host agrees on (VPD page 0x83). */
  naa?: string;
  bytes: number;
  blockSize: number;
  vendor: string;
  product: string;
  /** Registered reservation keys (hex). */
  keys: string[];
  /** The host whose key is registered, when it is a host of the site. */
  owner?: string;
  /** Hosts that see the LUN. */
  seenBy: string[];
}

/** A SAN datastore's LUNs merged from every host's report: the answer of a storage plugin's `datastores` method. */
export interface LunDatastoreView {
  name: string;
  portal: string;
  target: string;
  /** Hosts that reach the target, and those that report an error. */
  seenBy: string[];
  unreachable: Array<{ host: string; error: string }>;
  capacityBytes: number;
  /** Bytes of the LUNs nobody holds. */
  freeBytes: number;
  luns: LunView[];
}

/**
 * Shared storage as seen from one host (agent role): which datastores it reaches,
 * and the ownership lease of a VM's disks. The kernel takes the lease before a VM
 * starts on a host, and at switchover releases it on the source before the
 * destination takes it, while both QEMUs are stopped.
 */
export interface StorageProvider {
  readonly kind: string;
  datastores(): Promise<DatastoreInfo[]>;
  /** Whether this provider holds the disk (by its path or URI); the kernel gives each provider only its own disks. */
  owns(disk: DiskSpec): boolean;
  /** Take the lease of a VM's disks for this host; rejects (coded) if another live host holds it. */
  acquire(vm: string, disks: readonly DiskSpec[]): Promise<void>;
  /** Give the lease up (source side of a switchover, VM stop, rollback on the destination). */
  release(vm: string, disks: readonly DiskSpec[]): Promise<void>;
  /**
   * Where this host's hypervisor opens a disk this provider owns, when that is not
   * `disk.path` itself: storage whose devices are named per host (an FC LUN named by
   * its WWN is /dev/mapper/mpathb on one host and /dev/sdc on another). Called on
   * the host, before the VM starts there (also for an incoming migration); rejects
   * (coded) when the host cannot reach the disk. Absent: `disk.path` is opened as is.
   */
  localPath?(disk: DiskSpec): Promise<string>;
}

export const StorageProviderToken = createToken<StorageProvider>('storage.provider');
