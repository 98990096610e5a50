import { createToken } from '../tokens.js';

/** A datastore as a host sees it. */
export interface DatastoreInfo {
  name: string;
  kind: string;
  url: string;
  capacityBytes: number;
  freeBytes: number;
  accessible: boolean;
}

/**
 * Shared storage as seen from one host: which datastores it reaches, and the
 * ownership lease of a VM's disks, handed over at switchover.
 */
export interface StorageProvider {
  readonly kind: string;
  datastores(): Promise<DatastoreInfo[]>;
  /** Take the lease of a VM's disks for this host; rejects if another live host holds it. */
  acquire(vm: string, disks: readonly string[]): Promise<void>;
  /** Give the lease up (source side of a switchover, or VM stop). */
  release(vm: string, disks: readonly string[]): Promise<void>;
}

export const StorageProviderToken = createToken<StorageProvider>('storage.provider');
