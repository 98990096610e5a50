import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import {
  MotusError,
  type CounterMetric,
  type GaugeMetric,
  type HistogramMetric,
  type MetricLabels,
  type MetricSample,
  type MetricSpec,
  type PluginMetrics,
} from '@motus/sdk';

const NAME = /^motus_[a-z][a-z0-9_]*[a-z0-9]$/;
const LABEL = /^[a-z][a-z0-9_]*$/;

type Kind = 'counter' | 'gauge' | 'histogram';

/**
 * One process's Prometheus registry (prom-client): the server's or one agent's.
 * The kernel's own metrics and the plugins' (through `PluginMetrics`) go into it;
 * every name is checked against the conventions first, so a plugin cannot publish
 * `frames` or a counter without `_total`.
 */
export class MetricsRegistry {
  readonly registry = new Registry();
  private readonly declared = new Map<string, { kind: Kind; labels: string; metric?: Counter | Gauge | Histogram }>();

  /** The process defaults (CPU, memory, event loop lag, GC, file descriptors), under their standard names. */
  withProcessDefaults(): this {
    collectDefaultMetrics({ register: this.registry });
    return this;
  }

  counter(spec: MetricSpec, owner = 'motusd'): Counter {
    const shared = this.declare(spec, 'counter', owner, true);
    if (shared) return shared as Counter;
    return this.keep(spec.name, new Counter({ name: spec.name, help: spec.help, labelNames: [...(spec.labelNames ?? [])], registers: [this.registry] }));
  }

  /** A gauge set by its owner, or with `collect`, one read at each scrape (never shared). */
  gauge(spec: MetricSpec, owner = 'motusd', collect?: (gauge: Gauge) => void | Promise<void>): Gauge {
    const shared = this.declare(spec, 'gauge', owner, collect === undefined);
    if (shared) return shared as Gauge;
    const gauge = new Gauge({
      name: spec.name,
      help: spec.help,
      labelNames: [...(spec.labelNames ?? [])],
      registers: [this.registry],
      ...(collect ? { collect(this: Gauge) { return collect(this); } } : {}),
    });
    return collect ? gauge : this.keep(spec.name, gauge);
  }

  histogram(spec: MetricSpec & { buckets?: readonly number[] }, owner = 'motusd'): Histogram {
    const shared = this.declare(spec, 'histogram', owner, true);
    if (shared) return shared as Histogram;
    return this.keep(spec.name, new Histogram({
      name: spec.name,
      help: spec.help,
      labelNames: [...(spec.labelNames ?? [])],
      registers: [this.registry],
      ...(spec.buckets ? { buckets: [...spec.buckets] } : {}),
    }));
  }

  /** Counters or gauges whose values live elsewhere, read at each scrape. */
  sampled(spec: MetricSpec & { type: 'counter' | 'gauge' }, read: () => readonly MetricSample[], owner = 'motusd'): void {
    this.declare(spec, spec.type, owner);
    const labelNames = [...(spec.labelNames ?? [])];
    const refresh = (metric: Counter | Gauge) => {
      // Series gone from the read (a detached port) disappear instead of freezing.
      metric.reset();
      for (const sample of read()) {
        const labels = checkLabels(spec.name, labelNames, sample.labels);
        if (!Number.isFinite(sample.value) || (spec.type === 'counter' && sample.value < 0)) continue;
        if (metric instanceof Counter) metric.inc(labels, sample.value);
        else metric.set(labels, sample.value);
      }
    };
    if (spec.type === 'counter') {
      new Counter({ name: spec.name, help: spec.help, labelNames, registers: [this.registry], collect(this: Counter) { refresh(this); } });
    } else {
      new Gauge({ name: spec.name, help: spec.help, labelNames, registers: [this.registry], collect(this: Gauge) { refresh(this); } });
    }
  }

  /** The view a plugin gets as `ctx.metrics`. */
  forPlugin(plugin: string): PluginMetrics {
    return {
      counter: (spec): CounterMetric => {
        const metric = this.counter(spec, plugin);
        const names = [...(spec.labelNames ?? [])];
        return { inc: (labels = {}, by = 1) => metric.inc(checkLabels(spec.name, names, labels), by) };
      },
      gauge: (spec): GaugeMetric => {
        const metric = this.gauge(spec, plugin);
        const names = [...(spec.labelNames ?? [])];
        return { set: (labels, value) => metric.set(checkLabels(spec.name, names, labels), value) };
      },
      histogram: (spec): HistogramMetric => {
        const metric = this.histogram(spec, plugin);
        const names = [...(spec.labelNames ?? [])];
        return { observe: (labels, value) => metric.observe(checkLabels(spec.name, names, labels), value) };
      },
      sampled: (spec, read) => this.sampled(spec, read, plugin),
    };
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The text exposition format (version 0.0.4). */
  exposition(): Promise<string> {
    return this.registry.metrics();
  }

  private keep<M extends Counter | Gauge | Histogram>(name: string, metric: M): M {
    this.declared.get(name)!.metric = metric;
    return metric;
  }

  /**
   * Checks a name and records it. A family declared again with the same kind and
   * labels is shared when `shareable` (two storage plugins on one host both count
   * lease renewals, told apart by a label): its metric is returned. Sampled and
   * collected families are never shared, their reads would overwrite each other.
   */
  private declare(spec: MetricSpec, kind: Kind, owner: string, shareable = false): Counter | Gauge | Histogram | undefined {
    const invalid = (why: string) =>
      new MotusError('MOTUS_E_METRIC_INVALID', `${owner}: metric ${spec.name} ${why}`, { metric: spec.name, owner });
    if (!NAME.test(spec.name)) throw invalid('must be snake case and start with motus_');
    if (kind === 'counter' && !spec.name.endsWith('_total')) throw invalid('is a counter, so its name must end in _total');
    if (kind !== 'counter' && spec.name.endsWith('_total')) throw invalid('ends in _total, which only counters may');
    if (spec.help.trim().length === 0) throw invalid('needs a help text');
    for (const label of spec.labelNames ?? []) {
      if (!LABEL.test(label) || label.startsWith('__') || label === 'le' || label === 'quantile') throw invalid(`has an invalid label name '${label}'`);
    }
    const labels = [...(spec.labelNames ?? [])].sort().join(',');
    const existing = this.declared.get(spec.name);
    if (existing) {
      if (existing.kind !== kind || existing.labels !== labels) throw invalid('is declared twice with different kinds or labels');
      if (shareable && existing.metric) return existing.metric;
      throw invalid('is declared twice, and one of the two reads its own values');
    }
    this.declared.set(spec.name, { kind, labels });
    return undefined;
  }
}

/** A sample's labels must be exactly the declared ones: a typo would otherwise make a new series. */
function checkLabels(metric: string, names: readonly string[], labels: MetricLabels): Record<string, string> {
  const given = Object.keys(labels);
  const unknown = given.filter((l) => !names.includes(l));
  const missing = names.filter((l) => !(l in labels));
  if (unknown.length > 0 || missing.length > 0) {
    throw new MotusError('MOTUS_E_METRIC_INVALID', `metric ${metric}: labels ${JSON.stringify(labels)} do not match its declared labels (${names.join(', ') || 'none'})`, {
      metric,
      unknown,
      missing,
    });
  }
  return { ...labels };
}
