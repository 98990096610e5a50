import { randomBytes } from 'node:crypto';
import {
  MotusError,
  type HostInfo,
  type Logger,
  type MigrationEvent,
  type MigrationSummary,
  type Priority,
  type TaskInfo,
  type VmInfo,
} from '@motus/sdk';
import type { HostLink } from '../../agent/host-link.js';
import type { TasksConfig } from '../../site/site-schema.js';
import { currentRequestId, newRequestId, withRequestId } from '../../kernel/request-context.js';
import type { AuditTrail } from '../audit/audit-trail.js';
import type { Inventory } from '../inventory.js';
import { withTimeout, type EventBody, type MigrationOrchestrator } from '../migration-orchestrator.js';
import { Dispatcher, type Dispatchable } from './dispatcher.js';
import type { MigrationResources } from './migration-resources.js';
import { ResourceLedger } from './resource-ledger.js';
import type { TaskStore } from './task-store.js';

export interface TaskRequestInput {
  vm: string;
  destination: string;
  priority?: Priority;
  requestedBy: string;
  scheduleId?: string;
}

export interface TaskServiceDeps {
  store: TaskStore;
  audit: AuditTrail;
  inventory: Inventory;
  orchestrator: MigrationOrchestrator;
  resources: MigrationResources;
  config: TasksConfig;
  logger: Logger;
  /** A registered host and its link. */
  host(name: string): { info: HostInfo; link: HostLink } | undefined;
  /** Hosts the site knows (site file or inventory), registered or not yet. */
  knownHost(name: string): boolean;
  publish(event: MigrationEvent): void;
  vmChanged(vm: VmInfo, from: string | undefined, migrationId: string): Promise<void>;
}

interface LiveTask extends Dispatchable {
  info: TaskInfo;
  seq: number;
  keys: string[];
  reservedMiB?: number;
  cancelBy?: string;
  /** Running when the server last stopped: its outcome is read from the agents once both hosts are back. */
  reconciling?: boolean;
  settle: (summary: MigrationSummary) => void;
  done: Promise<MigrationSummary>;
}

/**
 * Every migration is a task: queued under the concurrency limits, dispatched by
 * priority, handed to the orchestrator (the one place that runs a migration), and
 * kept in SQLite from request to end.
 */
export class TaskService {
  private readonly live = new Map<string, LiveTask>();
  private readonly launching = new Map<string, Promise<void>>();
  private readonly dispatcher: Dispatcher<LiveTask>;
  private nextSeq: number;
  private stopping = false;

  constructor(private readonly deps: TaskServiceDeps) {
    this.dispatcher = new Dispatcher(new ResourceLedger((key) => deps.resources.capacity(key)), { highPriorityBurst: deps.config.highPriorityBurst });
    this.nextSeq = deps.store.nextSeq();
    this.restore();
  }

  /** Queues a migration; when it can start at once, waits for the orchestrator's validation and throws its refusal. */
  async submit(request: TaskRequestInput): Promise<{ task: TaskInfo; done: Promise<MigrationSummary> }> {
    const id = newTaskId();
    const vm = this.precheck(request, id);
    const priority = request.priority ?? 'normal';
    const info: TaskInfo = {
      id,
      vm: request.vm,
      destination: request.destination,
      priority,
      requestedBy: request.requestedBy,
      state: 'queued',
      createdAt: new Date().toISOString(),
      ...(request.scheduleId ? { scheduleId: request.scheduleId } : {}),
      requestId: currentRequestId() ?? newRequestId(),
    };
    const task = this.track(info, this.nextSeq++, this.deps.resources.keysFor(vm.spec, vm.host, request.destination));
    this.save(task);
    this.deps.inventory.putMigration(this.queuedSummary(info, vm.host));
    this.deps.audit.append({
      user: info.requestedBy,
      action: 'migration.request',
      outcome: 'queued',
      vm: info.vm,
      source: vm.host,
      destination: info.destination,
      task: id,
      detail: { priority, ...(info.scheduleId ? { schedule: info.scheduleId } : {}) },
    });
    this.deps.logger.info('migration task queued', { task: id, vm: info.vm, destination: info.destination, priority, requestedBy: info.requestedBy });
    this.dispatcher.enqueue(task);
    this.pump();
    const launching = this.launching.get(id);
    if (launching) await launching;
    return { task: this.view(task), done: task.done };
  }

  async cancel(id: string, by: string): Promise<TaskInfo> {
    const task = this.live.get(id);
    if (!task) {
      const stored = this.deps.store.get(id);
      if (!stored) throw new MotusError('MOTUS_E_NOT_FOUND', `no task ${id}`, { task: id });
      throw new MotusError('MOTUS_E_INVALID_REQUEST', `task ${id} is ${stored.task.state} already; only queued and running tasks can be cancelled`, { task: id, state: stored.task.state });
    }
    if (task.reconciling) throw new MotusError('MOTUS_E_INVALID_REQUEST', `task ${id} is being reconciled after a server restart; wait for its hosts`, { task: id });
    this.deps.audit.append({ user: by, action: 'migration.cancel', outcome: task.info.state === 'queued' ? 'cancelled while queued' : 'requested', vm: task.info.vm, destination: task.info.destination, task: id });
    if (task.info.state === 'queued') {
      this.dispatcher.remove(id);
      const error = new MotusError('MOTUS_E_MIGRATION_CANCELLED', `task ${id} was cancelled by ${by} before it started`, { task: id, by });
      this.endUnstarted(task, 'cancelled', error, [{ type: 'cancelled', by }]);
      return this.view(task);
    }
    task.cancelBy = by;
    if (!this.launching.has(id)) await this.deps.orchestrator.cancel(id, by);
    return this.view(task);
  }

  task(id: string): TaskInfo {
    const live = this.live.get(id);
    if (live) return this.view(live);
    const stored = this.deps.store.get(id);
    if (!stored) throw new MotusError('MOTUS_E_NOT_FOUND', `no task ${id}`, { task: id });
    return stored.task;
  }

  /** Newest first. */
  tasks(limit = 1000): TaskInfo[] {
    return this.deps.store.list(limit).map((info) => {
      const live = this.live.get(info.id);
      return live ? this.view(live) : info;
    });
  }

  /** Tasks waiting in the queue. */
  queueLength(): number {
    return this.dispatcher.size;
  }

  /** Tasks whose migration runs now (or awaits reconciliation after a restart). */
  runningCount(): number {
    let running = 0;
    for (const task of this.live.values()) if (task.info.state === 'running') running += 1;
    return running;
  }

  /** The outcome of a task still in memory (queued or running), for in-process callers. */
  done(id: string): Promise<MigrationSummary> | undefined {
    return this.live.get(id)?.done;
  }

  /** A host registered or came back: tasks waiting for it may start, and tasks running when the server died are settled. */
  hostAvailable(name: string): void {
    this.dispatcher.capacityChanged(`up:${name}`);
    for (const task of this.live.values()) {
      if (!task.reconciling || (task.info.destination !== name && this.sourceOf(task) !== name)) continue;
      const source = this.deps.host(this.sourceOf(task));
      const destination = this.deps.host(task.info.destination);
      if (source?.info.state === 'connected' && destination?.info.state === 'connected') {
        task.reconciling = false;
        void this.reconcile(task, source.link, destination.link);
      }
    }
    this.pump();
  }

  /** Records a migration's lifecycle in the audit trail (progress samples excepted). */
  auditEvent(event: MigrationEvent): void {
    if (event.type === 'progress' || event.type === 'requested') return;
    const summary = this.deps.inventory.migration(event.migrationId);
    const entry = {
      user: event.type === 'cancelled' ? event.by : (summary?.requestedBy ?? 'unknown'),
      action: `migration.${event.type}`,
      outcome: 'ok',
      task: event.migrationId,
      ...(summary ? { vm: summary.vm, source: summary.source, destination: summary.destination } : {}),
    };
    switch (event.type) {
      case 'completed':
        this.deps.audit.append({ ...entry, outcome: 'completed', downtimeMs: event.downtimeMs, detail: { totalTimeMs: event.totalTimeMs, bytes: event.bytes } });
        return;
      case 'failed':
        this.deps.audit.append({ ...entry, outcome: event.error.code, detail: { phase: event.phase, message: event.error.message } });
        return;
      case 'rejected':
        this.deps.audit.append({ ...entry, outcome: event.error.code, detail: { message: event.error.message } });
        return;
      case 'rolled-back':
        this.deps.audit.append({ ...entry, outcome: `vm ${event.vmState} on ${event.host}` });
        return;
      case 'validated':
        this.deps.audit.append({ ...entry, outcome: 'started' });
        return;
      case 'cancelled':
        this.deps.audit.append({ ...entry, outcome: 'cancelled' });
        return;
      case 'warning':
        this.deps.audit.append({ ...entry, outcome: event.error.code, detail: { phase: event.phase, step: event.step, message: event.error.message } });
        return;
      default:
        this.deps.audit.append({ ...entry, outcome: 'ok', detail: { phase: event.type } });
    }
  }

  stop(): void {
    this.stopping = true;
  }

  private precheck(request: TaskRequestInput, id: string): VmInfo {
    const vm = this.deps.inventory.vm(request.vm);
    try {
      if (!vm) throw new MotusError('MOTUS_E_VM_NOT_FOUND', `no VM named ${request.vm}`, { vm: request.vm });
      const pending = [...this.live.values()].find((t) => t.info.vm === vm.name);
      if (pending || this.deps.orchestrator.isBusy(vm.name) || vm.state === 'migrating') {
        throw new MotusError('MOTUS_E_VM_BUSY', `VM ${vm.name} already has a migration ${pending ? `(task ${pending.info.id}, ${pending.info.state})` : 'running'}`, { vm: vm.name, ...(pending ? { task: pending.info.id } : {}) });
      }
      if (vm.state !== 'running') throw new MotusError('MOTUS_E_VM_NOT_RUNNING', `VM ${vm.name} is ${vm.state}, not running`, { vm: vm.name, state: vm.state });
      const destination = this.deps.host(request.destination);
      if (!destination && !this.deps.knownHost(request.destination)) {
        throw new MotusError('MOTUS_E_HOST_NOT_FOUND', `no host named ${request.destination}`, { host: request.destination });
      }
      if (vm.host === request.destination) {
        throw new MotusError('MOTUS_E_SAME_HOST', `VM ${vm.name} already runs on ${vm.host}; pick another destination`, { vm: vm.name, host: vm.host });
      }
      if (destination) {
        if (destination.info.state !== 'connected') {
          throw new MotusError('MOTUS_E_HOST_DOWN', `host ${destination.info.name} is ${destination.info.state === 'maintenance' ? 'in maintenance and takes no VMs' : 'down (its agent does not answer)'}`, { host: destination.info.name });
        }
        if (destination.info.memoryTotalMiB < vm.spec.memoryMiB) {
          throw new MotusError('MOTUS_E_INSUFFICIENT_MEMORY', `host ${destination.info.name} has ${destination.info.memoryTotalMiB} MiB in all, VM ${vm.name} needs ${vm.spec.memoryMiB} MiB`, {
            host: destination.info.name,
            totalMiB: destination.info.memoryTotalMiB,
            neededMiB: vm.spec.memoryMiB,
          });
        }
      }
      return vm;
    } catch (err) {
      const error = MotusError.from(err);
      const summary: MigrationSummary = {
        ...this.queuedSummary({ id, vm: request.vm, destination: request.destination, priority: request.priority ?? 'normal', requestedBy: request.requestedBy, state: 'queued', createdAt: new Date().toISOString() }, vm?.host ?? ''),
        state: 'rejected',
        finishedAt: new Date().toISOString(),
        error: error.toJSON(),
      };
      this.deps.inventory.putMigration(summary);
      this.emitEvents(summary, [this.requestedEvent(summary), { type: 'rejected', error: error.toJSON(), vetoes: [] }]);
      throw error;
    }
  }

  private pump(): void {
    if (this.stopping) return;
    for (const task of this.dispatcher.takeReady()) {
      // The task runs under the request id of the call that queued it, whichever call frees its slot.
      const launching = withRequestId(task.info.requestId, () => this.launch(task)).finally(() => this.launching.delete(task.id));
      launching.catch(() => undefined);
      this.launching.set(task.id, launching);
    }
  }

  private async launch(task: LiveTask): Promise<void> {
    const { info } = task;
    info.state = 'running';
    info.startedAt = new Date().toISOString();
    this.save(task);
    const vm = this.deps.inventory.vm(info.vm);
    if (info.priority === 'high' && vm) {
      const destination = this.deps.host(info.destination);
      const freeMiB = destination ? destination.info.memoryTotalMiB - destination.info.memoryUsedMiB - this.deps.orchestrator.reservedOn(info.destination) : 0;
      if (freeMiB < vm.spec.memoryMiB) {
        const error = new MotusError('MOTUS_E_RESERVATION_FAILED', `cannot reserve ${vm.spec.memoryMiB} MiB on ${info.destination} for high-priority task ${info.id}: ${freeMiB} MiB free; it did not start`, {
          host: info.destination,
          freeMiB,
          neededMiB: vm.spec.memoryMiB,
        });
        this.dispatcher.finished(task);
        this.endUnstarted(task, 'failed', error, []);
        throw error;
      }
      this.deps.orchestrator.reserve(info.destination, vm.spec.memoryMiB);
      task.reservedMiB = vm.spec.memoryMiB;
    }
    let started: { done: Promise<MigrationSummary> };
    try {
      started = await this.deps.orchestrator.start(
        { vm: info.vm, destination: info.destination, priority: info.priority, requestedBy: info.requestedBy },
        { id: info.id, ...(task.reservedMiB === undefined ? {} : { reservedMiB: task.reservedMiB }) },
      );
    } catch (err) {
      if (task.reservedMiB !== undefined) this.deps.orchestrator.unreserve(info.destination, task.reservedMiB);
      const error = MotusError.from(err);
      const summary = this.deps.inventory.migration(info.id);
      this.finish(task, 'failed', summary ?? this.queuedSummary(info, vm?.host ?? ''), error);
      throw error;
    }
    if (task.cancelBy) void this.deps.orchestrator.cancel(info.id, task.cancelBy).catch(() => undefined);
    void started.done.then(
      (summary) => this.finish(task, summary.state === 'completed' ? 'completed' : summary.state === 'cancelled' ? 'cancelled' : 'failed', summary, summary.error && MotusError.fromJSON(summary.error as never)),
      (err: unknown) => this.finish(task, 'failed', this.deps.inventory.migration(info.id) ?? this.queuedSummary(info, ''), MotusError.from(err)),
    );
  }

  private finish(task: LiveTask, state: TaskInfo['state'], summary: MigrationSummary, error?: MotusError): void {
    task.info.state = state;
    task.info.finishedAt = new Date().toISOString();
    if (error) task.info.error = error.toJSON();
    this.save(task);
    this.live.delete(task.info.id);
    this.dispatcher.finished(task);
    task.settle(summary);
    this.pump();
  }

  /** A task that never reached the orchestrator (cancelled while queued, reservation refused). */
  private endUnstarted(task: LiveTask, state: 'cancelled' | 'failed', error: MotusError, extra: EventBody[]): void {
    const summary: MigrationSummary = {
      ...(this.deps.inventory.migration(task.info.id) ?? this.queuedSummary(task.info, '')),
      state: state === 'cancelled' ? 'cancelled' : 'rejected',
      finishedAt: new Date().toISOString(),
      error: error.toJSON(),
    };
    this.deps.inventory.putMigration(summary);
    this.emitEvents(summary, [this.requestedEvent(summary), ...extra, { type: 'rejected', error: error.toJSON(), vetoes: [] }]);
    task.info.state = state;
    task.info.finishedAt = summary.finishedAt!;
    task.info.error = error.toJSON();
    this.save(task);
    this.live.delete(task.info.id);
    task.settle(summary);
    this.pump();
  }

  /**
   * Settles a migration that was running when the server stopped, from where the
   * VM runs now: a destination copy that runs means the migration finished while
   * the server was away; anything else is rolled back to the source. Either way it
   * is never started again.
   */
  private async reconcile(task: LiveTask, source: HostLink, destination: HostLink): Promise<void> {
    const { info } = task;
    const summary = this.deps.inventory.migration(info.id) ?? this.queuedSummary(info, this.sourceOf(task));
    const vm = this.deps.inventory.vm(info.vm);
    try {
      const destinationState = await withTimeout(destination.runState(info.vm), 10_000, `state of ${info.vm} on ${info.destination}`);
      if (destinationState === 'running') {
        await destination.commitIncoming(info.vm).catch((err: unknown) => this.deps.logger.warn('reconcile: commit failed', { task: info.id, error: String(err) }));
        await source.finishOutgoing(info.vm).catch((err: unknown) => this.deps.logger.warn('reconcile: source not stopped', { task: info.id, error: String(err) }));
        const facts = await destination.facts().catch(() => undefined);
        const process = facts?.vms.find((v) => v.name === info.vm);
        if (vm) {
          const moved: VmInfo = { ...vm, host: info.destination, state: 'running', ...(process ? { pid: process.pid, serialLog: process.serialLog, startedAt: process.startedAt } : {}) };
          this.deps.inventory.putVm(moved);
          await this.deps.vmChanged(moved, summary.source, info.id);
        }
        const done: MigrationSummary = { ...summary, state: 'completed', finishedAt: new Date().toISOString() };
        this.deps.inventory.putMigration(done);
        this.emitEvents(done, [{ type: 'resumed', host: info.destination }, { type: 'completed', downtimeMs: 0, totalTimeMs: 0, bytes: 0, rounds: 0, controlPlaneMs: 0, bytesPerMemory: 0, throttlePct: 0, switchoverTargetMs: 0, postcopy: false, guestPauseMs: null }]);
        this.deps.audit.append({ user: 'motusd', action: 'migration.reconciled', outcome: 'completed', vm: info.vm, source: summary.source, destination: info.destination, task: info.id, detail: { reason: 'the server stopped during the migration; the destination runs the VM' } });
        this.finish(task, 'completed', done);
        return;
      }
      // Fencing: the destination copy goes first (giving its lease up), the source
      // takes the lease back, and only then is its migration cancelled — QEMU resumes
      // a source by itself on cancel. A source that cannot get the lease stays paused.
      if (destinationState !== 'absent') await destination.abortIncoming(info.vm).catch(() => undefined);
      const leaseBack = await source.acquireStorage(info.vm).then(
        () => true,
        (err: unknown) => {
          this.deps.logger.warn('reconcile: the source cannot take its lease back; it stays paused', { task: info.id, error: String(err) });
          return false;
        },
      );
      if (leaseBack) await source.cancelMigration(info.vm).catch(() => undefined);
      const deadline = Date.now() + 10_000;
      let state = await source.runState(info.vm).catch(() => 'absent' as const);
      while ((state === 'finish-migrate' || state === 'inmigrate') && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        state = await source.runState(info.vm).catch(() => 'absent' as const);
      }
      // resume also tells the source agent the VM is no longer outgoing.
      if (leaseBack && state !== 'absent') await source.resume(info.vm).catch(() => undefined);
      state = await source.runState(info.vm).catch(() => 'absent' as const);
      const vmState = state === 'running' ? 'running' : state === 'absent' ? 'crashed' : 'paused';
      if (vm) {
        const back: VmInfo = { ...vm, host: summary.source, state: vmState };
        this.deps.inventory.putVm(back);
      }
      const error = new MotusError('MOTUS_E_MIGRATION_FAILED', `the server stopped during the migration of ${info.vm}; it was rolled back when its hosts came back`, { phase: summary.phase ?? 'precopy' });
      const failed: MigrationSummary = { ...summary, state: 'failed', finishedAt: new Date().toISOString(), error: error.toJSON() };
      this.deps.inventory.putMigration(failed);
      this.emitEvents(failed, [{ type: 'failed', phase: summary.phase ?? 'precopy', error: error.toJSON() }, { type: 'rolled-back', host: summary.source, vmState: state }]);
      this.deps.audit.append({ user: 'motusd', action: 'migration.reconciled', outcome: 'rolled back', vm: info.vm, source: summary.source, destination: info.destination, task: info.id, detail: { vmState: state } });
      this.finish(task, 'failed', failed, error);
    } catch (err) {
      this.deps.logger.error('could not reconcile a task after restart; will retry when a host comes back', { task: info.id, error: (err as Error).message });
      task.reconciling = true;
    }
  }

  /** Rebuilds the queue after a restart: queued tasks wait again in their order; running ones await reconciliation. */
  private restore(): void {
    for (const { seq, task: info } of this.deps.store.inState('queued')) {
      const vm = this.deps.inventory.vm(info.vm);
      const task = this.track(info, seq, this.deps.resources.keysFor(vm?.spec ?? {}, vm?.host ?? '', info.destination));
      this.dispatcher.enqueue(task);
    }
    for (const { seq, task: info } of this.deps.store.inState('running')) {
      const summary = this.deps.inventory.migration(info.id);
      const vm = this.deps.inventory.vm(info.vm);
      const task = this.track(info, seq, this.deps.resources.keysFor(vm?.spec ?? {}, summary?.source ?? vm?.host ?? '', info.destination));
      task.reconciling = true;
      // A migration that may still be moving memory counts against the limits until it is settled.
      this.dispatcher.hold(task);
    }
  }

  private sourceOf(task: LiveTask): string {
    return this.deps.inventory.migration(task.info.id)?.source || this.deps.inventory.vm(task.info.vm)?.host || '';
  }

  private track(info: TaskInfo, seq: number, keys: string[]): LiveTask {
    let settle!: (summary: MigrationSummary) => void;
    const done = new Promise<MigrationSummary>((resolve) => (settle = resolve));
    const task: LiveTask = { id: info.id, priority: info.priority, seq, keys, info, settle, done };
    this.live.set(info.id, task);
    return task;
  }

  private view(task: LiveTask): TaskInfo {
    const waitingFor = task.info.state === 'queued' ? this.dispatcher.waitingFor(task.id) : undefined;
    return { ...task.info, ...(waitingFor ? { waitingFor } : {}) };
  }

  private save(task: LiveTask): void {
    this.deps.store.put(task.seq, task.info);
  }

  private queuedSummary(info: TaskInfo, source: string): MigrationSummary {
    return {
      id: info.id,
      vm: info.vm,
      source,
      destination: info.destination,
      requestedBy: info.requestedBy,
      priority: info.priority,
      state: 'queued',
      phase: 'request',
      requestedAt: info.createdAt,
    };
  }

  private requestedEvent(summary: MigrationSummary): EventBody {
    return { type: 'requested', vm: summary.vm, source: summary.source, destination: summary.destination, requestedBy: summary.requestedBy, priority: summary.priority };
  }

  /** Appends events after whatever the migration already recorded. */
  private emitEvents(summary: MigrationSummary, bodies: EventBody[]): void {
    let seq = this.deps.inventory.events(summary.id).length;
    for (const body of bodies) {
      seq += 1;
      const event = { ...body, migrationId: summary.id, seq, at: new Date().toISOString() } as MigrationEvent;
      this.deps.inventory.addEvent(event);
      this.deps.publish(event);
    }
  }
}

function newTaskId(): string {
  return `m-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}
