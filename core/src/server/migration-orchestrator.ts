import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { DependencyContainer } from 'tsyringe';
import {
  MotusError,
  redact,
  type HostInfo,
  type Logger,
  type MigrationEvent,
  type MigrationHookContext,
  type MigrationHooks,
  type MigrationPhase,
  type MigrationProgress,
  type MigrationRequest,
  type MigrationSummary,
  type MigrationTuning,
  type VmInfo,
  type VmRunState,
} from '@motus/sdk';
import type { AgentFacts, HostLink } from '../agent/host-link.js';
import type { MigrationConfig } from '../site/site-schema.js';
import type { Inventory } from './inventory.js';
import { decideEncryption } from './migration-encryption.js';
import { ProgressRate } from './progress-rate.js';
import { linkProbeOptions, planConvergence, type ConvergenceContext } from './convergence/convergence-plan.js';
import { ConvergencePolicy } from './convergence/convergence-policy.js';

/** What the orchestrator needs from the platform around it. */
export interface OrchestratorDeps {
  inventory: Inventory;
  hooks: MigrationHooks;
  container: DependencyContainer;
  logger: Logger;
  config: MigrationConfig;
  host(name: string): { info: HostInfo; link: HostLink } | undefined;
  publish(event: MigrationEvent): void;
  vmMoved(vm: VmInfo, from: string, migrationId: string): Promise<void>;
}

export interface StartOptions {
  id?: string;
  /** MiB already reserved on the destination for this migration. */
  reservedMiB?: number;
}

export type EventBody = MigrationEvent extends infer E ? (E extends MigrationEvent ? Omit<E, 'migrationId' | 'seq' | 'at'> : never) : never;

interface Running {
  summary: MigrationSummary;
  seq: number;
  controller: AbortController;
  cancelledBy?: string;
  done: Promise<MigrationSummary>;
}

interface Plan {
  /** The VM has disks on shared storage whose leases must pass from source to destination at switchover. */
  leases: boolean;
  /** Where the storage leases are: they move only while both QEMUs are stopped. */
  leaseOn: 'source' | 'none' | 'destination';
  vm: VmInfo;
  source: { info: HostInfo; link: HostLink };
  destination: { info: HostInfo; link: HostLink };
  ctx: MigrationHookContext;
  container: DependencyContainer;
  sourceFacts: AgentFacts;
  destinationFacts: AgentFacts;
  /** The memory stream goes over TLS. */
  encrypted: boolean;
}

const DESTINATION_RUN_TIMEOUT_MS = 10_000;
/**
 * The convergence policy aborts at the time limit on the first sample past it, with
 * its measurements; this timer is the backstop for phases that report no samples.
 */
const TIME_LIMIT_BACKSTOP_MS = 30_000;
/** A guest whose heartbeat the source saw beats again on the destination within this (its period is 200 ms by default). */
const GUEST_HEARTBEAT_WAIT_MS = 3_000;
const MiB = 1024 * 1024;

/**
 * Runs the migration lifecycle: request → validate → prepare → pre-copy →
 * switchover → announce → cleanup, and on any failure tears the destination down
 * and leaves the VM running on the source.
 */
export class MigrationOrchestrator {
  private readonly running = new Map<string, Running>();
  private readonly busyVms = new Set<string>();
  /** Memory promised to migrations whose destination process does not exist yet. */
  private readonly reservedMiB = new Map<string, number>();

  constructor(private readonly deps: OrchestratorDeps) {}

  /**
   * Validates now (throwing a coded error, nothing started) and runs the rest in the
   * background. A task gives its own id, and the memory it already reserved on the
   * destination (reserve()), which the migration then holds until its destination
   * process exists; on a refusal the caller still holds it.
   */
  async start(request: MigrationRequest, options: StartOptions = {}): Promise<{ id: string; done: Promise<MigrationSummary> }> {
    const t0 = performance.now();
    const vm = this.deps.inventory.vm(request.vm);
    const summary: MigrationSummary = {
      id: options.id ?? newMigrationId(),
      vm: request.vm,
      source: vm?.host ?? '',
      destination: request.destination,
      requestedBy: request.requestedBy ?? 'unknown',
      priority: request.priority ?? 'normal',
      state: 'queued',
      phase: 'request',
      requestedAt: new Date().toISOString(),
    };
    const run: Running = { summary, seq: 0, controller: new AbortController(), done: Promise.resolve(summary) };
    this.deps.inventory.putMigration(summary);
    this.emit(run, {
      type: 'requested',
      vm: summary.vm,
      source: summary.source,
      destination: summary.destination,
      requestedBy: summary.requestedBy,
      priority: summary.priority,
    });

    let plan: Plan;
    try {
      summary.phase = 'validate';
      plan = await this.validate(request, vm, run, options.reservedMiB ?? 0);
    } catch (err) {
      const error = MotusError.from(err);
      summary.state = 'rejected';
      summary.finishedAt = new Date().toISOString();
      summary.error = error.toJSON();
      this.deps.inventory.putMigration(summary);
      this.emit(run, { type: 'rejected', error: error.toJSON(), vetoes: error.code === 'MOTUS_E_MIGRATION_VETOED' ? [error.data.veto as never] : [] });
      throw error;
    }
    summary.state = 'running';
    summary.encrypted = plan.encrypted;
    this.deps.inventory.putMigration(summary);
    this.emit(run, { type: 'validated' });
    this.busyVms.add(plan.vm.name);
    this.running.set(summary.id, run);
    run.done = this.execute(run, plan, t0, options.reservedMiB !== undefined).finally(() => {
      this.busyVms.delete(plan.vm.name);
      this.running.delete(summary.id);
      void plan.container.dispose();
    });
    return { id: summary.id, done: run.done };
  }

  async cancel(id: string, by: string): Promise<void> {
    const run = this.running.get(id);
    if (!run) {
      if (this.deps.inventory.migration(id)) throw new MotusError('MOTUS_E_INVALID_REQUEST', `migration ${id} is not running any more`, { migration: id });
      throw new MotusError('MOTUS_E_NOT_FOUND', `no migration ${id}`, { migration: id });
    }
    run.cancelledBy = by;
    run.controller.abort(new MotusError('MOTUS_E_MIGRATION_CANCELLED', `migration ${id} was cancelled by ${by}`, { migration: id, by }));
  }

  isBusy(vm: string): boolean {
    return this.busyVms.has(vm);
  }

  reservedOn(host: string): number {
    return this.reservedMiB.get(host) ?? 0;
  }

  /** Promises memory on a host ahead of a migration (high priority); undone with unreserve() if it never starts. */
  reserve(host: string, mib: number): void {
    this.reservedMiB.set(host, this.reservedOn(host) + mib);
  }

  unreserve(host: string, mib: number): void {
    this.reservedMiB.set(host, Math.max(0, this.reservedOn(host) - mib));
  }

  /** Waits for every running migration to end (platform stop). */
  async drain(): Promise<void> {
    for (const run of this.running.values()) run.controller.abort(new MotusError('MOTUS_E_MIGRATION_CANCELLED', 'the platform is stopping'));
    await Promise.allSettled([...this.running.values()].map((run) => run.done));
  }

  private async validate(request: MigrationRequest, vm: VmInfo | undefined, run: Running, ownReservationMiB: number): Promise<Plan> {
    if (!vm) throw new MotusError('MOTUS_E_VM_NOT_FOUND', `no VM named ${request.vm}`, { vm: request.vm });
    if (this.busyVms.has(vm.name) || vm.state === 'migrating') {
      throw new MotusError('MOTUS_E_VM_BUSY', `VM ${vm.name} is already being migrated`, { vm: vm.name });
    }
    if (vm.state !== 'running') throw new MotusError('MOTUS_E_VM_NOT_RUNNING', `VM ${vm.name} is ${vm.state}, not running`, { vm: vm.name, state: vm.state });
    const destination = this.deps.host(request.destination);
    if (!destination) throw new MotusError('MOTUS_E_HOST_NOT_FOUND', `no host named ${request.destination}`, { host: request.destination });
    if (vm.host === request.destination) {
      throw new MotusError('MOTUS_E_SAME_HOST', `VM ${vm.name} already runs on ${vm.host}; pick another destination`, { vm: vm.name, host: vm.host });
    }
    const source = this.deps.host(vm.host);
    if (!source) throw new MotusError('MOTUS_E_HOST_NOT_FOUND', `VM ${vm.name} is on host ${vm.host}, which is not registered`, { host: vm.host });
    for (const side of [source, destination]) {
      if (side.info.state === 'disconnected') {
        throw new MotusError('MOTUS_E_HOST_DOWN', `host ${side.info.name} is down (its agent does not answer)`, { host: side.info.name });
      }
    }
    if (destination.info.state === 'maintenance') {
      throw new MotusError('MOTUS_E_HOST_DOWN', `host ${destination.info.name} is in maintenance and takes no VMs`, { host: destination.info.name });
    }
    const factsOf = async (side: { info: HostInfo; link: HostLink }) => {
      try {
        return await withTimeout(side.link.facts(), 5_000, `facts of ${side.info.name}`);
      } catch (err) {
        throw new MotusError('MOTUS_E_HOST_DOWN', `host ${side.info.name} does not answer: ${(err as Error).message}`, { host: side.info.name });
      }
    };
    const [facts, sourceFacts] = await Promise.all([factsOf(destination), factsOf(source)]);
    const encrypted = decideEncryption(this.deps.config.encryption, sourceFacts, facts);
    const freeMiB = facts.memoryTotalMiB - facts.memoryUsedMiB - this.reservedOn(destination.info.name) + ownReservationMiB;
    if (freeMiB < vm.spec.memoryMiB) {
      throw new MotusError(
        'MOTUS_E_INSUFFICIENT_MEMORY',
        `host ${destination.info.name} has ${freeMiB} MiB free, VM ${vm.name} needs ${vm.spec.memoryMiB} MiB`,
        { host: destination.info.name, freeMiB, neededMiB: vm.spec.memoryMiB },
      );
    }
    const container = this.deps.container.createChildContainer();
    const ctx: MigrationHookContext = {
      migrationId: run.summary.id,
      vm,
      source: source.info,
      destination: destination.info,
      container,
      signal: run.controller.signal,
    };
    const veto = await this.deps.hooks.validate.promise(ctx);
    if (veto) {
      await container.dispose();
      throw new MotusError('MOTUS_E_MIGRATION_VETOED', `${veto.plugin} refuses the migration: ${veto.reason}`, { veto });
    }
    const leases = (vm.spec.disks ?? []).length > 0 && (facts.storage.length > 0 || sourceFacts.storage.length > 0);
    return { leases, leaseOn: 'source', vm, source, destination, ctx, container, sourceFacts, destinationFacts: facts, encrypted };
  }

  private async execute(run: Running, plan: Plan, t0: number, preReserved: boolean): Promise<MigrationSummary> {
    const { summary } = run;
    const { vm, source, destination, ctx } = plan;
    const { config, hooks, logger } = this.deps;
    const signal = run.controller.signal;
    const timeoutMs = (config.timeoutBaseSeconds + (config.timeoutSecondsPerGiB * vm.spec.memoryMiB) / 1024) * 1000;
    const timer = setTimeout(() => {
      run.controller.abort(new MotusError('MOTUS_E_MIGRATION_TIMEOUT', `migration of ${vm.name} did not finish within ${Math.round(timeoutMs / 1000)} s`, { timeoutMs }));
    }, timeoutMs + TIME_LIMIT_BACKSTOP_MS);
    const memoryBytes = vm.spec.memoryMiB * MiB;
    const convergenceCtx: ConvergenceContext = {
      memoryBytes,
      vcpus: vm.spec.vcpus,
      sourceCpus: plan.sourceFacts.cpus,
      destinationCpus: plan.destinationFacts.cpus,
      accelerator: plan.sourceFacts.hypervisor.accelerator,
      ...(plan.sourceFacts.hypervisor.migrationFeatures ? { features: plan.sourceFacts.hypervisor.migrationFeatures } : {}),
      maxBandwidthBytesPerSec: config.maxBandwidthMiBps * MiB,
      switchoverCeilingMs: config.downtimeLimitMs,
      timeLimitMs: timeoutMs,
    };
    // The link is probed while the destination QEMU starts (the probe never fails: it falls back to the cap).
    // What the destination must know (multifd channels, post-copy) does not depend on the probe, so the plan
    // without it gives the destination's tuning; the plan with it, the source's.
    const probing = this.measureLink(plan, convergenceCtx.maxBandwidthBytesPerSec);
    let convergence = planConvergence(config.convergence, convergenceCtx);
    let policy = new ConvergencePolicy(config.convergence, convergenceCtx, convergence);
    let resumedOnDestination = false;
    this.setVmState(vm, 'migrating');
    if (!preReserved) this.reserve(destination.info.name, vm.spec.memoryMiB);
    let reserved = true;
    const unreserve = () => {
      if (!reserved) return;
      reserved = false;
      this.unreserve(destination.info.name, vm.spec.memoryMiB);
    };
    try {
      summary.phase = 'prepare';
      const preparedAt = performance.now();
      // Not abortable: a destination process still being launched must exist before rollback stops it.
      const destinationTuning = Object.keys(convergence.destination).length > 0 ? convergence.destination : undefined;
      const [link, { uri }] = await Promise.all([probing, destination.link.prepareIncoming(vm.spec, summary.id, destinationTuning, plan.encrypted ? { tls: true } : {})]);
      const measured = { ...convergenceCtx, ...link };
      convergence = planConvergence(config.convergence, measured);
      policy = new ConvergencePolicy(config.convergence, measured, convergence);
      for (const decision of convergence.decisions) this.emitPolicy(run, decision);
      if (signal.aborted) throw signal.reason;
      unreserve();
      await abortable(hooks.prepareDestination.promise(ctx), signal);
      this.emit(run, { type: 'prepared', uri, ms: Math.round(performance.now() - preparedAt), encrypted: plan.encrypted });

      summary.phase = 'precopy';
      const pauseForSwitchover = hooks.switchover.isUsed() || plan.leases;
      const tuning = { ...convergence.source, capabilities: { events: true, 'pause-before-switchover': pauseForSwitchover } };
      let final: MigrationProgress | undefined;
      const rate = new ProgressRate();
      let switchedOver = false;
      const outgoing = plan.encrypted ? { tls: { peer: destination.info.name } } : {};
      for await (const progress of source.link.migrateOut(vm.name, uri, tuning, summary.id, signal, outgoing)) {
        summary.controlPlaneMs ??= Math.round(performance.now() - t0);
        if (progress.status === 'pre-switchover') {
          if (switchedOver) continue;
          switchedOver = true;
          summary.phase = 'switchover';
          this.emit(run, { type: 'switchover', host: destination.info.name });
          if (plan.leases) {
            // Both QEMUs are stopped now: the source gives the leases up before the destination takes them.
            await source.link.releaseStorage(vm.name);
            plan.leaseOn = 'none';
            await destination.link.acquireStorage(vm.name);
            plan.leaseOn = 'destination';
          }
          await hooks.switchover.promise(ctx);
          await source.link.continueMigration(vm.name);
          continue;
        }
        if (progress.status === 'completed') {
          final = progress;
          break;
        }
        if (progress.status === 'failed' || progress.status === 'cancelled') {
          throw new MotusError('MOTUS_E_MIGRATION_FAILED', `the hypervisor reports the migration ${progress.status}${progress.error ? `: ${progress.error}` : ''}`, {
            status: progress.status,
            ...(progress.error ? { cause: progress.error } : {}),
          });
        }
        this.emit(run, rate.event(progress));
        for (const decision of policy.next(progress)) {
          this.emitPolicy(run, decision);
          if (decision.abort) {
            throw new MotusError('MOTUS_E_MIGRATION_TIMEOUT', `migration of ${vm.name} did not converge within ${Math.round(timeoutMs / 1000)} s: ${decision.reason}`, { timeoutMs, reason: decision.reason });
          }
          await this.applyStep(source.link, vm.name, decision.tune, decision.postcopy === true, summary.id);
        }
      }
      if (!final) {
        if (signal.aborted) throw signal.reason;
        throw new MotusError('MOTUS_E_MIGRATION_FAILED', `the agent of ${source.info.name} stopped reporting before the migration ended`);
      }
      if (!switchedOver) {
        summary.phase = 'switchover';
        this.emit(run, { type: 'switchover', host: destination.info.name });
      }
      await this.waitForDestination(destination.link, vm.name);
      resumedOnDestination = true;
      this.emit(run, { type: 'resumed', host: destination.info.name });
      const guestPauseMs = await this.guestPause(destination.link, vm.name, final);

      summary.phase = 'announce';
      // QEMU announces by itself after an incoming migration; asking again at once
      // costs a few RARPs and covers a driver that does not.
      await this.afterResume(run, 'announce-self', () => destination.link.announce(vm.name));
      if (hooks.announce.isUsed()) {
        const announceAt = performance.now();
        if (await this.afterResume(run, 'announce', () => hooks.announce.promise(ctx))) {
          this.emit(run, { type: 'announced', host: destination.info.name, ms: Math.round(performance.now() - announceAt) });
        }
      }
      summary.phase = 'cleanup';
      await this.afterResume(run, 'commit on destination', () => destination.link.commitIncoming(vm.name));
      await this.afterResume(run, 'stop source process', () => source.link.finishOutgoing(vm.name));
      await this.afterResume(run, 'cleanup hooks', () => hooks.cleanup.promise(ctx));

      const moved = await this.movedVm(vm, destination);
      this.deps.inventory.putVm(moved);
      await this.deps.vmMoved(moved, source.info.name, summary.id);
      Object.assign(summary, {
        state: 'completed',
        finishedAt: new Date().toISOString(),
        downtimeMs: final.downtimeMs ?? 0,
        totalTimeMs: Math.round(performance.now() - t0),
        bytes: final.transferredBytes,
        rounds: final.round,
        bytesPerMemory: Number((final.transferredBytes / memoryBytes).toFixed(3)),
        throttlePct: Math.max(policy.state.throttleReachedPct, final.cpuThrottlePct ?? 0),
        switchoverTargetMs: policy.state.switchoverTargetMs,
        postcopy: policy.state.postcopy === 'started',
        guestPauseMs,
      } satisfies Partial<MigrationSummary>);
      summary.controlPlaneMs ??= 0;
      this.deps.inventory.putMigration(summary);
      this.emit(run, {
        type: 'completed',
        downtimeMs: summary.downtimeMs!,
        totalTimeMs: summary.totalTimeMs!,
        bytes: summary.bytes!,
        rounds: summary.rounds!,
        controlPlaneMs: summary.controlPlaneMs,
        bytesPerMemory: summary.bytesPerMemory!,
        throttlePct: summary.throttlePct!,
        switchoverTargetMs: summary.switchoverTargetMs!,
        postcopy: summary.postcopy!,
        guestPauseMs,
      });
      logger.info('migration completed', { migration: summary.id, vm: vm.name, to: destination.info.name, downtimeMs: summary.downtimeMs });
      return summary;
    } catch (err) {
      const phase = summary.phase ?? 'precopy';
      if (resumedOnDestination) {
        // The destination already runs the VM: it stays there, whatever else failed.
        logger.error('migration failed after the destination resumed', { migration: summary.id, error: String(err) });
      }
      return await this.rollBack(run, plan, phase, signal.aborted ? signal.reason : err);
    } finally {
      clearTimeout(timer);
      unreserve();
    }
  }

  /**
   * The link between the two hosts, measured just before the migration (link-probe.ts):
   * the destination's agent opens a sink on its migration address, the source's agent
   * pushes at most the cap's worth of PROBE_MS into it. A failed probe is no reason to
   * refuse the migration: it then runs at the site cap, and the plan says why.
   */
  private async measureLink(plan: Plan, capBytesPerSec: number): Promise<Pick<ConvergenceContext, 'link' | 'linkUnmeasured'>> {
    const options = linkProbeOptions(capBytesPerSec);
    try {
      const sink = await withTimeout(plan.destination.link.openLinkProbe(options.timeoutMs), options.timeoutMs, `link probe sink on ${plan.destination.info.name}`);
      const result = await withTimeout(plan.source.link.probeLink(sink, options), options.timeoutMs + 1_000, `link probe from ${plan.source.info.name}`);
      return { link: { bytesPerSec: result.bytesPerSec, probeBytes: result.bytes, probeMs: result.ms, lateMs: result.lateMs } };
    } catch (err) {
      this.deps.logger.warn('link probe failed; the migration runs at the site cap', { source: plan.source.info.name, destination: plan.destination.info.name, error: String(err) });
      return { linkUnmeasured: (err as Error).message };
    }
  }

  /**
   * The guest-observed pause: from the last heartbeat the source host saw to the first
   * the destination host saw, or the longest gap during the copy if that was longer
   * (a throttled vCPU). Null when the guest prints no heartbeat. Host clocks: exact
   * on one machine, as good as their NTP sync across hosts.
   */
  private async guestPause(link: HostLink, vm: string, final: MigrationProgress): Promise<number | null> {
    if (!final.heartbeat) return null;
    const first = await this.afterResumeValue(() => link.firstHeartbeat(vm, GUEST_HEARTBEAT_WAIT_MS));
    if (first === null || first === undefined) return null;
    return Math.max(final.heartbeat.longestGapMs, first - final.heartbeat.lastAt);
  }

  private async afterResumeValue<T>(action: () => Promise<T>): Promise<T | undefined> {
    try {
      return await action();
    } catch (err) {
      this.deps.logger.warn('could not read the guest heartbeat on the destination', { error: (err as Error).message });
      return undefined;
    }
  }

  /**
   * Applies one policy step to the running migration. A knob the hypervisor refuses
   * is logged and the copy goes on: the next steps still apply.
   */
  private async applyStep(link: HostLink, vm: string, tune: MigrationTuning | undefined, postcopy: boolean, migration: string): Promise<void> {
    try {
      if (tune) await link.tuneMigration(vm, tune);
      if (postcopy) await link.startPostcopy(vm);
    } catch (err) {
      this.deps.logger.warn('the hypervisor refused a convergence step', { migration, error: (err as Error).message });
    }
  }

  private emitPolicy(run: Running, decision: { action: string; reason: string; values?: Record<string, number | string | boolean> }): void {
    this.emit(run, { type: 'policy', action: decision.action, reason: decision.reason, ...(decision.values ? { values: decision.values } : {}) });
  }

  /**
   * A step after the destination runs. Its failure must not roll the VM back (it
   * would then run on two hosts): it becomes a 'warning' event and a warning in the
   * summary, and the migration goes on. Returns whether the step succeeded.
   */
  private async afterResume(run: Running, step: string, action: () => Promise<unknown>): Promise<boolean> {
    try {
      await action();
      return true;
    } catch (err) {
      const error =
        err instanceof MotusError
          ? err
          : new MotusError('MOTUS_E_AFTER_SWITCHOVER', `${step} failed after the VM resumed on its destination: ${(err as Error)?.message ?? String(err)}`, { step });
      const phase = run.summary.phase ?? 'cleanup';
      (run.summary.warnings ??= []).push({ step, ...error.toJSON() });
      this.deps.inventory.putMigration(run.summary);
      this.emit(run, { type: 'warning', phase, step, error: error.toJSON() });
      this.deps.logger.warn(`${step} failed after the VM resumed on its destination`, { migration: run.summary.id, code: error.code, error: error.message });
      return false;
    }
  }

  private async rollBack(run: Running, plan: Plan, phase: MigrationPhase, cause: unknown): Promise<MigrationSummary> {
    const { summary } = run;
    const { vm, source, destination, ctx } = plan;
    const cancelled = cause instanceof MotusError && cause.code === 'MOTUS_E_MIGRATION_CANCELLED';
    const error =
      cause instanceof MotusError && (cause.code === 'MOTUS_E_MIGRATION_FAILED' || cancelled || cause.code === 'MOTUS_E_MIGRATION_TIMEOUT')
        ? new MotusError(cause.code, cause.message, { ...cause.data, phase })
        : new MotusError('MOTUS_E_MIGRATION_FAILED', `migration of ${vm.name} failed in ${phase}: ${(cause as Error)?.message ?? String(cause)}`, {
            phase,
            cause: cause instanceof MotusError ? cause.toJSON() : String(cause),
          });
    if (cancelled) this.emit(run, { type: 'cancelled', by: run.cancelledBy ?? 'system' });
    else this.emit(run, { type: 'failed', phase, error: error.toJSON() });
    try {
      await this.deps.hooks.failed.promise(ctx, error, phase);
    } catch (err) {
      this.deps.logger.error('a failed hook threw', { migration: summary.id, error: (err as Error).message });
    }
    // Whether the destination copy is known to be gone: until then the source must
    // not run a VM whose state may already live there (fencing rule O2).
    let destinationGone = false;
    const stopDestination = () =>
      destination.link.abortIncoming(vm.name).then(
        () => {
          destinationGone = true;
        },
        (err: unknown) => {
          this.deps.logger.warn('could not stop the destination copy', { migration: summary.id, error: (err as Error).message });
        },
      );
    if (plan.leaseOn !== 'source') {
      // The leases left the source at switchover. The destination copy stops first
      // (giving them up), the source takes them back, and only then may anything let
      // the source run again: cancelling a migration paused before switchover
      // resumes the source at once.
      await stopDestination();
      try {
        await source.link.acquireStorage(vm.name);
        plan.leaseOn = 'source';
      } catch (err) {
        this.deps.logger.error('the source cannot take its storage leases back; it stays paused', { migration: summary.id, error: (err as Error).message });
      }
    }
    if (plan.leaseOn === 'source') await source.link.cancelMigration(vm.name).catch(() => undefined);
    await stopDestination();
    let state = await sourceState(source.link, vm.name);
    // A source whose state already went over (postmigrate) runs again only once the
    // destination copy is known to be gone, or the lease says the VM is the source's.
    const mayResume = plan.leaseOn === 'source' && (state !== 'postmigrate' || destinationGone || plan.leases);
    if (mayResume && (state === 'paused' || state === 'postmigrate' || state === 'finish-migrate')) {
      await source.link.resume(vm.name).catch((err: unknown) => {
        this.deps.logger.error('could not resume the VM on its source', { migration: summary.id, error: (err as Error).message });
      });
      state = await sourceState(source.link, vm.name);
    }
    // An unreachable source is not a dead one: it settles by itself (rules S1, S2) and
    // the heartbeat reports what it decided.
    // A source left stopped because the lease is elsewhere, or whose state went over
    // to a destination that may run, is not known to be paused for good either.
    const unsettled = state !== 'running' && state !== 'absent' && (plan.leaseOn !== 'source' || (state === 'postmigrate' && !destinationGone));
    const vmState = state === 'running' ? 'running' : state === 'absent' ? 'crashed' : state === 'unreachable' || unsettled ? 'unknown' : 'paused';
    this.setVmState(vm, vmState);
    Object.assign(summary, { state: cancelled ? 'cancelled' : 'failed', finishedAt: new Date().toISOString(), error: error.toJSON() } satisfies Partial<MigrationSummary>);
    this.deps.inventory.putMigration(summary);
    this.emit(run, { type: 'rolled-back', host: source.info.name, vmState: state });
    this.deps.logger.warn('migration rolled back', { migration: summary.id, vm: vm.name, phase, error: error.message, vmState: state });
    return summary;
  }

  private async waitForDestination(link: HostLink, vm: string): Promise<void> {
    const deadline = Date.now() + DESTINATION_RUN_TIMEOUT_MS;
    for (;;) {
      // An agent that does not answer for a moment is asked again until the deadline.
      const state = await link.runState(vm).catch((err: unknown) => {
        if (Date.now() > deadline) throw err;
        return 'unreachable' as const;
      });
      if (state === 'running') return;
      if (state === 'absent') throw new MotusError('MOTUS_E_MIGRATION_FAILED', `the destination process of ${vm} exited right after the switchover`);
      if (Date.now() > deadline) {
        throw new MotusError('MOTUS_E_MIGRATION_FAILED', `the destination of ${vm} did not start running within ${DESTINATION_RUN_TIMEOUT_MS} ms (state ${state})`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  private async movedVm(vm: VmInfo, destination: { info: HostInfo; link: HostLink }): Promise<VmInfo> {
    const facts = await destination.link.facts().catch(() => undefined);
    const process = facts?.vms.find((v) => v.name === vm.name);
    return {
      ...vm,
      host: destination.info.name,
      state: 'running',
      ...(process ? { pid: process.pid, serialLog: process.serialLog, startedAt: process.startedAt } : {}),
    };
  }

  private setVmState(vm: VmInfo, state: VmInfo['state']): void {
    const current = this.deps.inventory.vm(vm.name) ?? vm;
    this.deps.inventory.putVm({ ...current, state });
  }

  private emit(run: Running, body: EventBody): void {
    run.seq += 1;
    // Events are stored and streamed to every viewer: no secret (in a cause, a URI) may ride along.
    const event = redact({ ...body, migrationId: run.summary.id, seq: run.seq, at: new Date().toISOString() }) as MigrationEvent;
    this.deps.inventory.addEvent(event);
    this.deps.publish(event);
  }
}

/** The source's run state; 'unreachable' when its agent does not answer (not the same as a dead VM). */
async function sourceState(link: HostLink, vm: string): Promise<VmRunState | 'absent' | 'unreachable'> {
  try {
    return await link.runState(vm);
  } catch {
    return 'unreachable';
  }
}

function newMigrationId(): string {
  return `m-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new MotusError('MOTUS_E_TIMEOUT', `${what} took longer than ${ms} ms`)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}
