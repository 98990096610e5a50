import type { AuditRecord, HostInfo, MigrationEvent, MigrationSummary, SiteEvent, VmInfo } from '@motus/sdk';

/** One progress sample kept for the charts. */
export interface Sample {
  at: number;
  done: number;
  round: number;
  remainingBytes: number;
  transferredBytes: number;
  dirtyRateBytesPerSec: number;
  throughputBytesPerSec: number;
  etaMs: number | null;
}

/** What the page knows of one migration: its summary and, once followed, its events. */
export interface MigrationView {
  summary: MigrationSummary;
  samples: Sample[];
  policy: Array<{ at: string; action: string; reason: string }>;
  /** Lifecycle events other than progress, in order. */
  steps: MigrationEvent[];
  seen: Set<number>;
}

/** Samples kept per migration: enough for a long migration's chart, bounded for a page left open. */
const MAX_SAMPLES = 2_000;

/**
 * The site as the page sees it: the first answers of the API, then every event the
 * server pushes. Views read it; only `apply*` change it.
 */
export class SiteState {
  readonly hosts = new Map<string, HostInfo>();
  readonly vms = new Map<string, VmInfo>();
  readonly migrations = new Map<string, MigrationView>();
  /** Audit records appended since the audit view last loaded, newest last. */
  readonly auditAppended: AuditRecord[] = [];

  load(hosts: HostInfo[], vms: VmInfo[], migrations: MigrationSummary[]): void {
    for (const host of hosts) this.hosts.set(host.name, host);
    for (const vm of vms) this.vms.set(vm.name, vm);
    for (const summary of migrations) {
      const view = this.migrations.get(summary.id);
      if (view) view.summary = { ...summary, ...this.newer(view.summary, summary) };
      else this.migrations.set(summary.id, { summary, samples: [], policy: [], steps: [], seen: new Set() });
    }
  }

  apply(event: SiteEvent): void {
    switch (event.stream) {
      case 'host':
        this.hosts.set(event.host.name, event.host);
        return;
      case 'vm':
        this.vms.set(event.vm.name, event.vm);
        return;
      case 'audit':
        this.auditAppended.push(event.record);
        return;
      case 'migration': {
        const { stream: _stream, ...migrationEvent } = event;
        this.applyMigration(migrationEvent as MigrationEvent);
        return;
      }
    }
  }

  /** One migration event, from the site stream or a migration's own replay; each seq counts once. */
  applyMigration(event: MigrationEvent): void {
    let view = this.migrations.get(event.migrationId);
    if (!view) {
      const summary: MigrationSummary =
        event.type === 'requested'
          ? { id: event.migrationId, vm: event.vm, source: event.source, destination: event.destination, requestedBy: event.requestedBy, priority: event.priority, state: 'queued', phase: 'request', requestedAt: event.at }
          : { id: event.migrationId, vm: '?', source: '?', destination: '?', requestedBy: '?', priority: 'normal', state: 'running', requestedAt: event.at };
      view = { summary, samples: [], policy: [], steps: [], seen: new Set() };
      this.migrations.set(event.migrationId, view);
    }
    if (view.seen.has(event.seq)) return;
    view.seen.add(event.seq);
    const s = view.summary;
    switch (event.type) {
      case 'progress': {
        const done = event.totalBytes > 0 ? Math.min(1, Math.max(0, 1 - event.remainingBytes / event.totalBytes)) : 0;
        view.samples.push({
          at: Date.parse(event.at),
          done,
          round: event.round,
          remainingBytes: event.remainingBytes,
          transferredBytes: event.transferredBytes,
          dirtyRateBytesPerSec: event.dirtyRateBytesPerSec,
          throughputBytesPerSec: event.throughputBytesPerSec,
          etaMs: event.etaMs,
        });
        view.samples.sort((a, b) => a.at - b.at);
        if (view.samples.length > MAX_SAMPLES) view.samples.splice(0, view.samples.length - MAX_SAMPLES);
        s.phase = 'precopy';
        s.state = 'running';
        return;
      }
      case 'policy':
        view.policy.push({ at: event.at, action: event.action, reason: event.reason });
        break;
      case 'validated':
        s.state = 'running';
        s.phase = 'prepare';
        break;
      case 'prepared':
        s.phase = 'precopy';
        break;
      case 'switchover':
        s.phase = 'switchover';
        break;
      case 'resumed':
      case 'announced':
        s.phase = event.type === 'resumed' ? 'announce' : 'cleanup';
        break;
      case 'completed':
        Object.assign(s, { state: 'completed', phase: 'cleanup', downtimeMs: event.downtimeMs, totalTimeMs: event.totalTimeMs, bytes: event.bytes, rounds: event.rounds, finishedAt: event.at });
        break;
      case 'failed':
        Object.assign(s, { state: 'failed', error: event.error, finishedAt: event.at });
        break;
      case 'cancelled':
        Object.assign(s, { state: 'cancelled', finishedAt: event.at });
        break;
      case 'rejected':
        if (s.state !== 'cancelled') Object.assign(s, { state: 'rejected', error: event.error, finishedAt: event.at });
        break;
      default:
        break;
    }
    view.steps.push(event);
    view.steps.sort((a, b) => a.seq - b.seq);
  }

  /** The fields of a fresher summary (a terminal one wins over a running one). */
  private newer(mine: MigrationSummary, theirs: MigrationSummary): Partial<MigrationSummary> {
    const terminal = (x: MigrationSummary) => x.state !== 'running' && x.state !== 'queued';
    return terminal(mine) && !terminal(theirs) ? mine : theirs;
  }
}
