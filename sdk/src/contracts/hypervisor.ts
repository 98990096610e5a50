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
  /**
   * Convergence features migrations from this host can use, with the reason for
   * each one that is missing (e.g. dirty-limit needs KVM's dirty ring; TCG has none).
   * Absent: the driver does not say (assume none of the optional ones).
   */
  migrationFeatures?: MigrationFeatures;
  /** Whether this hypervisor can carry migration streams over TLS (MigrationTls). */
  migrationTls?: boolean;
}

export type MigrationFeature = 'auto-converge' | 'xbzrle' | 'multifd' | 'postcopy' | 'dirty-limit';

export interface MigrationFeatures {
  available: MigrationFeature[];
  /** Why each unavailable feature is unavailable. */
  unavailable: Partial<Record<MigrationFeature, string>>;
}

/**
 * x509 credentials for an encrypted migration stream, in the layout QEMU's
 * tls-creds-x509 object reads: `ca-cert.pem` (the site CA bundle),
 * `server-cert.pem`/`server-key.pem` (presented when receiving) and
 * `client-cert.pem`/`client-key.pem` (presented when sending). Both ends check the
 * other's certificate against the CA.
 */
export interface MigrationTls {
  /** Folder holding the five files; read when the migration starts. */
  credentialsDir: string;
  /** Sending side: the name the receiver's certificate must carry (its host name). */
  peerName?: string;
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

/**
 * Tuning handed to the hypervisor: at start (startMigration; features that must be
 * chosen before the stream starts, like multifd, xbzrle and postcopy, only then) and
 * while the copy runs (tuneMigration: rates, limits, throttle levels, cache size).
 */
export interface MigrationTuning {
  /** Bytes per second; undefined leaves the hypervisor's own. */
  maxBandwidthBytesPerSec?: number;
  /** The switchover target: the longest pause the hypervisor may plan the final copy for. */
  downtimeLimitMs?: number;
  /** Link rate the switchover may count on (QEMU: avail-switchover-bandwidth), instead of the hypervisor's own estimate. */
  switchoverBandwidthBytesPerSec?: number;
  /**
   * vCPU throttling while the guest dirties memory faster than the link sends it
   * (QEMU: auto-converge). At start this arms it; later only the levels change.
   */
  throttle?: ThrottleTuning;
  /** Delta compression of re-sent pages (QEMU: xbzrle); armed at start, the cache resized later. */
  xbzrle?: { cacheBytes: number };
  /** Parallel streams (QEMU: multifd); start only, and on the destination before it listens. */
  multifd?: { channels: number };
  /** Allow switching to post-copy later (QEMU: postcopy-ram); start only, on both ends. */
  postcopy?: boolean;
  /** Per-vCPU dirty page rate limit, MiB/s (QEMU: set-vcpu-dirty-limit; KVM with a dirty ring only). */
  dirtyLimitMBps?: number;
  /** Hypervisor-specific capabilities; the typed fields above win over the same names here. */
  capabilities?: Record<string, boolean>;
  /** Hypervisor-specific parameters (QEMU: migrate-set-parameters keys). */
  parameters?: Record<string, unknown>;
}

export interface ThrottleTuning {
  /** Throttle applied when it first engages, %. */
  initialPct: number;
  /** Raise per trigger, %. */
  incrementPct: number;
  /** Ceiling the throttle may reach, %. */
  maxPct: number;
  /** It engages only while the guest dirtied more than this share of what was sent, %. */
  triggerThresholdPct?: number;
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
  /**
   * Destination side: listen for the migration stream (VM launched with incoming).
   * `tuning` carries what both ends must agree on before the stream starts
   * (multifd channels, postcopy); `tls` encrypts it with the host's credentials.
   * Returns the URI the source sends to.
   */
  listenForMigration(address: string, port: number, tuning?: MigrationTuning, tls?: MigrationTls): Promise<string>;
  /**
   * Source side: apply tuning and start sending to `uri`. Resolves once the hypervisor
   * accepted the command. With `tls` the stream is encrypted and the receiver must
   * prove it is `tls.peerName`; without it any earlier TLS setting is cleared.
   */
  startMigration(uri: string, tuning?: MigrationTuning, tls?: MigrationTls): Promise<void>;
  /** Change tuning while a migration runs (bandwidth, downtime limit, throttle levels, cache size, dirty limit). */
  tuneMigration(tuning: MigrationTuning): Promise<void>;
  /** Switch a running pre-copy armed with `postcopy` to post-copy (QEMU: migrate-start-postcopy). */
  startPostcopy(): Promise<void>;
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
  /**
   * Guest-side statistics for placement, when the driver can tell (QEMU: dirty rate
   * from calc-dirty-rate, balloon from query-balloon); fields it cannot tell are absent.
   */
  guestStats?(): Promise<VmGuestStats>;
  /** Optional: have every vNIC announce its MAC now (QEMU: announce-self RARPs), so switches relearn where the VM is. */
  announce?(): Promise<void>;
  /** Orderly stop: ask the hypervisor to quit, then signals after graceMs. Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

export interface VmGuestStats {
  dirtyBytesPerSec?: number;
  balloonBytes?: number;
}

export interface HypervisorDriver {
  readonly kind: string;
  probe(): Promise<HypervisorFacts>;
  launch(spec: VmSpec, options: LaunchOptions): Promise<VmHandle>;
  /** Stops every VM this driver launched (owner shutdown). */
  dispose(): Promise<void>;
}

export const HypervisorDriverToken = createToken<HypervisorDriver>('hypervisor.driver');
