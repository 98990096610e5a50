import type { HardwareHealth, HostMetricsSample, HypervisorFacts, MigrationProgress, MigrationTuning, VmRunState, VmSpec } from '@motus/sdk';
import type { LinkProbeOptions, LinkProbeResult, LinkProbeSink } from './link-probe.js';

/** What an agent reports about its host. */
export interface AgentFacts {
  name: string;
  migrationAddress: string;
  memoryTotalMiB: number;
  memoryUsedMiB: number;
  cpus: number;
  hypervisor: HypervisorFacts;
  vms: AgentVm[];
  /** Facts plugins report about this host, by plugin name. */
  plugins: Record<string, unknown>;
  /** Kinds of the storage providers on this host: a VM with disks here has leases to hand over. */
  storage: string[];
  /** The latest CPU and memory sample (placement); absent until the first is taken. */
  metrics?: HostMetricsSample;
  /** ECC and thermal state read under the host's sysRoot. */
  hardware?: HardwareHealth;
  /** Migration TLS credentials of this host (absent: an agent that predates them, so not ready). */
  migrationTls?: MigrationTlsFacts;
}

/** Whether this host can take part in an encrypted migration, and why not. */
export interface MigrationTlsFacts {
  ready: boolean;
  /** Why not, for the refusal under policy `required`. */
  reason?: string;
}

export interface IncomingOptions {
  /** Receive over TLS with this host's migration credentials. */
  tls?: boolean;
}

export interface OutgoingOptions {
  /** Send over TLS; the receiver's certificate must name `peer` (the destination host). */
  tls?: { peer: string };
}

/** A VM as the agent holding its process sees it. */
export interface AgentVm {
  name: string;
  /** incoming: waiting for a migration stream; outgoing: being sent away. */
  role: 'running' | 'incoming' | 'outgoing';
  spec: VmSpec;
  pid: number;
  serialLog: string;
  startedAt: string;
}

/**
 * The server's handle on one host's agent: in-process (the agent itself) or over
 * HTTP. The orchestrator only ever talks to hosts through this.
 */
export interface HostLink {
  readonly name: string;
  facts(): Promise<AgentFacts>;
  startVm(spec: VmSpec): Promise<AgentVm>;
  stopVm(name: string): Promise<void>;
  /**
   * Launch the VM waiting for a migration stream; returns the URI to send to.
   * `tuning` carries what both ends must agree on before the stream (multifd, postcopy);
   * `options.tls` receives it over TLS.
   */
  prepareIncoming(spec: VmSpec, migrationId: string, tuning?: MigrationTuning, options?: IncomingOptions): Promise<{ uri: string }>;
  /** Start sending the VM to `uri`; yields progress samples until a terminal status. */
  migrateOut(name: string, uri: string, tuning: MigrationTuning, migrationId: string, signal: AbortSignal, options?: OutgoingOptions): AsyncIterable<MigrationProgress>;
  /**
   * Destination side, before a migration: a one-shot sink on the migration address
   * for the link-rate probe (link-probe.ts); it closes after one probe or `lifetimeMs`.
   */
  openLinkProbe(lifetimeMs: number): Promise<LinkProbeSink>;
  /** Source side: push bytes to a destination's probe sink and return the rate they arrived at. */
  probeLink(sink: LinkProbeSink, options: LinkProbeOptions): Promise<LinkProbeResult>;
  continueMigration(name: string): Promise<void>;
  /** Change the running outgoing migration's tuning (the convergence policy's steps). */
  tuneMigration(name: string, tuning: MigrationTuning): Promise<void>;
  /** Switch the running outgoing migration to post-copy. */
  startPostcopy(name: string): Promise<void>;
  /**
   * Destination side: when the incoming copy's first heartbeat line (MOTUS-HB) arrived,
   * epoch ms, waiting up to timeoutMs; null when none came.
   */
  firstHeartbeat(name: string, timeoutMs: number): Promise<number | null>;
  cancelMigration(name: string): Promise<void>;
  /** The VM's run state, or 'absent' when no process holds it on this host. */
  runState(name: string): Promise<VmRunState | 'absent'>;
  resume(name: string): Promise<void>;
  /** Destination side after switchover: the VM's vNICs announce their MACs (a driver that cannot does nothing). */
  announce(name: string): Promise<void>;
  /** Destination side after success: the VM is this host's now. */
  commitIncoming(name: string): Promise<void>;
  /** Destination side after failure: stop the incoming process. */
  abortIncoming(name: string): Promise<void>;
  /** Source side after success: stop the process that sent the VM. */
  finishOutgoing(name: string): Promise<void>;
  /** Switchover: take the storage leases of the VM's disks for this host. */
  acquireStorage(name: string): Promise<void>;
  /** Switchover: give up this host's storage leases of the VM's disks. */
  releaseStorage(name: string): Promise<void>;
  /** A plugin's agent-side method (PluginContext.handle). */
  pluginCall(plugin: string, method: string, payload: unknown, timeoutMs?: number): Promise<unknown>;
  /** The agent's metrics in the Prometheus text format (what its /metrics serves). */
  metrics(): Promise<string>;
}

export const TERMINAL_STATUSES: ReadonlySet<MigrationProgress['status']> = new Set(['completed', 'failed', 'cancelled']);
