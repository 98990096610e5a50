import type { Observable } from 'rxjs';
import { createToken } from '../tokens.js';
import type { MigrationProgress, VmSpec } from '../model.js';
import type { NicAttachment } from './network.js';

/** What a hypervisor driver reports about itself on a host. */
export interface HypervisorFacts {
  kind: string;
  version: string;
  /** 'kvm' or 'tcg' for QEMU: the accelerator guests will actually run under. */
  accelerator: string;
  /** Why that accelerator was chosen (probe result), for operators. */
  acceleratorReason: string;
}

export interface LaunchOptions {
  /** Folder for this VM's runtime files (QMP socket, serial log, pid). Created if missing. */
  runDir: string;
  /** Start paused, waiting for an incoming migration instead of booting. */
  incoming?: boolean;
  /**
   * Backends for the spec's vNICs, one per NicSpec id, as the network provider's
   * attach() returned them. A NIC of the spec without an attachment is refused.
   */
  nics?: NicAttachment[];
}

/** Low-level tuning handed to the hypervisor's migrate command. */
export interface MigrationTuning {
  /** Bytes per second; undefined leaves the hypervisor's own. */
  maxBandwidthBytesPerSec?: number;
  downtimeLimitMs?: number;
  /** Hypervisor-specific capabilities (QEMU: 'auto-converge', 'xbzrle', 'multifd', …). */
  capabilities?: Record<string, boolean>;
  /** Hypervisor-specific parameters (QEMU: migrate-set-parameters keys). */
  parameters?: Record<string, unknown>;
}

export type VmRunState =
  | 'running'
  | 'paused'
  | 'inmigrate'
  | 'postmigrate'
  | 'finish-migrate'
  | 'prelaunch'
  | 'shutdown'
  | 'internal-error'
  | 'io-error'
  | 'guest-panicked'
  | 'other';

export type HypervisorEvent =
  | { type: 'stopped'; at: string }
  | { type: 'resumed'; at: string }
  | { type: 'shutdown'; at: string; guest: boolean }
  | { type: 'migration-status'; at: string; status: MigrationProgress['status'] }
  | { type: 'exited'; at: string; code: number | null; signal: string | null };

/** One running hypervisor process holding one VM. */
export interface VmHandle {
  readonly name: string;
  readonly pid: number;
  /** File the guest's serial console is written to. */
  readonly serialLog: string;
  /** Asynchronous events; completes when the process has exited. */
  readonly events$: Observable<HypervisorEvent>;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<{ code: number | null; signal: string | null }>;

  runState(): Promise<VmRunState>;
  /** Destination side: listen for the migration stream (VM launched with incoming). Returns the URI the source sends to. */
  listenForMigration(address: string, port: number): Promise<string>;
  /** Source side: apply tuning and start sending to `uri`. Resolves once the hypervisor accepted the command. */
  startMigration(uri: string, tuning?: MigrationTuning): Promise<void>;
  /** Change tuning while a migration runs (bandwidth, downtime limit, parameters). */
  tuneMigration(tuning: MigrationTuning): Promise<void>;
  migrationProgress(): Promise<MigrationProgress>;
  cancelMigration(): Promise<void>;
  /**
   * Source side, with capability 'pause-before-switchover': the VM has stopped and the
   * migration waits in 'pre-switchover' so the kernel can hand storage leases over;
   * this lets it send the final state (QEMU: migrate-continue state=pre-switchover).
   */
  continueMigration(): Promise<void>;
  /** Resume a paused VM (rollback after a failed switchover). */
  resume(): Promise<void>;
  /** Orderly stop: ask the hypervisor to quit, then signals after graceMs. Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

export interface HypervisorDriver {
  readonly kind: string;
  probe(): Promise<HypervisorFacts>;
  launch(spec: VmSpec, options: LaunchOptions): Promise<VmHandle>;
  /** Stops every VM this driver launched (owner shutdown). */
  dispose(): Promise<void>;
}

export const HypervisorDriverToken = createToken<HypervisorDriver>('hypervisor.driver');
