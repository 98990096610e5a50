import type { MotusErrorJSON } from './errors.js';
import type { HostInfo, MigrationPhase, Priority, VmInfo } from './model.js';
import type { Veto } from './hooks.js';
import type { AuditRecord } from './client/task-model.js';

interface MigrationEventBase {
  migrationId: string;
  /** 1, 2, 3 … within one migration. */
  seq: number;
  /** ISO timestamp. */
  at: string;
}

/** Everything a migration reports, in lifecycle order. */
export type MigrationEvent = MigrationEventBase &
  (
    | { type: 'requested'; vm: string; source: string; destination: string; requestedBy: string; priority: Priority }
    | { type: 'validated' }
    | { type: 'rejected'; error: MotusErrorJSON; vetoes: Veto[] }
    | { type: 'prepared'; uri: string; ms: number; /** The stream goes over TLS (site policy and both hosts' credentials). */ encrypted?: boolean }
    | {
        type: 'progress';
        status: string;
        round: number;
        totalBytes: number;
        transferredBytes: number;
        remainingBytes: number;
        dirtyRateBytesPerSec: number;
        throughputBytesPerSec: number;
        /** Estimated time to completion, from remaining bytes and net throughput. */
        etaMs: number | null;
        expectedDowntimeMs: number | null;
      }
    | {
        type: 'policy';
        /** What the convergence policy did, e.g. 'raise-throttle', 'raise-switchover-target', 'start-postcopy', 'abort'. */
        action: string;
        /** Why, with the measurements that justified it. */
        reason: string;
        /** The knob values the step set (e.g. { throttlePct: 40 }). */
        values?: Record<string, number | string | boolean>;
      }
    | { type: 'switchover'; host: string }
    | { type: 'resumed'; host: string }
    | { type: 'announced'; host: string; ms: number }
    /**
     * A step after the VM resumed on its destination failed (announce, commit,
     * source stop, cleanup). The VM stays on the destination — rolling back would
     * run it twice — so the migration goes on to 'completed', which carries the
     * warning in its summary too.
     */
    | { type: 'warning'; phase: MigrationPhase; step: string; error: MotusErrorJSON }
    | {
        type: 'completed';
        downtimeMs: number;
        totalTimeMs: number;
        bytes: number;
        rounds: number;
        controlPlaneMs: number;
        /** Bytes sent over the VM's memory size. */
        bytesPerMemory: number;
        /** Highest vCPU throttle reached, % (0: never throttled). */
        throttlePct: number;
        /** Switchover target in force at the end, ms. */
        switchoverTargetMs: number;
        postcopy: boolean;
        /** Longest gap in the guest's heartbeat (MOTUS-HB lines) on the hosts' clocks, ms; null when the guest prints none. */
        guestPauseMs: number | null;
      }
    | { type: 'failed'; phase: MigrationPhase; error: MotusErrorJSON }
    | { type: 'rolled-back'; host: string; vmState: string }
    | { type: 'cancelled'; by: string }
  );

export type MigrationEventType = MigrationEvent['type'];

export type MigrationEventOf<T extends MigrationEventType> = Extract<MigrationEvent, { type: T }>;

/** Type guard for rxjs `filter`: narrows the union to one event type. */
export function isMigrationEvent<T extends MigrationEventType>(...types: T[]) {
  return (event: MigrationEvent): event is MigrationEventOf<T> => (types as string[]).includes(event.type);
}

/**
 * Events that end a migration; nothing follows them. A failed or cancelled
 * migration ends with 'rolled-back' (the VM keeps running on the source).
 */
export const TERMINAL_MIGRATION_EVENTS: readonly MigrationEventType[] = ['completed', 'rolled-back', 'rejected'];

export type HostEvent =
  | { type: 'host-registered'; at: string; host: HostInfo }
  | { type: 'host-connected'; at: string; host: HostInfo }
  /** State, memory in use or CPUs changed (a VM started, stopped or moved; maintenance). */
  | { type: 'host-updated'; at: string; host: HostInfo }
  | { type: 'host-disconnected'; at: string; host: HostInfo; reason: string }
  /** Maintenance entered or left, degraded or back in service; the reason says why. */
  | { type: 'host-state-changed'; at: string; host: HostInfo; from: string; reason: string };

export type VmEvent =
  | { type: 'vm-started'; at: string; vm: VmInfo }
  | { type: 'vm-stopped'; at: string; vm: VmInfo; reason: string }
  | { type: 'vm-moved'; at: string; vm: VmInfo; from: string; to: string; migrationId: string };

/** A record just appended to the audit trail. */
export type AuditEvent = { type: 'audit-appended'; at: string; record: AuditRecord };
