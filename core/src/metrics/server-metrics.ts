import type { Observable, Subscription } from 'rxjs';
import type { HostInfo, MigrationEvent, VmInfo } from '@motus/sdk';
import type { MetricsRegistry } from './metrics-registry.js';

const DOWNTIME_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const DURATION_BUCKETS = [1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800];

export interface ServerMetricsSources {
  migrations$: Observable<MigrationEvent>;
  queuedTasks(): number;
  runningTasks(): number;
  hosts(): readonly HostInfo[];
  vms(): readonly VmInfo[];
}

/**
 * The server's migration metrics, read off the migration event stream (a
 * subscriber like the CLI and the console): outcomes, downtime and total-time
 * histograms, bytes sent, plus the queue and the inventory read at each scrape.
 */
export class ServerMetrics {
  private readonly subscription: Subscription;
  /** Last transferred-bytes figure of each running migration, to count deltas. */
  private readonly sent = new Map<string, number>();
  /** Migrations whose outcome was counted (a cancelled queued task also ends `rejected`). */
  private readonly counted = new Set<string>();

  constructor(registry: MetricsRegistry, sources: ServerMetricsSources) {
    const outcomes = registry.counter({ name: 'motus_migrations_total', help: 'Migrations ended, by outcome (completed, failed, cancelled, rejected).', labelNames: ['outcome'] });
    for (const outcome of ['completed', 'failed', 'cancelled', 'rejected']) outcomes.inc({ outcome }, 0);
    const started = registry.counter({ name: 'motus_migrations_started_total', help: 'Migrations that passed validation and started moving.' });
    const downtime = registry.histogram({ name: 'motus_migration_downtime_seconds', help: 'Downtime of completed migrations, as QEMU measured it (VM paused on the source to running on the destination).', buckets: DOWNTIME_BUCKETS });
    const duration = registry.histogram({ name: 'motus_migration_duration_seconds', help: 'Total time of completed migrations, from the API call to cleanup.', buckets: DURATION_BUCKETS });
    const bytes = registry.counter({ name: 'motus_migration_transferred_bytes_total', help: 'Bytes of VM state sent by migrations, counted as progress samples arrive.' });
    const policy = registry.counter({ name: 'motus_migration_policy_steps_total', help: 'Convergence policy steps taken, by action.', labelNames: ['action'] });
    registry.gauge({ name: 'motus_task_queue_length', help: 'Migration tasks waiting in the queue.' }, 'motusd', (g) => g.set(sources.queuedTasks()));
    registry.gauge({ name: 'motus_tasks_running', help: 'Migration tasks running now.' }, 'motusd', (g) => g.set(sources.runningTasks()));
    registry.gauge({ name: 'motus_hosts', help: 'Hosts by state.', labelNames: ['state'] }, 'motusd', (g) => {
      g.reset();
      for (const state of ['connected', 'disconnected', 'maintenance', 'degraded']) g.set({ state }, sources.hosts().filter((h) => h.state === state).length);
    });
    registry.gauge({ name: 'motus_host_memory_used_bytes', help: 'Memory the VMs of each host use.', labelNames: ['host'] }, 'motusd', (g) => {
      g.reset();
      for (const host of sources.hosts()) g.set({ host: host.name }, host.memoryUsedMiB * 1024 * 1024);
    });
    registry.gauge({ name: 'motus_vms', help: 'VMs in the inventory by state.', labelNames: ['state'] }, 'motusd', (g) => {
      g.reset();
      const byState = new Map<string, number>();
      for (const vm of sources.vms()) byState.set(vm.state, (byState.get(vm.state) ?? 0) + 1);
      for (const [state, count] of byState) g.set({ state }, count);
    });

    const addSent = (id: string, transferred: number) => {
      const before = this.sent.get(id) ?? 0;
      if (transferred > before) bytes.inc(transferred - before);
      this.sent.set(id, Math.max(before, transferred));
    };
    const end = (id: string, outcome: string) => {
      this.sent.delete(id);
      if (this.counted.has(id)) return;
      this.counted.add(id);
      outcomes.inc({ outcome });
    };
    this.subscription = sources.migrations$.subscribe({
      next: (event) => {
        switch (event.type) {
          case 'validated':
            started.inc();
            break;
          case 'progress':
            addSent(event.migrationId, event.transferredBytes);
            break;
          case 'policy':
            policy.inc({ action: event.action });
            break;
          case 'completed':
            addSent(event.migrationId, event.bytes);
            downtime.observe(event.downtimeMs / 1000);
            duration.observe(event.totalTimeMs / 1000);
            end(event.migrationId, 'completed');
            this.counted.delete(event.migrationId);
            break;
          case 'failed':
            end(event.migrationId, 'failed');
            break;
          case 'cancelled':
            end(event.migrationId, 'cancelled');
            break;
          case 'rejected':
            end(event.migrationId, 'rejected');
            break;
          case 'rolled-back':
            this.counted.delete(event.migrationId);
            break;
          default:
            break;
        }
        if (event.type === 'rejected') this.counted.delete(event.migrationId);
      },
      error: () => undefined,
    });
  }

  stop(): void {
    this.subscription.unsubscribe();
  }
}
