/** Types of the placement routes of the server API: host metrics and health, the migration wizard, balancing, maintenance. */

/** One sample of a host's use, taken by its agent from /proc (and QEMU for guests). */
export interface HostMetricsSample {
  at: string;
  cpus: number;
  /** Cores busy on the host (all processes), from /proc/stat. */
  cpuUsed: number;
  memoryTotalMiB: number;
  /** Host memory in use (MemTotal − MemAvailable), MiB. */
  memoryUsedMiB: number;
  vms: VmMetrics[];
  /** The sample was changed by the agent's test hook (metrics-override.json in its state folder). */
  overridden?: boolean;
}

export interface VmMetrics {
  name: string;
  /** Cores the QEMU process used (utime + stime), from /proc/<pid>/stat. */
  cpuUsed: number;
  /** Resident memory of the QEMU process, MiB, from /proc/<pid>/status. */
  rssMiB: number;
  /** Guest memory dirtied per second (QEMU calc-dirty-rate), when measured. */
  dirtyBytesPerSec?: number;
  /** Balloon size (QEMU query-balloon), when the VM has a balloon. */
  balloonBytes?: number;
}

/** Hardware state an agent reads under its sysRoot (EDAC and thermal zones). */
export interface HardwareHealth {
  ecc?: { correctable: number; uncorrectable: number };
  thermal: Array<{ zone: string; celsius: number; criticalCelsius?: number }>;
}

export type HealthSignalKind = 'missed-heartbeats' | 'storage-path' | 'uplink-down' | 'ecc' | 'thermal' | 'overload';

export interface HealthSignal {
  kind: HealthSignalKind;
  detail: string;
  since: string;
}

export interface HostHealth {
  host: string;
  state: string;
  signals: HealthSignal[];
  /** When the host became degraded, and why. */
  degradedAt?: string;
}

/** A hard constraint a destination breaks. */
export interface Refusal {
  constraint: 'state' | 'same-host' | 'cluster' | 'memory' | 'affinity' | 'anti-affinity' | 'vm-host' | 'plugin';
  reason: string;
  /** The rule broken, for affinity, anti-affinity and vm-host refusals. */
  rule?: string;
}

/** A destination that can take the VM, its score (0–100, higher is better) and why. */
export interface RankedHost {
  host: string;
  score: number;
  reasons: string[];
  imbalanceAfter: number;
  loadAfter: number;
  freeMiBAfter: number;
  costSeconds: number;
  /** The dirty rate is at or above what the link can carry: pre-copy alone would not converge. */
  mayNotConverge: boolean;
}

export interface RefusedHost {
  host: string;
  refusals: Refusal[];
}

export interface Ranking {
  vm: string;
  /** Where the VM runs ('' for a VM about to start). */
  source: string;
  /** The source's cluster ('' for a VM about to start: every cluster is ranked, each against its own imbalance). */
  cluster: string;
  imbalanceBefore: number;
  /** Initial placement: the ranking of a VM not started yet (no copy to cost). */
  initial?: boolean;
  /** Best first. */
  candidates: RankedHost[];
  refused: RefusedHost[];
}

export interface ProposedMove {
  /** The VM moved; for an affinity group, its first member (all of them in `vms`). */
  vm: string;
  /** Every VM of an affinity group moved together, as one proposal (absent for a lone VM). */
  vms?: string[];
  from: string;
  to: string;
  /** Imbalance taken off the cluster by this move (negative only for a rule fix); a group's combined gain. */
  gain: number;
  imbalanceBefore: number;
  imbalanceAfter: number;
  /** Estimated copy time; a group's is the sum over its members. */
  costSeconds: number;
  reason: string;
  /** The task that carries it out, when the plan was applied (the first member's, for a group: all in `tasks`). */
  task?: string;
  /** A group's tasks, one per member, in the order of `vms`. */
  tasks?: string[];
}

export interface BalancePlan {
  cluster: string;
  threshold: number;
  /** The imbalance the threshold tolerates; above it the balancer moves VMs. */
  tolerance: number;
  imbalanceBefore: number;
  imbalanceAfter: number;
  moves: ProposedMove[];
  /** Why the pass stopped: balanced, budget spent, no gainful move. */
  stoppedBecause: string;
}

/** Why a VM started without a host went where it did (initial placement). */
export interface InitialPlacement {
  host: string;
  cluster: string;
  /** The cluster's balancing mode: partial or automatic (manual clusters only recommend). */
  mode: 'partial' | 'automatic';
  score: number;
  reasons: string[];
}

export interface ClusterInfo {
  name: string;
  hosts: Array<{ name: string; state: string; load: number; cpu: number; memory: number }>;
  imbalance: number;
  mode: 'manual' | 'partial' | 'automatic';
  threshold: number;
  intervalSeconds: number;
  lastPass?: BalancePlan & { at: string; applied: boolean };
}

export interface EvacuationMove {
  vm: string;
  to: string;
  score: number;
  costSeconds: number;
  reasons: string[];
  task?: string;
  state?: string;
}

export interface StuckVm {
  vm: string;
  /** Every other host's refusal, so the operator sees what to change. */
  refused: Array<{ host: string; reasons: string[] }>;
}

/** A host being emptied (maintenance or a degraded host's evacuation) and how far it got. */
export interface EvacuationInfo {
  host: string;
  why: 'maintenance' | 'degraded';
  state: 'evacuating' | 'done' | 'failed';
  startedAt: string;
  finishedAt?: string;
  by: string;
  /** In order: lowest risk (cheapest to move) first. */
  moves: EvacuationMove[];
  stuck: StuckVm[];
  /** VMs left running on the host (--allow-running, or a degraded host's VMs with nowhere to go). */
  leftRunning: string[];
  error?: string;
}
