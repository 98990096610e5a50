import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Observable, Subject, filter } from 'rxjs';
import type { DependencyContainer } from 'tsyringe';
import {
  CpuCompatPolicyToken,
  MotusError,
  NetworkProviderToken,
  TERMINAL_MIGRATION_EVENTS,
  type HostEvent,
  type HostInfo,
  type InitialPlacement,
  type Logger,
  type MigrationEvent,
  type MigrationHandle,
  type MigrationHooks,
  type MigrationRequest,
  type MigrationSummary,
  type Platform,
  type Ranking,
  type Role,
  type VmEvent,
  type VmInfo,
  type VmSpec,
} from '@motus/sdk';
import type { AgentFacts, HostLink } from '../agent/host-link.js';
import { createMigrationHooks } from '../kernel/migration-hooks.js';
import { PluginHost, type PluginSource } from '../kernel/plugin-host.js';
import { MetricsRegistry } from '../metrics/metrics-registry.js';
import { ServerMetrics } from '../metrics/server-metrics.js';
import { parseMigrationRequest, parseVmSpec } from '../kernel/request-schemas.js';
import { PlacementSchema, type PlacementConfig } from '../site/placement-schema.js';
import { TasksConfigSchema, type MigrationConfig } from '../site/site-schema.js';
import { AuditTrail } from './audit/audit-trail.js';
import { IdentityStore } from './identity/identity-store.js';
import { Inventory } from './inventory.js';
import { MigrationOrchestrator, withTimeout } from './migration-orchestrator.js';
import { PlacementService } from './placement/placement-service.js';
import { NetworkService } from './network-service.js';
import { ScheduleService } from './schedules/schedule-service.js';
import { ScheduleStore } from './schedules/schedule-store.js';
import { MigrationResources, type LimitsSite } from './tasks/migration-resources.js';
import { TaskService } from './tasks/task-service.js';
import { TaskStore } from './tasks/task-store.js';

export interface MotusServerOptions {
  stateDir: string;
  logger: Logger;
  container: DependencyContainer;
  migration: MigrationConfig;
  /** Plugins of the server role (validation, placement, …). */
  plugins: PluginSource[];
  /** How often each agent is asked for its facts; 3 misses mark the host down. */
  heartbeatMs?: number;
  /** Concurrency limits and task settings (hosts, networks, datastores, tasks of the site file); defaults when absent. */
  limits?: LimitsSite;
  /** Clusters, pools, rules, balancing and health policy (the site's placement section); defaults when absent. */
  placement?: PlacementConfig;
  /**
   * A link to a host known from an earlier run, so a restarted server reaches its
   * agents (and settles the migrations they ran) without waiting for them to register.
   */
  reconnect?: (name: string, url: string) => HostLink;
  /** The registry the server's /metrics serves (a fresh one, without process defaults, when absent). */
  metrics?: MetricsRegistry;
}

interface HostEntry {
  info: HostInfo;
  link: HostLink;
  misses: number;
  /** VM names in the host's last facts. */
  vms?: Set<string>;
}

const MISSES_BEFORE_DOWN = 3;

/**
 * The management server: inventory, hosts and their agents, the migration
 * orchestrator, and the streams every observer subscribes to.
 */
export class MotusServer implements Platform {
  private readonly hostEntries = new Map<string, HostEntry>();
  private readonly migrationSubject = new Subject<MigrationEvent>();
  private readonly hostSubject = new Subject<HostEvent>();
  private readonly vmSubject = new Subject<VmEvent>();
  readonly migrations$ = this.migrationSubject.asObservable();
  readonly hosts$ = this.hostSubject.asObservable();
  readonly vms$ = this.vmSubject.asObservable();
  private readonly orchestrator: MigrationOrchestrator;
  readonly identities: IdentityStore;
  readonly audit: AuditTrail;
  readonly tasks: TaskService;
  readonly schedules: ScheduleService;
  readonly placement: PlacementService;
  /** `motus net`: switch counters and captures through the network plugin's agent methods. */
  readonly network: NetworkService;
  private readonly limitsSite: LimitsSite;
  private readonly heartbeat: NodeJS.Timeout;
  private readonly meters: ServerMetrics;
  /** 'host/vm' of the copies being settled (settleStrays). */
  private readonly settlingStrays = new Set<string>();
  private stopped = false;
  private beating = false;

  private constructor(
    private readonly options: MotusServerOptions,
    private readonly inventory: Inventory,
    private readonly plugins: PluginHost,
    hooks: MigrationHooks,
    readonly metricsRegistry: MetricsRegistry,
  ) {
    this.orchestrator = new MigrationOrchestrator({
      inventory,
      hooks,
      container: options.container,
      logger: options.logger,
      config: options.migration,
      host: (name) => this.hostEntries.get(name),
      publish: (event) => this.publishMigrationEvent(event),
      vmMoved: (vm, from, migrationId) => this.vmMoved(vm, from, migrationId),
    });
    this.network = new NetworkService({
      hosts: () => [...this.hostEntries.values()],
      vms: () => inventory.vms(),
      plugins: plugins.providersOf(NetworkProviderToken),
    });
    const db = inventory.database;
    this.limitsSite = options.limits ?? { hosts: [], networks: [], datastores: [], tasks: TasksConfigSchema.parse({}) };
    this.identities = new IdentityStore(db);
    this.audit = new AuditTrail(db);
    this.tasks = new TaskService({
      store: new TaskStore(db),
      audit: this.audit,
      inventory,
      orchestrator: this.orchestrator,
      // A degraded host must still send its VMs away; only a host whose agent is gone holds tasks back.
      resources: new MigrationResources(this.limitsSite, (host) => { const state = this.hostEntries.get(host)?.info.state; return state !== undefined && state !== 'disconnected'; }),
      config: this.limitsSite.tasks,
      logger: options.logger,
      host: (name) => this.hostEntries.get(name),
      knownHost: (name) => this.knownHost(name),
      publish: (event) => this.publishMigrationEvent(event),
      vmChanged: async (vm, from, migrationId) => {
        if (from && from !== vm.host) await this.vmMoved(vm, from, migrationId);
      },
    });
    this.schedules = new ScheduleService({
      store: new ScheduleStore(db),
      audit: this.audit,
      identities: this.identities,
      logger: options.logger,
      vms: () => inventory.vms(),
      knownHost: (name) => this.knownHost(name),
      // A schedule is an operator's own destination too: its runs are held to the placement rules (no override).
      submit: async (request) => {
        this.placement.checkDestination(request.vm, request.destination, { ignoreRules: false, by: request.requestedBy ?? 'unknown' });
        return this.tasks.submit(request);
      },
      missedRunGraceSeconds: this.limitsSite.tasks.missedRunGraceSeconds,
    });
    this.placement = new PlacementService({
      site: { ...this.limitsSite, migration: options.migration, placement: options.placement ?? PlacementSchema.parse({}) },
      logger: options.logger,
      audit: this.audit,
      hooks,
      container: options.container,
      hosts: () => [...this.hostEntries.values()].map((e) => e.info),
      vms: () => inventory.vms(),
      activeTasks: () => this.tasks.tasks(1000).filter((t) => t.state === 'queued' || t.state === 'running'),
      migration: (id) => inventory.migration(id),
      reservedOn: (host) => this.orchestrator.reservedOn(host),
      submit: (request) => this.tasks.submit(request),
      setHostState: (host, state, reason) => this.setHostState(host, state, reason),
    });
    this.migrations$.pipe(filter((e) => e.type === 'completed')).subscribe((event) => {
      const summary = inventory.migration(event.migrationId);
      if (summary) this.placement.migrationCompleted(summary);
    });
    this.meters = new ServerMetrics(metricsRegistry, {
      migrations$: this.migrations$,
      queuedTasks: () => this.tasks.queueLength(),
      runningTasks: () => this.tasks.runningCount(),
      hosts: () => [...this.hostEntries.values()].map((e) => e.info),
      vms: () => inventory.vms(),
    });
    this.heartbeat = setInterval(() => void this.beat(), options.heartbeatMs ?? 1_000);
    this.heartbeat.unref();
  }

  static async start(options: MotusServerOptions): Promise<MotusServer> {
    mkdirSync(options.stateDir, { recursive: true });
    const inventory = new Inventory(join(options.stateDir, 'motus.db'));
    const hooks = createMigrationHooks();
    let server: MotusServer | undefined;
    const metrics = options.metrics ?? new MetricsRegistry();
    const plugins = new PluginHost({
      metrics,
      role: 'server',
      root: options.container,
      hooks,
      logger: options.logger,
      stateDir: options.stateDir,
      callAgent: (host, plugin, method, payload) => {
        if (!server) throw new MotusError('MOTUS_E_HOST_NOT_FOUND', `no host named ${host}: the server is still starting`, { host });
        return server.liveHost(host).link.pluginCall(plugin, method, payload);
      },
      site: {
        hosts: () => (server ? server.hosts() : []),
        vms: () => inventory.vms(),
      },
    });
    try {
      await plugins.load(options.plugins);
    } catch (err) {
      await plugins.dispose();
      inventory.close();
      throw err;
    }
    server = new MotusServer(options, inventory, plugins, hooks, metrics);
    server.reconcileAfterRestart();
    server.schedules.start();
    server.reconnectKnownHosts();
    return server;
  }

  /** Adds (or re-adds, after an agent restart) a host and its link; its facts are read at once. */
  async addHost(link: HostLink): Promise<HostInfo> {
    const facts = await withTimeout(link.facts(), 10_000, `facts of host ${link.name}`);
    // Maintenance outlives an agent restart (and a server restart: the inventory keeps it).
    const kept = this.hostEntries.get(link.name)?.info.state ?? this.inventory.hosts().find((h) => h.name === link.name)?.state;
    const info = this.infoFromFacts(link, facts, kept === 'maintenance' ? 'maintenance' : 'connected');
    const known = this.hostEntries.has(link.name);
    this.hostEntries.set(link.name, { info, link, misses: 0, vms: new Set(facts.vms.map((v) => v.name)) });
    this.inventory.putHost(info);
    this.reconcileHost(link.name, facts);
    this.hostSubject.next({ type: known ? 'host-connected' : 'host-registered', at: now(), host: info });
    this.options.logger.info('host registered', { host: link.name });
    this.tasks.hostAvailable(link.name);
    this.placement.observe(info, facts, 0);
    return info;
  }

  /** The link to a registered host's agent. */
  hostLink(name: string): HostLink | undefined {
    return this.hostEntries.get(name)?.link;
  }

  async hosts(): Promise<HostInfo[]> {
    return [...this.hostEntries.values()].map((e) => e.info).sort((a, b) => a.name.localeCompare(b.name));
  }

  async vms(): Promise<VmInfo[]> {
    return this.inventory.vms();
  }

  /** A server-side plugin method, as the API calls it for a user of at least `method.role`. */
  /** Every method plugins contribute to the API (`POST /v1/plugins/:plugin/:method`), with its role. */
  pluginMethods(): Array<{ plugin: string; method: string; role: Role }> {
    return this.plugins.methods();
  }

  pluginMethod(plugin: string, method: string): { role: Role; call(payload: unknown): Promise<unknown> } {
    const found = this.plugins.method(plugin, method);
    return { role: found.role, call: (payload) => found.handler(payload) };
  }

  /**
   * Starts a VM on `hostName`, or without one where initial placement puts it (a
   * partial or automatic cluster's best host; refused in manual clusters).
   */
  async startVm(specInput: VmSpec, hostName?: string, by = 'unknown'): Promise<VmInfo & { placement?: InitialPlacement }> {
    const spec = parseVmSpec(specInput);
    const existing = this.inventory.vm(spec.name);
    if (existing && existing.state !== 'stopped' && existing.state !== 'crashed') {
      throw new MotusError('MOTUS_E_VM_EXISTS', `VM ${spec.name} already exists on ${existing.host} (${existing.state})`, { vm: spec.name, host: existing.host });
    }
    if (hostName !== undefined) this.liveHost(hostName);
    // The CPU is settled first, so the plugins judge initial placement on the CPU the VM will have.
    await this.settleCpu(spec);
    let placement: InitialPlacement | undefined;
    if (hostName === undefined) {
      const { chosen, mode } = await this.placement.placeNew(spec, by);
      placement = { host: chosen.host, cluster: this.placement.clusterOf(chosen.host), mode: mode as InitialPlacement['mode'], score: chosen.score, reasons: chosen.reasons };
      hostName = chosen.host;
    }
    const host = this.liveHost(hostName);
    const facts = await withTimeout(host.link.facts(), 5_000, `facts of ${hostName}`);
    const freeMiB = facts.memoryTotalMiB - facts.memoryUsedMiB - this.orchestrator.reservedOn(hostName);
    if (freeMiB < spec.memoryMiB) {
      throw new MotusError('MOTUS_E_INSUFFICIENT_MEMORY', `host ${hostName} has ${freeMiB} MiB free, VM ${spec.name} needs ${spec.memoryMiB} MiB`, {
        host: hostName,
        freeMiB,
        neededMiB: spec.memoryMiB,
      });
    }
    const started = await host.link.startVm(spec);
    const vm: VmInfo = { name: spec.name, host: hostName, state: 'running', spec, pid: started.pid, serialLog: started.serialLog, startedAt: started.startedAt };
    this.inventory.putVm(vm);
    this.vmSubject.next({ type: 'vm-started', at: now(), vm });
    return placement ? { ...vm, placement } : vm;
  }

  /** Initial placement as a dry run: every host ranked for the VM, nothing started. */
  async recommendStart(specInput: VmSpec): Promise<Ranking> {
    const spec = parseVmSpec(specInput);
    await this.settleCpu(spec);
    return this.placement.recommendNew(spec);
  }

  /** Replaces a VM's tags (what tag schedules select by); the VM runs on untouched. */
  setVmTags(name: string, tags: string[]): VmInfo {
    const vm = this.inventory.vm(name);
    if (!vm) throw new MotusError('MOTUS_E_VM_NOT_FOUND', `no VM named ${name}`, { vm: name });
    const unique = [...new Set(tags)];
    const next: VmInfo = { ...vm, spec: { ...vm.spec, ...(unique.length > 0 ? { tags: unique } : {}) } };
    if (unique.length === 0) delete next.spec.tags;
    this.inventory.putVm(next);
    return next;
  }

  /**
   * Records the VM's CPU in its spec before it first starts: the cluster baseline
   * with the VM's mask, from the CPU policy. The spec travels with the VM, so every
   * destination QEMU is started with the same `-cpu` value.
   */
  private async settleCpu(spec: VmSpec): Promise<void> {
    const policy = this.plugins.single(CpuCompatPolicyToken);
    if (spec.cpuMask && spec.cpuModel !== undefined) {
      throw new MotusError('MOTUS_E_INVALID_REQUEST', `VM ${spec.name}: give cpuModel or cpuMask, not both (a mask applies to the cluster baseline; put feature switches in cpuModel instead)`, { field: 'cpuMask' });
    }
    if (!policy) {
      if (spec.cpuMask) throw new MotusError('MOTUS_E_INVALID_REQUEST', `VM ${spec.name}: cpuMask needs the @motus/cpu-compat plugin in the site file`, { field: 'cpuMask' });
      return;
    }
    if (spec.cpuModel !== undefined) return;
    const cpu = await policy.cpuForNewVm(spec.cpuMask);
    if (cpu !== undefined) spec.cpuModel = cpu;
  }

  async stopVm(name: string): Promise<void> {
    const vm = this.inventory.vm(name);
    if (!vm) throw new MotusError('MOTUS_E_VM_NOT_FOUND', `no VM named ${name}`, { vm: name });
    if (this.orchestrator.isBusy(name)) throw new MotusError('MOTUS_E_VM_BUSY', `VM ${name} is being migrated; cancel the migration first`, { vm: name });
    if (vm.state === 'stopped') return;
    const host = this.liveHost(vm.host);
    await host.link.stopVm(name).catch((err: unknown) => {
      if (!(err instanceof MotusError && err.code === 'MOTUS_E_VM_NOT_FOUND')) throw err;
    });
    const stopped: VmInfo = { ...vm, state: 'stopped' };
    delete stopped.pid;
    this.inventory.putVm(stopped);
    this.vmSubject.next({ type: 'vm-stopped', at: now(), vm: stopped, reason: 'stopped on request' });
  }

  /** Queues the migration as a task; when it can start at once, its validation's refusal is thrown here. */
  async migrate(requestInput: MigrationRequest): Promise<MigrationHandle> {
    const { ignoreRules, ...request } = parseMigrationRequest(requestInput);
    const requestedBy = request.requestedBy ?? 'unknown';
    this.placement.checkDestination(request.vm, request.destination, { ignoreRules: ignoreRules ?? false, by: requestedBy });
    const { task, done } = await this.tasks.submit({ ...request, requestedBy });
    const id = task.id;
    return {
      id,
      events$: this.migrationEvents$(id),
      done,
      cancel: async (by = 'unknown') => {
        await this.tasks.cancel(id, by);
      },
    };
  }

  async cancelMigration(id: string, by: string): Promise<void> {
    await this.tasks.cancel(id, by);
  }

  async migrations(): Promise<MigrationSummary[]> {
    return this.inventory.migrations();
  }

  async migration(id: string): Promise<MigrationSummary> {
    const summary = this.inventory.migration(id);
    if (!summary) throw new MotusError('MOTUS_E_NOT_FOUND', `no migration ${id}`, { migration: id });
    return summary;
  }

  /** A migration's events from the first, then live, completing after the terminal one. */
  migrationEvents$(id: string): Observable<MigrationEvent> {
    return new Observable<MigrationEvent>((subscriber) => {
      let lastSeq = 0;
      const deliver = (event: MigrationEvent) => {
        if (event.seq <= lastSeq) return;
        lastSeq = event.seq;
        subscriber.next(event);
        if (TERMINAL_MIGRATION_EVENTS.includes(event.type)) subscriber.complete();
      };
      // Reading the stored events is synchronous, so no live event can slip in between.
      for (const event of this.inventory.events(id)) deliver(event);
      if (subscriber.closed) return undefined;
      const summary = this.inventory.migration(id);
      if (!summary) {
        subscriber.error(new MotusError('MOTUS_E_NOT_FOUND', `no migration ${id}`, { migration: id }));
        return undefined;
      }
      if (summary.state !== 'running' && summary.state !== 'queued') {
        subscriber.complete();
        return undefined;
      }
      const live = this.migrationSubject.pipe(filter((e) => e.migrationId === id)).subscribe({ next: deliver, error: (err: unknown) => subscriber.error(err) });
      return () => live.unsubscribe();
    });
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.heartbeat);
    this.meters.stop();
    this.placement.stop();
    this.schedules.stop();
    this.tasks.stop();
    await this.orchestrator.drain();
    await this.plugins.dispose();
    this.migrationSubject.complete();
    this.hostSubject.complete();
    this.vmSubject.complete();
    this.inventory.close();
  }

  /** Maintenance, degraded, back in service: recorded in the inventory and told on hosts$. */
  setHostState(name: string, state: HostInfo['state'], reason: string): void {
    const entry = this.hostEntries.get(name);
    if (!entry || entry.info.state === state) return;
    const from = entry.info.state;
    entry.info = { ...entry.info, state };
    this.inventory.putHost(entry.info);
    this.options.logger.info('host state changed', { host: name, from, to: state, reason });
    this.hostSubject.next({ type: 'host-state-changed', at: now(), host: entry.info, from, reason });
    if (state === 'connected') this.tasks.hostAvailable(name);
  }

  /** A registered host whose agent answers; coded errors otherwise. */
  liveHost(name: string): HostEntry {
    const host = this.hostEntries.get(name);
    if (!host) throw new MotusError('MOTUS_E_HOST_NOT_FOUND', `no host named ${name}`, { host: name });
    if (host.info.state === 'disconnected') throw new MotusError('MOTUS_E_HOST_DOWN', `host ${name} is down (its agent does not answer)`, { host: name });
    return host;
  }

  private async beat(): Promise<void> {
    if (this.beating) return;
    this.beating = true;
    await Promise.all([...this.hostEntries.values()].map((entry) => this.refreshHost(entry))).finally(() => {
      this.beating = false;
    });
    this.unknownToCrashed();
  }

  /**
   * A VM left 'unknown' that no host has a copy of, while every host answers, has
   * crashed (its only copy died with the fault that made it unknown).
   */
  private unknownToCrashed(): void {
    const entries = [...this.hostEntries.values()];
    if (entries.some((e) => e.info.state === 'disconnected' || !e.vms)) return;
    for (const vm of this.inventory.vms()) {
      if (vm.state !== 'unknown' || this.orchestrator.isBusy(vm.name) || entries.some((e) => e.vms!.has(vm.name))) continue;
      if (this.tasks.tasks().some((t) => t.state === 'running' && t.vm === vm.name)) continue;
      const crashed: VmInfo = { ...vm, state: 'crashed' };
      this.inventory.putVm(crashed);
      this.options.logger.warn('a VM of unknown state has no copy on any host: crashed', { vm: vm.name, host: vm.host });
      this.vmSubject.next({ type: 'vm-stopped', at: now(), vm: crashed, reason: 'no host has a copy of it' });
    }
  }

  /** Reads a host's facts: memory in use, VMs present, and whether its agent answers at all. */
  private async refreshHost(entry: HostEntry): Promise<void> {
    try {
      const facts = await withTimeout(entry.link.facts(), 2_000, `facts of ${entry.info.name}`);
      const wasDown = entry.info.state === 'disconnected';
      const before = entry.info;
      entry.misses = 0;
      entry.vms = new Set(facts.vms.map((v) => v.name));
      entry.info = this.infoFromFacts(entry.link, facts, wasDown ? 'connected' : entry.info.state);
      const changed = before.memoryUsedMiB !== entry.info.memoryUsedMiB || before.memoryTotalMiB !== entry.info.memoryTotalMiB || before.cpus !== entry.info.cpus;
      // Heartbeats change lastSeen and plugin counters every second; only what a person watches is pushed.
      if (changed && !wasDown) this.hostSubject.next({ type: 'host-updated', at: now(), host: entry.info });
      this.inventory.putHost(entry.info);
      this.reconcileHost(entry.info.name, facts);
      this.placement.observe(entry.info, facts, 0);
      if (wasDown) {
        this.hostSubject.next({ type: 'host-connected', at: now(), host: entry.info });
        this.tasks.hostAvailable(entry.info.name);
      }
    } catch (err) {
      entry.misses += 1;
      if (entry.misses < MISSES_BEFORE_DOWN) this.placement.observe(entry.info, undefined, entry.misses);
      if (entry.misses === MISSES_BEFORE_DOWN && entry.info.state !== 'disconnected') {
        entry.info = { ...entry.info, state: 'disconnected' };
        this.inventory.putHost(entry.info);
        const reason = (err as Error).message;
        this.options.logger.warn('host down', { host: entry.info.name, reason });
        this.hostSubject.next({ type: 'host-disconnected', at: now(), host: entry.info, reason });
      }
    }
  }

  /**
   * VMs the inventory places on a host but whose process is gone there have crashed.
   * Copies no migration accounts for any more are settled in the background.
   */
  private reconcileHost(host: string, facts: AgentFacts): void {
    const present = new Set(facts.vms.map((vm) => vm.name));
    if (facts.vms.length > 0) void this.settleStrays(host, facts);
    for (const vm of this.inventory.vms()) {
      if (vm.host !== host || vm.state !== 'running' || present.has(vm.name) || this.orchestrator.isBusy(vm.name)) continue;
      const crashed: VmInfo = { ...vm, state: 'crashed' };
      this.inventory.putVm(crashed);
      this.vmSubject.next({ type: 'vm-stopped', at: now(), vm: crashed, reason: `its process is gone from ${host}` });
    }
  }

  /**
   * After a migration that lost a host (docs/reliability.md): a VM left 'unknown' is
   * placed where a copy runs (the agents settle who runs it through the storage
   * lease), that copy is committed and a source copy whose state went over is
   * stopped; an incoming copy that no migration accounts for and that does not run
   * is stopped. VMs of running migrations and of tasks awaiting reconciliation are
   * left to those.
   */
  private async settleStrays(host: string, facts: AgentFacts): Promise<void> {
    const entry = this.hostEntries.get(host);
    if (!entry) return;
    for (const copy of facts.vms) {
      const key = `${host}/${copy.name}`;
      if (this.settlingStrays.has(key) || this.orchestrator.isBusy(copy.name)) continue;
      if (this.tasks.tasks().some((t) => t.state === 'running' && t.vm === copy.name)) continue;
      const vm = this.inventory.vm(copy.name);
      if (!vm || (vm.state !== 'unknown' && copy.role !== 'incoming')) continue;
      this.settlingStrays.add(key);
      try {
        const state = await withTimeout(entry.link.runState(copy.name), 5_000, `state of ${copy.name} on ${host}`);
        if (vm.state === 'unknown' && state === 'running') {
          if (copy.role === 'incoming') await entry.link.commitIncoming(copy.name);
          for (const other of this.hostEntries.values()) {
            if (other === entry) continue;
            const otherFacts = await withTimeout(other.link.facts(), 5_000, `facts of ${other.info.name}`).catch(() => undefined);
            if (otherFacts?.vms.some((v) => v.name === copy.name && v.role === 'outgoing')) {
              await other.link.finishOutgoing(copy.name).catch((err: unknown) => {
                this.options.logger.warn('a stale source copy could not be stopped yet', { vm: copy.name, host: other.info.name, error: (err as Error).message });
              });
            }
          }
          const found: VmInfo = { ...vm, host, state: 'running', pid: copy.pid, serialLog: copy.serialLog, startedAt: copy.startedAt };
          this.inventory.putVm(found);
          this.options.logger.warn('a VM of unknown state was found running', { vm: vm.name, host, was: vm.host });
          if (vm.host !== host) this.vmSubject.next({ type: 'vm-moved', at: now(), vm: found, from: vm.host, to: host, migrationId: '' });
        } else if (copy.role === 'incoming' && state !== 'running' && vm.host !== host) {
          this.options.logger.warn('stopping an incoming copy no migration accounts for', { vm: copy.name, host, state });
          await entry.link.abortIncoming(copy.name);
        }
      } catch (err) {
        this.options.logger.warn('could not settle a stray VM copy; will try at the next heartbeat', { vm: copy.name, host, error: (err as Error).message });
      } finally {
        this.settlingStrays.delete(key);
      }
    }
  }

  /**
   * Migrations that were running when the server stopped are settled by their task
   * once their hosts are back (TaskService.hostAvailable); one with no task left
   * cannot be followed any more.
   */
  private reconcileAfterRestart(): void {
    const pending = new Set(this.tasks.tasks().filter((t) => t.state === 'queued' || t.state === 'running').map((t) => t.id));
    const moving = new Set(this.tasks.tasks().filter((t) => t.state === 'running').map((t) => t.vm));
    for (const summary of this.inventory.migrations()) {
      if ((summary.state !== 'running' && summary.state !== 'queued') || pending.has(summary.id)) continue;
      this.inventory.putMigration({
        ...summary,
        state: 'failed',
        finishedAt: now(),
        error: { code: 'MOTUS_E_MIGRATION_FAILED', message: 'the server stopped while the migration ran' },
      });
    }
    for (const vm of this.inventory.vms()) {
      if (vm.state === 'migrating' && !moving.has(vm.name)) this.inventory.putVm({ ...vm, state: 'unknown' });
    }
  }

  /** Reaches the agents of hosts known from an earlier run; retried until each answers or registers itself. */
  private reconnectKnownHosts(): void {
    const { reconnect } = this.options;
    if (!reconnect) return;
    for (const host of this.inventory.hosts()) {
      if (!host.url.startsWith('http')) continue;
      const attempt = async (tries: number): Promise<void> => {
        if (this.stopped || this.hostEntries.has(host.name)) return;
        try {
          await this.addHost(reconnect(host.name, host.url));
        } catch {
          if (tries > 1) setTimeout(() => void attempt(tries - 1), 1_000).unref();
        }
      };
      void attempt(60);
    }
  }

  private knownHost(name: string): boolean {
    return this.hostEntries.has(name) || this.limitsSite.hosts.some((h) => h.name === name) || this.inventory.hosts().some((h) => h.name === name);
  }

  private publishMigrationEvent(event: MigrationEvent): void {
    this.tasks.auditEvent(event);
    this.migrationSubject.next(event);
  }

  private async vmMoved(vm: VmInfo, from: string, migrationId: string): Promise<void> {
    // Both hosts' memory changed: report it now rather than at the next heartbeat.
    await Promise.all([from, vm.host].map((name) => this.hostEntries.get(name)).map((entry) => entry && this.refreshHost(entry)));
    this.vmSubject.next({ type: 'vm-moved', at: now(), vm, from, to: vm.host, migrationId });
  }

  private infoFromFacts(link: HostLink, facts: AgentFacts, state: HostInfo['state']): HostInfo {
    return {
      name: link.name,
      state,
      url: (link as { url?: string }).url ?? 'in-process',
      migrationAddress: facts.migrationAddress,
      memoryTotalMiB: facts.memoryTotalMiB,
      memoryUsedMiB: facts.memoryUsedMiB,
      cpus: facts.cpus,
      hypervisor: { kind: facts.hypervisor.kind, version: facts.hypervisor.version, accelerator: facts.hypervisor.accelerator },
      plugins: facts.plugins,
      ...(facts.migrationTls ? { migrationTls: facts.migrationTls } : {}),
      lastSeen: now(),
    };
  }
}

function now(): string {
  return new Date().toISOString();
}
