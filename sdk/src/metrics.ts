/**
 * Metrics a plugin publishes on its process's Prometheus endpoint (/metrics),
 * through its context (`ctx.metrics`), so plugins never depend on a metrics
 * library. Names follow Prometheus conventions and the kernel checks them:
 * `motus_` prefix, snake case, counters end in `_total`, and a unit suffix
 * (`_seconds`, `_bytes`) where the value has one.
 */
export type MetricLabels = Readonly<Record<string, string>>;

export interface MetricSpec {
  name: string;
  help: string;
  /** Label names every sample carries (the kernel checks each sample against them). */
  labelNames?: readonly string[];
}

export interface CounterMetric {
  inc(labels?: MetricLabels, by?: number): void;
}

export interface GaugeMetric {
  set(labels: MetricLabels, value: number): void;
}

export interface HistogramMetric {
  observe(labels: MetricLabels, value: number): void;
}

/** One labelled value a plugin already keeps (a port's frame count), read at each scrape. */
export interface MetricSample {
  labels: MetricLabels;
  value: number;
}

export interface PluginMetrics {
  counter(spec: MetricSpec): CounterMetric;
  gauge(spec: MetricSpec): GaugeMetric;
  histogram(spec: MetricSpec & { buckets?: readonly number[] }): HistogramMetric;
  /**
   * Counters or gauges whose values the plugin keeps itself (totals since its
   * start), read when the endpoint is scraped. A series absent from a read is
   * gone (a detached port), not zero.
   */
  sampled(spec: MetricSpec & { type: 'counter' | 'gauge' }, read: () => readonly MetricSample[]): void;
}
