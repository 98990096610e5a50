import type { Counter, Histogram } from 'prom-client';
import type { MetricsRegistry } from './metrics-registry.js';

/** Latency buckets for lease operations: a NAS lock file write is milliseconds, an iSCSI reservation a few round trips. */
const LEASE_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * The agent kernel's own metrics: VM processes by role, bytes its outgoing
 * migrations sent, and the storage lease operations it asks the providers for.
 * Per-port switch counters and per-datastore storage figures come from the
 * plugins themselves (ctx.metrics).
 */
export class AgentMetrics {
  readonly sentBytes: Counter;
  private readonly leaseSeconds: Histogram;
  private readonly leaseErrors: Counter;

  constructor(registry: MetricsRegistry, vmsByRole: () => Record<string, number>) {
    registry.gauge({ name: 'motus_agent_vms', help: 'VM processes this agent holds, by role (running, incoming, outgoing).', labelNames: ['role'] }, 'motusd', (gauge) => {
      gauge.reset();
      for (const [role, count] of Object.entries({ running: 0, incoming: 0, outgoing: 0, ...vmsByRole() })) gauge.set({ role }, count);
    });
    this.sentBytes = registry.counter({ name: 'motus_agent_migration_sent_bytes_total', help: 'Bytes of VM state this host sent to migration destinations (QEMU transferred bytes).' });
    this.leaseSeconds = registry.histogram({
      name: 'motus_storage_lease_operation_seconds',
      help: 'Time a storage provider took to take or give up the leases of one VM\'s disks.',
      labelNames: ['kind', 'operation'],
      buckets: LEASE_BUCKETS,
    });
    this.leaseErrors = registry.counter({ name: 'motus_storage_lease_errors_total', help: 'Lease operations a storage provider failed.', labelNames: ['kind', 'operation'] });
  }

  /** Times one provider call and counts its failure. */
  async lease<T>(kind: string, operation: 'acquire' | 'release', call: () => Promise<T>): Promise<T> {
    const end = this.leaseSeconds.startTimer({ kind, operation });
    try {
      return await call();
    } catch (err) {
      this.leaseErrors.inc({ kind, operation });
      throw err;
    } finally {
      end();
    }
  }
}
