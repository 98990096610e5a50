/**
 * The placement engine's view of a site: plain data, no I/O, so the advisor and
 * the balancer run the same on the live site and on a simulated one of 1,000 hosts.
 */

/** How placement sees a host: `degraded` and `maintenance` hosts take no VMs. */
export type PlacementHostState = 'connected' | 'disconnected' | 'maintenance' | 'degraded';

export interface PlacementHost {
  name: string;
  cluster: string;
  state: PlacementHostState;
  cpus: number;
  /** Memory offered to VMs. */
  memoryTotalMiB: number;
  /** Memory promised to migrations on their way here (their destination process does not exist yet). */
  reservedMiB: number;
  /** CPU used outside the VMs (the host's own work), in cores. */
  baseCpu: number;
  /** Bytes/s a migration stream into this host gets: measured from past migrations, else the network's speed. */
  linkBytesPerSec: number;
  /** Where that figure comes from, for the reasons shown to people. */
  linkSource: string;
  activeMigrations: number;
  maxMigrations: number;
}

export interface PlacementVm {
  name: string;
  host: string;
  pool: string;
  memoryMiB: number;
  vcpus: number;
  /** Measured CPU use, in cores. */
  cpuUsed: number;
  /** Measured resident memory, MiB (the configured size when not measured yet). */
  memoryUsedMiB: number;
  /** Guest memory dirtied per second, bytes (0 when unknown). */
  dirtyBytesPerSec: number;
  /** Running and not being migrated: may be moved. */
  movable: boolean;
}

export interface PoolModel {
  name: string;
  cluster: string;
  shares: number;
  reservation: { memoryMiB?: number | undefined; cpus?: number | undefined };
  limit: { memoryMiB?: number | undefined; cpus?: number | undefined };
}

export type VmHostMode = 'must' | 'must-not' | 'should' | 'should-not';

export interface RulesModel {
  /** Each set: VMs that run on one host. */
  affinity: Array<{ name: string; vms: string[] }>;
  /** Each set: VMs that never share a host. */
  antiAffinity: Array<{ name: string; vms: string[] }>;
  vmHost: Array<{ name: string; vms: string[]; hosts: string[]; mode: VmHostMode }>;
}

export interface ClusterModel {
  hosts: PlacementHost[];
  vms: PlacementVm[];
  pools: PoolModel[];
  rules: RulesModel;
}

export const EMPTY_RULES: RulesModel = { affinity: [], antiAffinity: [], vmHost: [] };
