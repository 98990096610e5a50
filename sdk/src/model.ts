import type { CpuMask } from './contracts/cpu.js';
/** The data every part of Motus shares: VM specs, hosts, VMs, migration figures. */

export interface KernelBoot {
  kind: 'kernel';
  kernel: string;
  initrd?: string;
  cmdline?: string;
}

export interface DiskBoot {
  kind: 'disk';
}

export interface DiskSpec {
  /** Device id inside the VM (unique per VM). */
  id: string;
  /** Path (or URI QEMU understands) of the disk image, the same on every host. */
  path: string;
  format: 'raw' | 'qcow2';
  readOnly?: boolean;
}

export interface NicSpec {
  id: string;
  /** Locally administered unicast MAC, kept across migrations. */
  mac: string;
  /** Network (port group) name; the network provider maps it to a backend. */
  network: string;
}

export interface VmSpec {
  name: string;
  memoryMiB: number;
  vcpus: number;
  /**
   * QEMU CPU model with feature flags, e.g. 'qemu64' or 'Skylake-Client,-avx512f':
   * the `-cpu` value QEMU is started with on every host the VM runs on. Left out
   * on a site with the cpu-compat plugin, the server records the cluster baseline
   * with `cpuMask` applied here when the VM is created.
   */
  cpuModel?: string;
  /** Features to hide from the guest, or a model to pin, on top of the cluster baseline (cpu-compat). */
  cpuMask?: CpuMask;
  /** Labels an operator gives the VM (`web`, `tier-2`): schedules can target every VM with a tag. */
  tags?: string[];
  /** Machine type; pinned so source and destination build the same device model. */
  machine?: string;
  boot: KernelBoot | DiskBoot;
  disks?: DiskSpec[];
  nics?: NicSpec[];
}

/** degraded: health signals say the host may fail; it takes no VMs and policy may evacuate it. */
export type HostState = 'connected' | 'disconnected' | 'maintenance' | 'degraded';

export interface HostInfo {
  name: string;
  state: HostState;
  /** Agent API address, e.g. http://127.0.0.1:7301 */
  url: string;
  /** Address migration streams are sent to on this host. */
  migrationAddress: string;
  memoryTotalMiB: number;
  memoryUsedMiB: number;
  cpus: number;
  hypervisor?: { kind: string; version: string; accelerator: string };
  /** Facts plugins report about this host, by plugin name (see PluginContext.reportFacts). */
  plugins: Record<string, unknown>;
  /** Whether the host can send and receive encrypted migration streams, and why not. */
  migrationTls?: { ready: boolean; reason?: string };
  lastSeen?: string;
}

export type VmState =
  | 'starting'
  | 'running'
  | 'paused'
  | 'migrating'
  | 'stopped'
  | 'crashed'
  | 'unknown';

export interface VmInfo {
  name: string;
  host: string;
  state: VmState;
  spec: VmSpec;
  pid?: number;
  serialLog?: string;
  startedAt?: string;
}

export type Priority = 'high' | 'normal';

export interface MigrationRequest {
  vm: string;
  destination: string;
  requestedBy?: string;
  priority?: Priority;
  /** Go even though the destination breaks a placement rule or leaves the VM's cluster (audited as placement.override). */
  ignoreRules?: boolean;
}

/** One sample of a running migration, as the hypervisor reports it. */
export interface MigrationProgress {
  status: MigrationStatus;
  totalTimeMs: number;
  /** Pre-copy iteration (dirty-bitmap sync count). */
  round: number;
  totalBytes: number;
  transferredBytes: number;
  remainingBytes: number;
  /** Guest memory dirtied per second, bytes. */
  dirtyRateBytesPerSec: number;
  throughputBytesPerSec: number;
  expectedDowntimeMs?: number;
  /** Percentage of vCPU time the hypervisor's auto-converge throttle takes away (QEMU: cpu-throttle-percentage). */
  cpuThrottlePct?: number;
  /** Delta compression of re-sent pages, when armed (QEMU: xbzrle-cache). */
  xbzrle?: XbzrleStats;
  /**
   * The guest's heartbeat lines (`MOTUS-HB`) as the source host saw them arrive during
   * the migration, epoch ms: the last one before the switchover and the longest gap
   * between two (throttling shows there). On the terminal sample, when the guest prints them.
   */
  heartbeat?: { lastAt: number; longestGapMs: number };
  /** Final figures, present once status is 'completed'. */
  downtimeMs?: number;
  setupTimeMs?: number;
  error?: string;
}

/** How well re-sent pages delta-compress against the copy cached when they were last sent. */
export interface XbzrleStats {
  cacheBytes: number;
  /** Pages sent delta-encoded so far. */
  pages: number;
  /** Raw bytes of those pages over the bytes actually sent for them (2 = half the size). */
  encodingRate: number;
  /** Share of re-sent pages that were not in the cache (0–1). */
  cacheMissRate: number;
  /** Pages whose delta was larger than the page itself (sent raw). */
  overflow: number;
}

export type MigrationStatus =
  | 'none'
  | 'setup'
  | 'active'
  | 'pre-switchover'
  | 'device'
  | 'postcopy-active'
  | 'completed'
  | 'failed'
  | 'cancelling'
  | 'cancelled';

export type MigrationPhase =
  | 'request'
  | 'validate'
  | 'prepare'
  | 'precopy'
  | 'switchover'
  | 'announce'
  | 'cleanup';

export interface MigrationSummary {
  id: string;
  vm: string;
  source: string;
  destination: string;
  requestedBy: string;
  priority: Priority;
  state: 'queued' | 'running' | 'completed' | 'failed' | 'cancelled' | 'rejected';
  phase?: MigrationPhase;
  requestedAt: string;
  finishedAt?: string;
  downtimeMs?: number;
  totalTimeMs?: number;
  bytes?: number;
  rounds?: number;
  /** From the API call to the hypervisor's migrate command. */
  controlPlaneMs?: number;
  /** Bytes sent over the VM's memory size (1 = every page once). */
  bytesPerMemory?: number;
  /** Highest vCPU throttle the convergence policy reached, %. */
  throttlePct?: number;
  /** The switchover target (hypervisor downtime limit) in force at the end, ms. */
  switchoverTargetMs?: number;
  /** Whether the end of the copy ran in post-copy mode. */
  postcopy?: boolean;
  /**
   * The longest pause the guest saw: the longest gap in its heartbeat lines on the
   * hosts' clocks, across the switchover (null: the guest prints no heartbeat).
   */
  guestPauseMs?: number | null;
  /** Whether the memory stream went over TLS (known once validated). */
  encrypted?: boolean;
  error?: { code: string; message: string; data?: Record<string, unknown> };
  /** Steps that failed after the VM resumed on its destination (see the 'warning' event); the VM stayed there. */
  warnings?: Array<{ step: string; code: string; message: string; data?: Record<string, unknown> }>;
}
