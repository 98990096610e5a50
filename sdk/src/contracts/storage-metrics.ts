import type { CounterMetric, HistogramMetric, PluginMetrics } from '../metrics.js';

/** Datastore round trips are milliseconds on a LAN; a struggling server shows in the upper buckets. */
const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/**
 * One metric vocabulary for every storage plugin, so a dashboard reads NAS, iSCSI
 * and FC datastores alike: operation latency and errors by datastore, and lease
 * renewals (a NAS lock refresh, an iSCSI registration check) by outcome. The
 * families are shared between plugins on one host and told apart by `kind`.
 */
export class StorageMetrics {
  private readonly seconds: HistogramMetric;
  private readonly errors: CounterMetric;
  private readonly renewals: CounterMetric;

  constructor(
    metrics: PluginMetrics,
    private readonly kind: string,
  ) {
    this.seconds = metrics.histogram({
      name: 'motus_storage_operation_seconds',
      help: 'Time of a datastore operation by the host (check: the periodic reachability and capacity check; lease_refresh: one lease renewal).',
      labelNames: ['kind', 'datastore', 'operation'],
      buckets: BUCKETS,
    });
    this.errors = metrics.counter({
      name: 'motus_storage_errors_total',
      help: 'Datastore operations that failed, or found the datastore not accessible.',
      labelNames: ['kind', 'datastore', 'operation'],
    });
    this.renewals = metrics.counter({
      name: 'motus_storage_lease_renewals_total',
      help: 'Lease renewals of the VM disks held on this host (NAS: lock file refreshes; iSCSI: registration checks), by outcome.',
      labelNames: ['kind', 'datastore', 'outcome'],
    });
  }

  operation(datastore: string, operation: string, seconds: number, ok: boolean): void {
    this.seconds.observe({ kind: this.kind, datastore, operation }, seconds);
    if (!ok) this.errors.inc({ kind: this.kind, datastore, operation });
  }

  /** One renewal of a held lease; a failed one also counts as an error of `lease_refresh`. */
  renewal(datastore: string, seconds: number, ok: boolean): void {
    this.operation(datastore, 'lease_refresh', seconds, ok);
    this.renewals.inc({ kind: this.kind, datastore, outcome: ok ? 'ok' : 'failed' });
  }
}
