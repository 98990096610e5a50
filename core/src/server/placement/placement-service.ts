import type { DependencyContainer } from 'tsyringe';
import {
  MotusError,
  type BalancePlan,
  type ClusterInfo,
  type EvacuationInfo,
  type HealthSignal,
  type HostHealth,
  type HostInfo,
  type HostMetricsSample,
  type HostState,
  type Logger,
  type MigrationHooks,
  type MigrationSummary,
  type Priority,
  type RankedHost,
  type Ranking,
  type Refusal,
  type TaskInfo,
  type VmInfo,
  type VmSpec,
} from '@motus/sdk';
import type { AgentFacts } from '../../agent/host-link.js';
import { globToRegExp } from '../../kernel/glob.js';
import { DEFAULT_CLUSTER } from '../../site/placement-checks.js';
import { BalancingSchema, sharesValue, type BalancingConfig, type PlacementConfig } from '../../site/placement-schema.js';
import type { SiteConfig } from '../../site/site-schema.js';
import type { AuditTrail } from '../audit/audit-trail.js';
import { rankDestinations } from './advisor.js';
import { balanceCluster } from './balancer.js';
import type { ClusterModel, PlacementHost, PlacementVm } from './cluster-model.js';
import { ClusterState } from './cluster-state.js';
import { planEvacuation } from './evacuation.js';
import { healthSignals } from './health-signals.js';
import { MetricsHistory } from './metrics-history.js';

/** The site settings placement reads. */
export type PlacementSite = Pick<SiteConfig, 'hosts' | 'networks' | 'migration' | 'tasks' | 'placement'>;

export interface PlacementDeps {
  site: PlacementSite;
  logger: Logger;
  audit: AuditTrail;
  hooks: MigrationHooks;
  container: DependencyContainer;
  /** Registered hosts. */
  hosts(): HostInfo[];
  vms(): VmInfo[];
  /** Tasks queued or running (concurrency per host, VMs already on their way). */
  activeTasks(): TaskInfo[];
  migration(id: string): MigrationSummary | undefined;
  reservedOn(host: string): number;
  submit(request: { vm: string; destination: string; priority: Priority; requestedBy: string }): Promise<{ task: TaskInfo; done: Promise<MigrationSummary> }>;
  setHostState(host: string, state: HostState, reason: string): void;
}

/** Refusals an operator's explicit destination is held to here (the rest have their own checks and codes). */
const RULE_CONSTRAINTS: ReadonlySet<Refusal['constraint']> = new Set(['affinity', 'anti-affinity', 'vm-host', 'cluster']);

/** Samples averaged for demand (at the default 2 s: the last 10 s). */
const DEMAND_SAMPLES = 5;

interface Evacuation {
  info: EvacuationInfo;
  done: Promise<void>;
}

/**
 * Placement on the live site: keeps the agents' metric history, turns the site into
 * a ClusterModel, and runs the wizard, the balancer, maintenance mode and the health
 * policy on it. Every move it makes is a task, so the concurrency limits, the queue
 * and the audit trail apply as to any migration.
 */
export class PlacementService {
  private readonly history: MetricsHistory;
  private readonly hardware = new Map<string, AgentFacts['hardware']>();
  private readonly misses = new Map<string, number>();
  private readonly signalSince = new Map<string, Map<string, string>>();
  private readonly degradedAt = new Map<string, string>();
  private readonly evacuations = new Map<string, Evacuation>();
  private readonly balancing = new Map<string, BalancingConfig>();
  private readonly lastPass = new Map<string, NonNullable<ClusterInfo['lastPass']>>();
  private readonly balancerTasks = new Map<string, Promise<unknown>[]>();
  private readonly measuredLink = new Map<string, { bytesPerSec: number; n: number }>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly clusterOfHost = new Map<string, string>();
  private readonly config: PlacementConfig;
  private stopped = false;

  constructor(private readonly deps: PlacementDeps) {
    this.config = deps.site.placement;
    this.history = new MetricsHistory(this.config.historySamples);
    for (const cluster of this.config.clusters) {
      for (const host of cluster.hosts) this.clusterOfHost.set(host, cluster.name);
      this.balancing.set(cluster.name, cluster.balancing);
    }
    if (deps.site.hosts.some((h) => !this.clusterOfHost.has(h.name))) this.balancing.set(DEFAULT_CLUSTER, BalancingSchema.parse({}));
    for (const cluster of this.balancing.keys()) this.schedule(cluster);
  }

  // ---- metrics and health -------------------------------------------------

  /** A heartbeat's answer (facts) or its miss (undefined), from the server's heartbeat. */
  observe(host: HostInfo, facts: AgentFacts | undefined, misses: number): void {
    this.misses.set(host.name, misses);
    if (facts?.metrics) this.history.push(host.name, facts.metrics);
    if (facts?.hardware) this.hardware.set(host.name, facts.hardware);
    if (this.stopped) return;
    const signals = this.signals(host);
    if (host.state === 'connected' && signals.length > 0) this.degrade(host, signals);
    else if (host.state === 'degraded' && signals.length === 0 && this.evacuations.get(host.name)?.info.state !== 'evacuating') {
      this.degradedAt.delete(host.name);
      this.deps.setHostState(host.name, 'connected', 'its health signals cleared');
      this.deps.audit.append({ user: 'motusd', action: 'host.recovered', outcome: 'connected', source: host.name, detail: { reason: 'its health signals cleared' } });
    }
  }

  metrics(host: string): HostMetricsSample[] {
    this.requireHost(host);
    return [...this.history.samples(host)];
  }

  health(host: string): HostHealth {
    const info = this.requireHost(host);
    const degradedAt = this.degradedAt.get(host);
    return { host, state: info.state, signals: this.signals(info), ...(degradedAt ? { degradedAt } : {}) };
  }

  /** A finished migration tells how fast streams into its destination really go. */
  migrationCompleted(summary: MigrationSummary): void {
    if (!summary.bytes || !summary.totalTimeMs || summary.totalTimeMs <= 0) return;
    const rate = summary.bytes / (summary.totalTimeMs / 1000);
    const seen = this.measuredLink.get(summary.destination);
    // An exponential average: recent migrations count most, one odd one does not swing it.
    this.measuredLink.set(summary.destination, seen ? { bytesPerSec: seen.bytesPerSec * 0.7 + rate * 0.3, n: seen.n + 1 } : { bytesPerSec: rate, n: 1 });
  }

  // ---- the wizard -------------------------------------------------------------

  /** Every host ranked as a destination of the VM, with the reasons; refused hosts with theirs. */
  async recommend(vmName: string): Promise<Ranking> {
    const state = this.state(vmName);
    return rankDestinations(state, vmName, { vetoes: await this.vetoes(vmName, state) });
  }

  /** Moves the VM to the wizard's best destination (a task). */
  async relocate(vmName: string, priority: Priority, by: string): Promise<{ ranking: Ranking; task: TaskInfo }> {
    const ranking = await this.recommend(vmName);
    const best = ranking.candidates[0];
    if (!best) throw noDestination(ranking);
    const { task } = await this.deps.submit({ vm: vmName, destination: best.host, priority, requestedBy: by });
    this.deps.audit.append({ user: by, action: 'placement.recommend', outcome: `chose ${best.host}`, vm: vmName, source: ranking.source, destination: best.host, task: task.id, detail: { score: best.score, reasons: best.reasons } });
    return { ranking, task };
  }

  /**
   * An operator's own destination (`migrate --to`) is held to the rules the wizard
   * knows: affinity, anti-affinity, vm-host and the VM's cluster. A breach refuses
   * the migration before anything moves, naming each rule, unless `ignoreRules`
   * (audited as placement.override). State, memory and the plugins' verdicts are
   * checked by the task queue and the orchestrator, with their own codes.
   */
  checkDestination(vmName: string, destination: string, options: { ignoreRules: boolean; by: string }): void {
    const state = new ClusterState(this.model());
    if (!state.vm(vmName) || !state.host(destination) || state.vm(vmName)!.host === destination) return;
    const broken = state.refusals(vmName, destination).filter((r) => RULE_CONSTRAINTS.has(r.constraint));
    if (broken.length === 0) return;
    const rules = [...new Set(broken.flatMap((r) => (r.rule ? [r.rule] : [])))];
    const detail = { rules, refusals: broken };
    if (options.ignoreRules) {
      this.deps.audit.append({ user: options.by, action: 'placement.override', outcome: 'rules ignored', vm: vmName, source: state.vm(vmName)!.host, destination, detail });
      return;
    }
    this.deps.audit.append({ user: options.by, action: 'migration.request', outcome: 'MOTUS_E_PLACEMENT_RULE', vm: vmName, source: state.vm(vmName)!.host, destination, detail });
    const named = rules.length > 0 ? `rule${rules.length > 1 ? 's' : ''} ${rules.join(', ')}` : 'its cluster';
    throw new MotusError('MOTUS_E_PLACEMENT_RULE', `moving ${vmName} to ${destination} breaks ${named}: ${broken.map((r) => r.reason).join('; ')} (nothing moved; ignoreRules / --force overrides, audited)`, { vm: vmName, host: destination, ...detail });
  }

  /**
   * Initial placement's ranking for a VM about to start: every host of every
   * cluster, with the same hard constraints as a migration (memory, state, rules,
   * the plugins' verdicts on CPU, datastores and networks), scored on the balance
   * it leaves, headroom and concurrency. Its demand until measured: its configured
   * memory, no CPU (as for any VM not sampled yet).
   */
  async recommendNew(spec: VmSpec): Promise<Ranking> {
    const model = this.model();
    if (model.vms.some((v) => v.name === spec.name)) {
      throw new MotusError('MOTUS_E_VM_EXISTS', `VM ${spec.name} already runs`, { vm: spec.name });
    }
    model.vms.push({ name: spec.name, host: '', pool: this.poolOf(spec.name), memoryMiB: spec.memoryMiB, vcpus: spec.vcpus, cpuUsed: 0, memoryUsedMiB: spec.memoryMiB, dirtyBytesPerSec: 0, movable: true });
    const state = new ClusterState(model);
    const vm: VmInfo = { name: spec.name, host: '', state: 'stopped', spec };
    // A new VM has no source: each host is asked as both ends, which is what "can it run here" means to the plugins.
    return rankDestinations(state, spec.name, { vetoes: await this.askPlugins(vm, state, (host) => host) });
  }

  /**
   * Where a VM started without a host goes (DRS's initial placement): the best host
   * of the ranking in a cluster whose balancing mode is partial or automatic. In a
   * manual cluster Motus only recommends: MOTUS_E_PLACEMENT_MANUAL carries the
   * ranking. The choice and its reasons go to the audit trail.
   */
  async placeNew(spec: VmSpec, by: string): Promise<{ ranking: Ranking; chosen: RankedHost; mode: BalancingConfig['mode'] }> {
    const ranking = await this.recommendNew(spec);
    if (ranking.candidates.length === 0) throw noDestination(ranking);
    const modeOf = (host: string) => this.balancing.get(this.clusterOf(host))?.mode ?? 'manual';
    const chosen = ranking.candidates.find((c) => modeOf(c.host) !== 'manual');
    if (!chosen) {
      const lines = ranking.candidates.map((c, i) => `${i + 1}. ${c.host} (cluster ${this.clusterOf(c.host)}) score ${c.score.toFixed(1)}`);
      this.deps.audit.append({ user: by, action: 'placement.initial', outcome: 'MOTUS_E_PLACEMENT_MANUAL', vm: spec.name, detail: { candidates: ranking.candidates.map((c) => ({ host: c.host, score: c.score })) } });
      throw new MotusError(
        'MOTUS_E_PLACEMENT_MANUAL',
        `VM ${spec.name} has no host and every host that could take it is in a cluster in manual mode, where Motus only recommends: start it with --host HOST (or set the cluster to partial or automatic). Recommended:\n  ${lines.join('\n  ')}`,
        { vm: spec.name, ranking },
      );
    }
    const mode = modeOf(chosen.host);
    this.deps.audit.append({ user: by, action: 'placement.initial', outcome: `placed on ${chosen.host}`, vm: spec.name, destination: chosen.host, detail: { mode, score: chosen.score, reasons: chosen.reasons, refused: ranking.refused.map((r) => ({ host: r.host, reasons: r.refusals.map((x) => x.reason) })) } });
    return { ranking, chosen, mode };
  }

  clusterOf(host: string): string {
    return this.clusterOfHost.get(host) ?? DEFAULT_CLUSTER;
  }

  // ---- clusters and balancing ----------------------------------------------------

  clusters(): ClusterInfo[] {
    const state = new ClusterState(this.model());
    return [...this.balancing.entries()]
      .map(([name, balancing]) => {
        const last = this.lastPass.get(name);
        return {
          name,
          hosts: state
            .hosts()
            .filter((h) => h.cluster === name)
            .map((h) => ({ name: h.name, state: h.state, load: round(state.load(h.name)), cpu: round(state.loadParts(h.name).cpu), memory: round(state.loadParts(h.name).memory) })),
          imbalance: round(state.imbalance(name)),
          mode: balancing.mode,
          threshold: balancing.threshold,
          intervalSeconds: balancing.intervalSeconds,
          ...(last ? { lastPass: last } : {}),
        };
      })
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Changes a cluster's balancing at run time (mode, threshold, interval); recorded in the audit trail. */
  configure(cluster: string, change: Partial<Pick<BalancingConfig, 'mode' | 'threshold' | 'intervalSeconds'>>, by: string): ClusterInfo {
    const current = this.requireCluster(cluster);
    const next = BalancingSchema.parse({ ...current, ...change });
    this.balancing.set(cluster, next);
    this.schedule(cluster);
    this.deps.audit.append({ user: by, action: 'cluster.configure', outcome: `${next.mode}, threshold ${next.threshold}`, detail: { cluster, ...change } });
    return this.clusters().find((c) => c.name === cluster)!;
  }

  /** One balancing pass: the proposals, and with `apply` the tasks that carry them out. */
  async balance(cluster: string, apply: boolean, by: string): Promise<BalancePlan> {
    const balancing = this.requireCluster(cluster);
    const active = new Set(this.deps.activeTasks().map((t) => t.vm));
    const state = new ClusterState(this.model());
    const plan = balanceCluster(state, cluster, { threshold: balancing.threshold, maxMoves: balancing.maxMovesPerPass, maxMiB: balancing.maxMiBPerPass, skip: active });
    if (apply) {
      const dones: Promise<unknown>[] = [];
      for (const move of plan.moves) {
        // An affinity group is one proposal but one task per member: they travel under the same limits as any migration.
        for (const vm of move.vms ?? [move.vm]) {
          try {
            const { task, done } = await this.deps.submit({ vm, destination: move.to, priority: 'normal', requestedBy: by });
            if (vm === move.vm) move.task = task.id;
            if (move.vms) (move.tasks ??= []).push(task.id);
            dones.push(done);
            const group = move.vms ? { group: move.vms } : {};
            this.deps.audit.append({ user: by, action: 'placement.balance.move', outcome: 'queued', vm, source: move.from, destination: move.to, task: task.id, detail: { cluster, gain: move.gain, reason: move.reason, ...group } });
          } catch (err) {
            this.deps.logger.warn('a balancing move was refused', { vm, to: move.to, error: (err as Error).message });
          }
        }
      }
      this.balancerTasks.set(cluster, dones);
    }
    if (apply || plan.moves.length > 0) {
      this.deps.audit.append({
        user: by,
        action: 'placement.balance',
        outcome: apply ? `${plan.moves.length} moves queued` : `${plan.moves.length} moves proposed`,
        detail: { cluster, threshold: plan.threshold, imbalanceBefore: plan.imbalanceBefore, imbalanceAfter: plan.imbalanceAfter, stoppedBecause: plan.stoppedBecause },
      });
    }
    this.lastPass.set(cluster, { ...plan, at: new Date().toISOString(), applied: apply });
    return plan;
  }

  // ---- maintenance and evacuation -------------------------------------------------

  /**
   * Empties the host with the wizard's choices, lowest-risk VMs first, as tasks under
   * the concurrency limits; the host enters maintenance once no VM runs there (or
   * only VMs allowed to stay). A VM with nowhere to go refuses the whole operation,
   * before anything moves, unless allowRunning.
   */
  async enterMaintenance(host: string, options: { allowRunning: boolean; by: string }): Promise<EvacuationInfo> {
    const info = this.requireHost(host);
    const running = this.evacuations.get(host);
    if (running && running.info.state === 'evacuating') return running.info;
    if (info.state === 'maintenance') throw new MotusError('MOTUS_E_INVALID_REQUEST', `host ${host} is in maintenance already`, { host });
    if (info.state === 'disconnected') throw new MotusError('MOTUS_E_HOST_DOWN', `host ${host} is down (its agent does not answer); its VMs cannot be moved live`, { host });
    return this.evacuate(host, 'maintenance', options.allowRunning, 'normal', options.by);
  }

  exitMaintenance(host: string, by: string): HostInfo {
    const info = this.requireHost(host);
    const running = this.evacuations.get(host);
    if (running?.info.state === 'evacuating' && running.info.why === 'maintenance') {
      running.info.state = 'failed';
      running.info.error = `stopped by ${by} (maintenance exit)`;
      running.info.finishedAt = new Date().toISOString();
    }
    if (info.state !== 'maintenance' && running?.info.why !== 'maintenance') {
      throw new MotusError('MOTUS_E_INVALID_REQUEST', `host ${host} is ${info.state}, not in maintenance`, { host, state: info.state });
    }
    this.evacuations.delete(host);
    if (info.state === 'maintenance') this.deps.setHostState(host, 'connected', `maintenance exited by ${by}`);
    this.deps.audit.append({ user: by, action: 'host.maintenance.exit', outcome: 'connected', source: host });
    return this.requireHost(host);
  }

  evacuation(host: string): EvacuationInfo {
    this.requireHost(host);
    const e = this.evacuations.get(host);
    if (!e) throw new MotusError('MOTUS_E_NOT_FOUND', `host ${host} has no evacuation (none was started since the server started)`, { host });
    return e.info;
  }

  /** Resolves when the host's evacuation (if any) has ended. */
  async evacuationDone(host: string): Promise<void> {
    await this.evacuations.get(host)?.done;
  }

  stop(): void {
    this.stopped = true;
    for (const timer of this.timers.values()) clearInterval(timer);
  }

  // ---- internals -------------------------------------------------------------------

  private async evacuate(host: string, why: EvacuationInfo['why'], allowRunning: boolean, priority: Priority, by: string): Promise<EvacuationInfo> {
    const state = new ClusterState(this.model());
    state.setHostState(host, 'maintenance');
    const vetoes = new Map<string, Map<string, Refusal[]>>();
    for (const vm of state.vmsOn(host)) vetoes.set(vm.name, await this.vetoes(vm.name, state));
    const plan = planEvacuation(state, host, (vm) => vetoes.get(vm) ?? new Map());
    const unmovable = state.vmsOn(host).filter((vm) => !vm.movable && !this.deps.activeTasks().some((t) => t.vm === vm.name));
    if (plan.stuck.length > 0 && !allowRunning) {
      const lines = plan.stuck.map((s) => `${s.vm}: ${s.refused.map((r) => `${r.host}: ${r.reasons.join('; ')}`).join(' | ') || 'no other host in its cluster'}`);
      this.deps.audit.append({ user: by, action: `host.${why === 'maintenance' ? 'maintenance.enter' : 'evacuate'}`, outcome: 'MOTUS_E_EVACUATION_BLOCKED', source: host, detail: { stuck: plan.stuck } });
      throw new MotusError('MOTUS_E_EVACUATION_BLOCKED', `host ${host} cannot be emptied: ${plan.stuck.length} VM(s) have nowhere to go (nothing was moved; --allow-running leaves them there):\n  ${lines.join('\n  ')}`, {
        host,
        stuck: plan.stuck,
      });
    }
    const info: EvacuationInfo = {
      host,
      why,
      state: 'evacuating',
      startedAt: new Date().toISOString(),
      by,
      moves: plan.moves.map((m) => ({ ...m, state: 'queued' })),
      stuck: plan.stuck,
      leftRunning: [...plan.stuck.map((s) => s.vm), ...unmovable.map((v) => v.name)],
    };
    const evacuation: Evacuation = { info, done: Promise.resolve() };
    this.evacuations.set(host, evacuation);
    this.deps.audit.append({
      user: by,
      action: why === 'maintenance' ? 'host.maintenance.enter' : 'host.evacuate',
      outcome: 'evacuating',
      source: host,
      detail: { why: why === 'degraded' ? this.signals(this.requireHost(host)).map((s) => s.detail) : 'maintenance', order: plan.moves.map((m) => `${m.vm} -> ${m.to} (~${m.costSeconds.toFixed(1)} s)`), stuck: plan.stuck.map((s) => s.vm) },
    });
    const dones: Array<Promise<MigrationSummary | undefined>> = [];
    for (const move of info.moves) {
      try {
        const { task, done } = await this.deps.submit({ vm: move.vm, destination: move.to, priority, requestedBy: by });
        move.task = task.id;
        dones.push(
          done.then((summary) => {
            move.state = summary.state;
            return summary;
          }),
        );
      } catch (err) {
        move.state = `refused: ${(err as Error).message}`;
      }
    }
    evacuation.done = Promise.all(dones).then(() => this.finishEvacuation(evacuation, allowRunning));
    return info;
  }

  private finishEvacuation(evacuation: Evacuation, allowRunning: boolean): void {
    const { info } = evacuation;
    if (info.state !== 'evacuating') return;
    const left = this.deps.vms().filter((vm) => vm.host === info.host && (vm.state === 'running' || vm.state === 'paused' || vm.state === 'migrating'));
    info.finishedAt = new Date().toISOString();
    info.leftRunning = left.map((v) => v.name);
    const failed = info.moves.filter((m) => m.state !== 'completed');
    if (info.why === 'maintenance') {
      if (left.length === 0 || allowRunning) {
        info.state = 'done';
        this.deps.setHostState(info.host, 'maintenance', left.length === 0 ? `emptied for maintenance by ${info.by}` : `in maintenance with ${left.map((v) => v.name).join(', ')} left running`);
        this.deps.audit.append({ user: info.by, action: 'host.maintenance.entered', outcome: 'maintenance', source: info.host, detail: { moved: info.moves.filter((m) => m.state === 'completed').map((m) => m.vm), leftRunning: info.leftRunning } });
      } else {
        info.state = 'failed';
        info.error = `VMs still on ${info.host}: ${left.map((v) => v.name).join(', ')}; moves that did not complete: ${failed.map((m) => `${m.vm} (${m.state})`).join(', ') || 'none'}`;
        this.deps.audit.append({ user: info.by, action: 'host.maintenance.enter', outcome: 'failed', source: info.host, detail: { error: info.error } });
      }
      return;
    }
    info.state = failed.length === 0 ? 'done' : 'failed';
    if (failed.length > 0) info.error = `moves that did not complete: ${failed.map((m) => `${m.vm} (${m.state})`).join(', ')}`;
    this.deps.audit.append({ user: info.by, action: 'host.evacuated', outcome: info.state, source: info.host, detail: { moved: info.moves.filter((m) => m.state === 'completed').map((m) => m.vm), leftRunning: info.leftRunning, ...(info.error ? { error: info.error } : {}) } });
  }

  private degrade(host: HostInfo, signals: HealthSignal[]): void {
    const reason = signals.map((s) => `${s.kind}: ${s.detail}`).join('; ');
    this.degradedAt.set(host.name, new Date().toISOString());
    this.deps.setHostState(host.name, 'degraded', reason);
    this.deps.logger.warn('host degraded', { host: host.name, reason });
    this.deps.audit.append({ user: 'motusd', action: 'host.degraded', outcome: this.config.health.onDegraded, source: host.name, detail: { signals } });
    if (this.config.health.onDegraded !== 'evacuate') return;
    void this.evacuate(host.name, 'degraded', true, 'high', 'motusd').catch((err: unknown) => {
      this.deps.logger.error('could not evacuate a degraded host', { host: host.name, error: (err as Error).message });
    });
  }

  private signals(host: HostInfo): HealthSignal[] {
    const now = Date.now();
    const found = healthSignals(this.config.health, {
      misses: this.misses.get(host.name) ?? 0,
      plugins: host.plugins,
      hardware: this.hardware.get(host.name),
      samples: this.history.samples(host.name),
      now,
    }).filter((s) => s.kind !== 'overload' || this.roomElsewhere(host.name));
    const since = this.signalSince.get(host.name) ?? new Map<string, string>();
    const current = new Map<string, string>();
    const out = found.map((s) => {
      const key = `${s.kind}:${s.detail.split(' ')[0]}`;
      const at = since.get(key) ?? new Date(now).toISOString();
      current.set(key, at);
      return { ...s, since: at };
    });
    this.signalSince.set(host.name, current);
    return out;
  }

  /**
   * Overload is a reason to leave a host only when another host of its cluster in
   * service clearly has room (CPU 20 points under the limit): when every host is
   * as busy — or they are one machine, as in an all-in-one site — moving VMs helps
   * nobody.
   */
  private roomElsewhere(host: string): boolean {
    const cluster = this.clusterOfHost.get(host) ?? DEFAULT_CLUSTER;
    const limit = this.config.health.overloadCpu - 0.2;
    return this.deps.hosts().some((other) => {
      if (other.name === host || other.state !== 'connected' || (this.clusterOfHost.get(other.name) ?? DEFAULT_CLUSTER) !== cluster) return false;
      const latest = this.history.latest(other.name);
      return latest !== undefined && latest.cpuUsed / Math.max(latest.cpus, 1) < limit;
    });
  }

  private schedule(cluster: string): void {
    const existing = this.timers.get(cluster);
    if (existing) clearInterval(existing);
    this.timers.delete(cluster);
    const balancing = this.balancing.get(cluster)!;
    if (balancing.mode !== 'automatic') return;
    const timer = setInterval(() => void this.automaticPass(cluster), balancing.intervalSeconds * 1000);
    timer.unref();
    this.timers.set(cluster, timer);
  }

  /** Automatic mode: a pass applies its moves, unless the previous pass's moves still run. */
  private async automaticPass(cluster: string): Promise<void> {
    if (this.stopped) return;
    const pending = this.balancerTasks.get(cluster) ?? [];
    const settled = await Promise.race([Promise.all(pending).then(() => true), new Promise((resolve) => setImmediate(() => resolve(false)))]);
    if (!settled) return;
    try {
      await this.balance(cluster, true, 'motus-balancer');
    } catch (err) {
      this.deps.logger.warn('automatic balancing pass failed', { cluster, error: (err as Error).message });
    }
  }

  /** Refusals from the plugins' validate taps, asked as a dry run for each host the model accepts. */
  private async vetoes(vmName: string, state: ClusterState): Promise<Map<string, Refusal[]>> {
    const vm = this.deps.vms().find((v) => v.name === vmName);
    if (!vm) return new Map();
    return this.askPlugins(vm, state, () => vm.host);
  }

  /** The validate taps as a dry run of `vm` from `sourceOf(host)` to each host the model accepts. */
  private async askPlugins(vm: VmInfo, state: ClusterState, sourceOf: (destination: string) => string): Promise<Map<string, Refusal[]>> {
    const out = new Map<string, Refusal[]>();
    if (!this.deps.hooks.validate.isUsed()) return out;
    const hosts = new Map(this.deps.hosts().map((h) => [h.name, h]));
    const container = this.deps.container.createChildContainer();
    try {
      for (const host of state.hosts()) {
        const source = hosts.get(sourceOf(host.name));
        if (!source || state.refusals(vm.name, host.name).length > 0) continue;
        const destination = hosts.get(host.name)!;
        const veto = await this.deps.hooks.validate.promise({
          migrationId: `placement-dry-run-${vm.name}`,
          vm: { ...vm, host: source.name },
          source,
          destination,
          container,
          signal: new AbortController().signal,
        });
        if (veto) out.set(host.name, [{ constraint: 'plugin', reason: `${veto.plugin}: ${veto.reason}` }]);
      }
    } finally {
      await container.dispose();
    }
    return out;
  }

  /** The live site as the engine sees it: demand averaged over the last samples. */
  model(): ClusterModel {
    const tasks = this.deps.activeTasks();
    const summaries = new Map(tasks.filter((t) => t.state === 'running').map((t) => [t.id, this.deps.migration(t.id)]));
    const activeOn = (host: string) => tasks.filter((t) => t.state === 'running' && (t.destination === host || summaries.get(t.id)?.source === host)).length;
    const siteHost = new Map(this.deps.site.hosts.map((h) => [h.name, h]));
    const networks = new Map(this.deps.site.networks.map((n) => [n.name, n]));
    const capBytes = this.deps.site.migration.maxBandwidthMiBps * 1048576;
    const averages = new Map<string, ReturnType<MetricsHistory['average']>>();
    const hosts: PlacementHost[] = this.deps.hosts().map((info) => {
      const avg = this.history.average(info.name, DEMAND_SAMPLES);
      averages.set(info.name, avg);
      const vmCpu = avg ? [...avg.vms.values()].reduce((s, v) => s + v.cpuUsed, 0) : 0;
      const config = siteHost.get(info.name);
      const network = networks.get(config?.migrationNetwork ?? 'default');
      const gbps = network?.gbps ?? 1;
      const measured = this.measuredLink.get(info.name);
      const evacuating = this.evacuations.get(info.name)?.info.state === 'evacuating';
      return {
        name: info.name,
        cluster: this.clusterOfHost.get(info.name) ?? DEFAULT_CLUSTER,
        state: evacuating && info.state === 'connected' ? 'maintenance' : info.state,
        cpus: info.cpus,
        memoryTotalMiB: info.memoryTotalMiB,
        reservedMiB: this.deps.reservedOn(info.name),
        baseCpu: avg ? Math.max(0, avg.cpuUsed - vmCpu) : 0,
        linkBytesPerSec: measured ? measured.bytesPerSec : Math.min((gbps * 1e9) / 8, capBytes),
        linkSource: measured
          ? `measured over ${measured.n} migration${measured.n === 1 ? '' : 's'} into ${info.name}`
          : `network ${config?.migrationNetwork ?? 'default'} at ${gbps} Gbit/s, capped at ${this.deps.site.migration.maxBandwidthMiBps} MiB/s`,
        activeMigrations: activeOn(info.name),
        maxMigrations: config?.maxMigrations ?? this.deps.site.tasks.maxPerHost,
      };
    });
    const registered = new Set(hosts.map((h) => h.name));
    const busy = new Set(tasks.map((t) => t.vm));
    const vms: PlacementVm[] = this.deps
      .vms()
      .filter((vm) => registered.has(vm.host) && (vm.state === 'running' || vm.state === 'migrating' || vm.state === 'paused'))
      .map((vm) => {
        const m = averages.get(vm.host)?.vms.get(vm.name);
        return {
          name: vm.name,
          host: vm.host,
          pool: this.poolOf(vm.name),
          memoryMiB: vm.spec.memoryMiB,
          vcpus: vm.spec.vcpus,
          cpuUsed: m?.cpuUsed ?? 0,
          memoryUsedMiB: m && m.rssMiB > 0 ? Math.min(m.rssMiB, vm.spec.memoryMiB) : vm.spec.memoryMiB,
          dirtyBytesPerSec: m?.dirtyBytesPerSec ?? 0,
          movable: vm.state === 'running' && !busy.has(vm.name),
        };
      });
    const clusters = [...this.balancing.keys()];
    return {
      hosts,
      vms,
      pools: this.config.pools.map((p) => ({ name: p.name, cluster: p.cluster ?? clusters[0] ?? DEFAULT_CLUSTER, shares: sharesValue(p.shares), reservation: p.reservation, limit: p.limit })),
      rules: {
        affinity: this.config.rules.filter((r) => r.kind === 'affinity').map((r) => ({ name: r.name, vms: r.vms })),
        antiAffinity: this.config.rules.filter((r) => r.kind === 'anti-affinity').map((r) => ({ name: r.name, vms: r.vms })),
        vmHost: this.config.rules.flatMap((r) => (r.kind === 'vm-host' ? [{ name: r.name, vms: r.vms, hosts: r.hosts, mode: r.mode }] : [])),
      },
    };
  }

  private state(vmName: string): ClusterState {
    const vm = this.deps.vms().find((v) => v.name === vmName);
    if (!vm) throw new MotusError('MOTUS_E_VM_NOT_FOUND', `no VM named ${vmName}`, { vm: vmName });
    if (vm.state !== 'running') throw new MotusError('MOTUS_E_VM_NOT_RUNNING', `VM ${vmName} is ${vm.state}, not running`, { vm: vmName, state: vm.state });
    const state = new ClusterState(this.model());
    if (!state.vm(vmName)) throw new MotusError('MOTUS_E_HOST_NOT_FOUND', `VM ${vmName} is on host ${vm.host}, which is not registered`, { vm: vmName, host: vm.host });
    return state;
  }

  private poolOf(vm: string): string {
    return this.config.pools.find((p) => p.vms.some((pattern) => globToRegExp(pattern).test(vm)))?.name ?? 'default';
  }

  private requireHost(name: string): HostInfo {
    const host = this.deps.hosts().find((h) => h.name === name);
    if (!host) throw new MotusError('MOTUS_E_HOST_NOT_FOUND', `no host named ${name}`, { host: name });
    return host;
  }

  private requireCluster(name: string): BalancingConfig {
    const balancing = this.balancing.get(name);
    if (!balancing) throw new MotusError('MOTUS_E_NOT_FOUND', `no cluster named ${name} (clusters: ${[...this.balancing.keys()].join(', ')})`, { cluster: name });
    return balancing;
  }
}

export function noDestination(ranking: Ranking): MotusError {
  const lines = ranking.refused.filter((r) => r.host !== ranking.source).map((r) => `${r.host}: ${r.refusals.map((x) => x.reason).join('; ')}`);
  return new MotusError('MOTUS_E_NO_DESTINATION', `no host can take VM ${ranking.vm}:\n  ${lines.join('\n  ') || 'the site has no other host'}`, { vm: ranking.vm, refused: ranking.refused });
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
