/**
 * The disk leases a block storage provider holds on one host (a LUN per VM
 * disk), kept by VM and disk, with the all-or-nothing take and the give-back of
 * a VM's disks that every such provider does the same way. How one LUN is taken
 * or given stays with the provider.
 */
import type { DiskSpec } from '../model.js';

/** What every lease records: whose disk, where, since when, and what taking it cost. */
export interface DiskLeaseFacts {
  vm: string;
  disk: string;
  datastore: string;
  since: string;
  /** How long the take took (the destination's share of a switchover), and its commands. */
  acquireMs: number;
  commands: number;
}

/** A lease given back. */
export interface DiskLeaseRelease {
  vm: string;
  disk: string;
  at: string;
  ms: number;
  commands: number;
}

/** A lease this host found gone (another host took the LUN). */
export interface DiskLeaseLoss {
  vm: string;
  disk: string;
  reason: string;
  at: string;
}

/** How many releases and losses a provider keeps for its facts. */
export const RECENT_LEASE_EVENTS = 20;

export class LeaseSet<L extends { vm: string; disk: string }> {
  private readonly byDisk = new Map<string, L>();

  get(vm: string, disk: string): L | undefined {
    return this.byDisk.get(leaseKey(vm, disk));
  }

  has(vm: string, disk: string): boolean {
    return this.byDisk.has(leaseKey(vm, disk));
  }

  add(lease: L): void {
    this.byDisk.set(leaseKey(lease.vm, lease.disk), lease);
  }

  delete(lease: { vm: string; disk: string }): void {
    this.byDisk.delete(leaseKey(lease.vm, lease.disk));
  }

  values(): L[] {
    return [...this.byDisk.values()];
  }

  /**
   * Takes the disks one by one; when one cannot be taken, gives back those this
   * call took (a VM starts with all its disks or none) and throws that failure.
   */
  async acquireAll(disks: readonly DiskSpec[], take: (disk: DiskSpec) => Promise<void>, giveBack: (taken: DiskSpec[]) => Promise<void>): Promise<void> {
    const taken: DiskSpec[] = [];
    try {
      for (const disk of disks) {
        await take(disk);
        taken.push(disk);
      }
    } catch (err) {
      await giveBack(taken).catch(() => undefined);
      throw err;
    }
  }

  /**
   * Forgets the VM's leases of these disks and gives each back (in turn, or all
   * at once when `concurrently`). A lease is forgotten even when its give-back
   * fails: the host no longer means to write; the first failure is thrown after
   * every disk was tried.
   */
  async releaseAll(vm: string, disks: readonly DiskSpec[], give: (lease: L, disk: DiskSpec) => Promise<void>, options: { concurrently?: boolean } = {}): Promise<void> {
    const failures: unknown[] = [];
    const releaseOne = async (disk: DiskSpec): Promise<void> => {
      const lease = this.get(vm, disk.id);
      if (!lease) return;
      this.delete(lease);
      try {
        await give(lease, disk);
      } catch (err) {
        failures.push(err);
      }
    };
    if (options.concurrently) await Promise.all(disks.map(releaseOne));
    else for (const disk of disks) await releaseOne(disk);
    if (failures.length > 0) throw failures[0];
  }
}

/** Adds to a list of recent events, keeping the last RECENT_LEASE_EVENTS. */
export function keepRecent<T>(list: T[], item: T): void {
  list.push(item);
  if (list.length > RECENT_LEASE_EVENTS) list.splice(0, list.length - RECENT_LEASE_EVENTS);
}

/** Milliseconds to two decimals, as the facts show them. */
export function roundMs(ms: number): number {
  return Math.round(ms * 100) / 100;
}

function leaseKey(vm: string, disk: string): string {
  return `${vm}\0${disk}`;
}
