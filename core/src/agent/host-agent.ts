import { mkdirSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import {
  HypervisorDriverToken,
  MotusError,
  NetworkProviderToken,
  StorageProviderToken,
  type NicAttachment,
  type NetworkProvider,
  type StorageProvider,
  type HypervisorDriver,
  type HypervisorFacts,
  type Logger,
  type MigrationProgress,
  type MigrationTuning,
  type VmHandle,
  type VmRunState,
  type VmSpec,
} from '@motus/sdk';
import type { DependencyContainer } from 'tsyringe';
import { createMigrationHooks } from '../kernel/migration-hooks.js';
import { PluginHost, type PluginSource } from '../kernel/plugin-host.js';
import { parseVmSpec } from '../kernel/request-schemas.js';
import { AgentMetrics } from '../metrics/agent-metrics.js';
import { MetricsRegistry } from '../metrics/metrics-registry.js';
import { readHardwareHealth } from './hardware-health.js';
import { HostMetricsSampler } from './host-metrics.js';
import { HeartbeatTail } from './heartbeat-tail.js';
import { openLinkProbeSink, probeLinkRate, type LinkProbeOptions, type LinkProbeResult, type LinkProbeSink } from './link-probe.js';
import { TERMINAL_STATUSES, type AgentFacts, type AgentVm, type HostLink, type IncomingOptions, type MigrationTlsFacts, type OutgoingOptions } from './host-link.js';

export interface HostAgentOptions {
  name: string;
  stateDir: string;
  migrationAddress: string;
  /** Memory offered to VMs; physical memory when absent. */
  memoryMiB?: number;
  plugins: PluginSource[];
  logger: Logger;
  /** The host's child container (of the platform's root when embedded). */
  container: DependencyContainer;
  /** How often a running outgoing migration is sampled. */
  progressIntervalMs?: number;
  /** The registry this agent's /metrics serves (a fresh one, without process defaults, when absent). */
  metrics?: MetricsRegistry;
  /**
   * How long a source waits, paused at switchover, for the server's continue before
   * it settles the VM's ownership itself (fencing rule S2 of docs/reliability.md).
   */
  switchoverWaitMs?: number;
  /** How often a source that lost its server tries to take its lease back. */
  settleRetryMs?: number;
  /** How often CPU and memory use are sampled (placement); 2 s when absent. */
  metricsIntervalMs?: number;
  /** Where ECC and thermal state are read; /sys when absent. */
  sysRoot?: string;
  /** This host's migration TLS credentials (QEMU layout), when it has them: asked at each migration (rotation). */
  migrationCredentials?: () => { dir?: string; reason?: string };
}

interface VmRecord {
  handle: VmHandle;
  spec: VmSpec;
  role: AgentVm['role'];
  startedAt: string;
  /** Whether this host holds the storage leases of the VM's disks. */
  leased: boolean;
  /** NICs attached to this host's switches. */
  nics: string[];
  /** Set before an ordered stop, so the exit is not reported as a crash. */
  stopping: boolean;
  /** Outgoing: the server ordered the switchover (the last state may be on its way). */
  continued: boolean;
  /** Lease operations of this VM run one at a time (the server's orders and the agent's own settling may overlap). */
  leaseQueue: Promise<unknown>;
  /** Running while an outgoing VM that lost its server settles its ownership. */
  settling?: Promise<void>;
  /** Network providers told this VM is moving away (their switchover support). */
  moving?: NetworkProvider[];
  /** Incoming: its serial log followed for the guest's first heartbeat after the switchover. */
  heartbeat?: HeartbeatTail;
}

/** A sample repeats this often while the source waits at switchover, so the server can tell a live stream from a cut link. */
const KEEPALIVE_MS = 5_000;

/**
 * The agent of one host: holds that host's VM processes through the hypervisor
 * driver a plugin provides, and carries out the server's orders.
 */
export class HostAgent implements HostLink {
  private readonly vms = new Map<string, VmRecord>();
  private facts_: HypervisorFacts | undefined;
  private stopped = false;
  private readonly meters: AgentMetrics;
  private readonly usage: HostMetricsSampler;

  private constructor(
    private readonly options: HostAgentOptions,
    private readonly plugins: PluginHost,
    private readonly driver: HypervisorDriver,
    readonly metricsRegistry: MetricsRegistry,
  ) {
    this.meters = new AgentMetrics(metricsRegistry, () => {
      const byRole: Record<string, number> = {};
      for (const vm of this.vms.values()) byRole[vm.role] = (byRole[vm.role] ?? 0) + 1;
      return byRole;
    });
    this.usage = new HostMetricsSampler({
      intervalMs: options.metricsIntervalMs ?? 2_000,
      cpus: cpus().length,
      overridePath: join(options.stateDir, 'metrics-override.json'),
      logger: options.logger,
      vms: () =>
        [...this.vms.entries()].map(([name, vm]) => ({
          name,
          pid: vm.handle.pid,
          ...(vm.role === 'running' && vm.handle.guestStats ? { guestStats: () => vm.handle.guestStats!() } : {}),
        })),
    });
  }

  get name(): string {
    return this.options.name;
  }

  static async start(options: HostAgentOptions): Promise<HostAgent> {
    mkdirSync(options.stateDir, { recursive: true });
    const metrics = options.metrics ?? new MetricsRegistry();
    const plugins = new PluginHost({
      metrics,
      role: 'agent',
      host: options.name,
      root: options.container,
      hooks: createMigrationHooks(),
      logger: options.logger,
      stateDir: options.stateDir,
    });
    try {
      await plugins.load(options.plugins);
      const driver = plugins.single(HypervisorDriverToken);
      if (!driver) {
        throw new MotusError('MOTUS_E_NO_HYPERVISOR', `no plugin provides a hypervisor driver on host ${options.name}; add @motus/hv-qemu to the site's plugins`, {
          host: options.name,
        });
      }
      const agent = new HostAgent(options, plugins, driver, metrics);
      agent.facts_ = await driver.probe();
      agent.usage.start();
      options.logger.info('agent ready', { host: options.name, hypervisor: agent.facts_ });
      return agent;
    } catch (err) {
      await plugins.dispose();
      throw err;
    }
  }

  async facts(): Promise<AgentFacts> {
    const hypervisor = this.facts_ ?? (await this.driver.probe());
    const metrics = this.usage.current();
    return {
      name: this.name,
      migrationAddress: this.options.migrationAddress,
      memoryTotalMiB: this.options.memoryMiB ?? Math.floor(totalmem() / (1 << 20)),
      memoryUsedMiB: [...this.vms.values()].reduce((sum, vm) => sum + vm.spec.memoryMiB, 0),
      cpus: cpus().length,
      hypervisor,
      vms: [...this.vms.entries()].map(([name, vm]) => this.describe(name, vm)),
      plugins: await this.plugins.facts(),
      storage: this.plugins.contributions(StorageProviderToken).map((p) => p.kind),
      ...(metrics ? { metrics } : {}),
      hardware: readHardwareHealth(this.options.sysRoot ?? '/sys'),
      migrationTls: this.migrationTlsFacts(hypervisor),
    };
  }

  private migrationTlsFacts(hypervisor: HypervisorFacts): MigrationTlsFacts {
    if (!hypervisor.migrationTls) return { ready: false, reason: `the ${hypervisor.kind} hypervisor of ${this.name} cannot encrypt migration streams (QEMU built without GnuTLS)` };
    const creds = this.options.migrationCredentials?.() ?? { reason: `host ${this.name} has no migration TLS credentials (its agent runs without the site CA)` };
    return creds.dir ? { ready: true } : { ready: false, reason: creds.reason ?? `host ${this.name} has no migration TLS credentials` };
  }

  /** The credentials folder for an encrypted migration, or a coded refusal saying why there is none. */
  private tlsDir(): string {
    const hypervisor = this.facts_;
    const facts = hypervisor ? this.migrationTlsFacts(hypervisor) : { ready: false, reason: 'the hypervisor was not probed yet' };
    const dir = this.options.migrationCredentials?.().dir;
    if (!facts.ready || !dir) {
      throw new MotusError('MOTUS_E_TLS_UNAVAILABLE', facts.reason ?? `host ${this.name} has no migration TLS credentials`, { host: this.name, reason: facts.reason });
    }
    return dir;
  }

  async startVm(specInput: VmSpec): Promise<AgentVm> {
    const spec = parseVmSpec(specInput);
    this.claimName(spec.name);
    const record = await this.launch(spec, 'running');
    this.options.logger.info('vm started', { vm: spec.name, pid: record.handle.pid });
    return this.describe(spec.name, record);
  }

  async stopVm(name: string): Promise<void> {
    const vm = this.get(name);
    vm.stopping = true;
    await vm.handle.stop(5_000);
    await this.release(name, vm);
  }

  async prepareIncoming(specInput: VmSpec, migrationId: string, tuning?: MigrationTuning, options: IncomingOptions = {}): Promise<{ uri: string }> {
    const spec = parseVmSpec(specInput);
    const credentialsDir = options.tls ? this.tlsDir() : undefined;
    this.claimName(spec.name);
    const record = await this.launch(spec, 'incoming');
    const handle = record.handle;
    record.heartbeat = new HeartbeatTail(handle.serialLog);
    try {
      const uri = await handle.listenForMigration(this.options.migrationAddress, 0, tuning, credentialsDir ? { credentialsDir } : undefined);
      this.options.logger.info('incoming migration ready', { vm: spec.name, migrationId, uri, tls: Boolean(credentialsDir) });
      return { uri };
    } catch (err) {
      await this.abortIncoming(spec.name);
      throw err;
    }
  }

  openLinkProbe(lifetimeMs: number): Promise<LinkProbeSink> {
    return openLinkProbeSink(this.options.migrationAddress, lifetimeMs);
  }

  probeLink(sink: LinkProbeSink, options: LinkProbeOptions): Promise<LinkProbeResult> {
    return probeLinkRate(sink, options);
  }

  async *migrateOut(name: string, uri: string, tuning: MigrationTuning, migrationId: string, signal: AbortSignal, options: OutgoingOptions = {}): AsyncGenerator<MigrationProgress> {
    const vm = this.get(name);
    const tls = options.tls ? { credentialsDir: this.tlsDir(), peerName: options.tls.peer } : undefined;
    if (vm.role !== 'running') throw new MotusError('MOTUS_E_VM_BUSY', `VM ${name} is already ${vm.role} on ${this.name}`, { vm: name });
    vm.role = 'outgoing';
    try {
      await this.moveStarted(name, vm);
    } catch (err) {
      vm.role = 'running';
      throw err;
    }
    let left = false;
    // Status changes wake the sampler at once, so a pause before switchover is
    // reported without waiting for the next sampling tick.
    let wake: (() => void) | undefined;
    const statusWatch = vm.handle.events$.subscribe({
      next: (event) => {
        // The switch must learn of the stop at once (not at the server's next step):
        // every frame it hands the stopped VM from then on is lost with the process.
        if (event.type === 'stopped') for (const net of vm.moving ?? []) net.migrationStopped?.(name, Date.parse(event.at));
        if (event.type === 'migration-status' || event.type === 'exited') wake?.();
      },
      error: () => wake?.(),
    });
    const onAbort = () => wake?.();
    signal.addEventListener('abort', onAbort, { once: true });
    const interval = this.options.progressIntervalMs ?? 250;
    const switchoverWaitMs = this.options.switchoverWaitMs ?? 30_000;
    let pausedSince: number | undefined;
    let settled = false;
    const heartbeat = new HeartbeatTail(vm.handle.serialLog);
    try {
      await vm.handle.startMigration(uri, tuning, tls);
      this.options.logger.info('outgoing migration started', { vm: name, migrationId, uri, tls: Boolean(tls) });
      let lastStatus: string | undefined;
      let sent = 0;
      for (;;) {
        const progress = await vm.handle.migrationProgress();
        if (progress.transferredBytes > sent) {
          this.meters.sentBytes.inc(progress.transferredBytes - sent);
          sent = progress.transferredBytes;
        }
        // A consumer may stop at the terminal sample: the migration has ended by then.
        if (TERMINAL_STATUSES.has(progress.status)) settled = true;
        // Before the yield: a consumer that stops at this sample never resumes us.
        if (progress.status === 'completed') left = true;
        if (progress.status === 'completed') {
          heartbeat.poll();
          if (heartbeat.lastAt !== undefined) progress.heartbeat = { lastAt: heartbeat.lastAt, longestGapMs: heartbeat.longestGapMs };
          // Stopped here too: a consumer that never resumes us would leave finally unrun.
          heartbeat.stop();
        }
        yield progress;
        if (TERMINAL_STATUSES.has(progress.status)) {
          if (progress.status !== 'completed') vm.role = 'running';
          return;
        }
        if (signal.aborted) return;
        if (progress.status === 'pre-switchover' && !vm.continued) {
          pausedSince ??= Date.now();
          if (Date.now() - pausedSince > switchoverWaitMs) {
            // Fencing rule S2: the server has not ordered the switchover in time; it
            // may be gone, or cut off. The source settles ownership itself.
            this.settleOutgoing(name, vm, `no order from the server within ${switchoverWaitMs} ms of pausing at switchover`);
            settled = true;
            return;
          }
        }
        // In pre-switchover the sample repeats until the server continues; wait for
        // events, and send a keepalive sample now and then.
        const waitMs = progress.status === 'pre-switchover' && lastStatus === 'pre-switchover' ? Math.min(KEEPALIVE_MS, switchoverWaitMs) : interval;
        lastStatus = progress.status;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, waitMs);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = undefined;
      }
    } catch (err) {
      if (vm.role === 'outgoing') vm.role = 'running';
      throw err;
    } finally {
      heartbeat.stop();
      statusWatch.unsubscribe();
      signal.removeEventListener('abort', onAbort);
      // Fencing rule S1: the server's stream ended before the migration did (the
      // server died, or cut the stream, or gave up): the source settles by itself.
      if (!settled && vm.role === 'outgoing' && this.vms.get(name) === vm) this.settleOutgoing(name, vm, 'the server stopped following the migration');
      // Else the move's end is known: a migration QEMU completed keeps the switch's
      // holds until the MAC moves (or a rollback's resume gives them back).
      else this.moveEnded(name, vm, left);
    }
  }

  private async moveStarted(name: string, vm: VmRecord): Promise<void> {
    const providers = new Set<NetworkProvider>();
    for (const nic of vm.spec.nics ?? []) providers.add(await this.networkFor(nic.network));
    vm.moving = [...providers];
    for (const net of vm.moving) net.migrationStarted?.(name);
  }

  private moveEnded(name: string, vm: VmRecord, left: boolean): void {
    for (const net of vm.moving ?? []) net.migrationEnded?.(name, left);
    if (!left) vm.moving = undefined;
  }

  async continueMigration(name: string): Promise<void> {
    const vm = this.get(name);
    if (vm.settling) throw new MotusError('MOTUS_E_FENCED', `VM ${name} on ${this.name} is settling its ownership after losing its server; the switchover is off`, { vm: name, host: this.name, reason: 'settling' });
    vm.continued = true;
    await vm.handle.continueMigration();
  }

  async tuneMigration(name: string, tuning: MigrationTuning): Promise<void> {
    await this.outgoing(name).handle.tuneMigration(tuning);
  }

  async firstHeartbeat(name: string, timeoutMs: number): Promise<number | null> {
    const vm = this.get(name);
    if (!vm.heartbeat) return null;
    const at = await vm.heartbeat.first(Math.min(Math.max(0, timeoutMs), 10_000));
    vm.heartbeat.stop();
    return at ?? null;
  }

  async startPostcopy(name: string): Promise<void> {
    await this.outgoing(name).handle.startPostcopy();
  }

  async cancelMigration(name: string): Promise<void> {
    const vm = this.get(name);
    await vm.handle.cancelMigration();
  }

  async runState(name: string): Promise<VmRunState | 'absent'> {
    const vm = this.vms.get(name);
    if (!vm) return 'absent';
    try {
      return await vm.handle.runState();
    } catch (err) {
      if (err instanceof MotusError && err.code === 'MOTUS_E_QMP_DISCONNECTED') return 'absent';
      throw err;
    }
  }

  /**
   * Fencing rule H1: a VM with leased disks runs only where its lease is. A copy
   * that gave its lease away (the source at switchover) takes it back first; if
   * another host holds it, the VM stays stopped (MOTUS_E_FENCED).
   */
  async resume(name: string): Promise<void> {
    const vm = this.get(name);
    await this.holdLease(name, vm);
    await vm.handle.resume();
    // A rollback: frames the switch held for the move go back to this copy.
    if (vm.role === 'outgoing' || vm.moving) this.moveEnded(name, vm, false);
    vm.role = 'running';
  }

  async announce(name: string): Promise<void> {
    await this.get(name).handle.announce?.();
  }

  async commitIncoming(name: string): Promise<void> {
    const vm = this.get(name);
    if (this.hasLeasedDisks(vm.spec) && !vm.leased) {
      throw new MotusError('MOTUS_E_FENCED', `VM ${name} on ${this.name} does not hold the lease of its disks; it cannot be this host's`, { vm: name, host: this.name, reason: 'no lease' });
    }
    vm.role = 'running';
  }

  async abortIncoming(name: string): Promise<void> {
    const vm = this.vms.get(name);
    if (!vm) return;
    if (vm.role !== 'incoming') {
      throw new MotusError('MOTUS_E_VM_BUSY', `VM ${name} on ${this.name} is ${vm.role}, not an incoming copy; refusing to stop it`, { vm: name });
    }
    vm.stopping = true;
    await vm.handle.stop(2_000);
    await this.release(name, vm);
  }

  async finishOutgoing(name: string): Promise<void> {
    const vm = this.vms.get(name);
    if (!vm) return;
    const state = await vm.handle.runState().catch(() => 'absent' as const);
    if (state !== 'postmigrate' && state !== 'absent') {
      throw new MotusError('MOTUS_E_VM_BUSY', `VM ${name} on ${this.name} is ${state}, not migrated away; refusing to stop it`, { vm: name });
    }
    vm.stopping = true;
    await vm.handle.stop(2_000);
    await this.release(name, vm);
  }

  async acquireStorage(name: string): Promise<void> {
    const vm = this.get(name);
    await this.leaseOp(vm, async () => {
      if (vm.leased) return;
      await this.acquireLeases(vm.spec);
      vm.leased = true;
    });
  }

  async releaseStorage(name: string): Promise<void> {
    const vm = this.get(name);
    if (vm.settling) {
      throw new MotusError('MOTUS_E_FENCED', `VM ${name} on ${this.name} is settling its ownership after losing its server; it keeps its lease`, { vm: name, host: this.name, reason: 'settling' });
    }
    await this.leaseOp(vm, async () => {
      if (!vm.leased) return;
      await this.releaseLeases(vm.spec);
      vm.leased = false;
    });
  }

  /** Runs one lease operation of a VM after the ones already queued. */
  private leaseOp<T>(vm: VmRecord, op: () => Promise<T>): Promise<T> {
    const next = vm.leaseQueue.then(op, op);
    vm.leaseQueue = next.catch(() => undefined);
    return next;
  }

  private hasLeasedDisks(spec: VmSpec): boolean {
    return this.disksByProvider(spec).length > 0;
  }

  /** Takes the VM's lease back for this host if it gave it away; MOTUS_E_FENCED when another host holds it. */
  private async holdLease(name: string, vm: VmRecord): Promise<void> {
    await this.leaseOp(vm, async () => {
      if (vm.leased || !this.hasLeasedDisks(vm.spec)) return;
      try {
        await this.acquireLeases(vm.spec);
      } catch (err) {
        throw new MotusError(
          'MOTUS_E_FENCED',
          `VM ${name} stays stopped on ${this.name}: the lease of its disks is not this host's (${(err as Error).message})`,
          { vm: name, host: this.name, reason: 'lease held elsewhere', cause: MotusError.from(err).toJSON() },
        );
      }
      vm.leased = true;
    });
  }

  /**
   * Fencing rules S1/S2: a source whose server stopped following its outgoing
   * migration decides alone, and only through the storage lease. Its state already
   * sent (migration completed) → it stays stopped. Otherwise it takes its lease
   * back *before* cancelling (QEMU resumes a source by itself when its migration is
   * cancelled or fails), then resumes. While another host holds the lease it stays
   * paused and tries again, until it gets the lease or the server settles the VM.
   */
  private settleOutgoing(name: string, vm: VmRecord, why: string): void {
    if (vm.settling || this.stopped) return;
    const log = this.options.logger;
    log.warn('outgoing migration lost its server; settling ownership through the storage lease', { vm: name, reason: why });
    vm.settling = (async () => {
      const retryMs = this.options.settleRetryMs ?? 2_000;
      let refusals = 0;
      for (;;) {
        if (this.stopped || this.vms.get(name) !== vm || vm.role !== 'outgoing') return;
        const progress = await vm.handle.migrationProgress().catch(() => undefined);
        if (!progress) return;
        if (progress.status === 'completed') {
          log.warn('settled: the VM state went to the destination; the source stays stopped', { vm: name });
          this.moveEnded(name, vm, true);
          return;
        }
        try {
          await this.holdLease(name, vm);
        } catch (err) {
          if (refusals++ === 0) log.warn('settling: another host holds the lease; the source stays paused', { vm: name, error: (err as Error).message });
          await new Promise((resolve) => setTimeout(resolve, retryMs));
          continue;
        }
        if (!TERMINAL_STATUSES.has(progress.status)) await vm.handle.cancelMigration().catch(() => undefined);
        let status: MigrationProgress['status'] = progress.status;
        for (let i = 0; i < 100 && !TERMINAL_STATUSES.has(status); i++) {
          await new Promise((resolve) => setTimeout(resolve, 100));
          status = (await vm.handle.migrationProgress().catch(() => undefined))?.status ?? 'failed';
        }
        if (status === 'completed') {
          // Only possible without a lease to move (nothing held the destination back).
          log.warn('settled: the migration completed while cancelling; the source stays stopped', { vm: name });
          this.moveEnded(name, vm, true);
          return;
        }
        const state = await vm.handle.runState().catch(() => 'absent' as const);
        if (state !== 'running' && state !== 'absent') await vm.handle.resume();
        this.moveEnded(name, vm, false);
        vm.role = 'running';
        log.warn('settled: the source holds the lease and runs the VM again', { vm: name });
        return;
      }
    })()
      .catch((err: unknown) => log.error('settling an outgoing VM failed', { vm: name, error: (err as Error).message }))
      .finally(() => {
        vm.settling = undefined;
      });
  }

  pluginCall(plugin: string, method: string, payload: unknown): Promise<unknown> {
    return this.plugins.invoke(plugin, method, payload);
  }

  metrics(): Promise<string> {
    return this.metricsRegistry.exposition();
  }

  /** Stops every VM this agent holds and unloads its plugins. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.usage.stop();
    await Promise.allSettled([...this.vms.entries()].map(async ([name, vm]) => {
      vm.stopping = true;
      await vm.handle.stop(3_000);
      await this.release(name, vm);
    }));
    await this.driver.dispose();
    await this.plugins.dispose();
  }

  private claimName(name: string): void {
    if (this.stopped) throw new MotusError('MOTUS_E_HOST_DOWN', `host ${this.name} is stopping`, { host: this.name });
    if (this.vms.has(name)) throw new MotusError('MOTUS_E_VM_EXISTS', `VM ${name} already has a process on ${this.name}`, { vm: name, host: this.name });
  }

  private runDir(name: string): string {
    const dir = join(this.options.stateDir, 'vms', `${name}-${Date.now().toString(36)}`);
    mkdirSync(dir, { recursive: true });
    return dir;
  }

  /**
   * Attaches the VM's NICs to this host's switches, takes its storage leases (not
   * for an incoming copy: the source holds them until switchover) and launches it;
   * undoes what was done if any step fails.
   */
  private async launch(spec: VmSpec, role: 'running' | 'incoming'): Promise<VmRecord> {
    const attached: NicAttachment[] = [];
    let leased = false;
    try {
      for (const nic of spec.nics ?? []) attached.push(await (await this.networkFor(nic.network)).attach(spec.name, nic));
      if (role === 'running') {
        await this.acquireLeases(spec);
        leased = true;
      }
      const handle = await this.driver.launch(await this.localDisks(spec), { runDir: this.runDir(spec.name), incoming: role === 'incoming', nics: attached });
      const record: VmRecord = {
        handle,
        spec,
        role,
        startedAt: new Date().toISOString(),
        leased,
        nics: attached.map((a) => a.nicId),
        stopping: false,
        continued: false,
        leaseQueue: Promise.resolve(),
      };
      this.vms.set(spec.name, record);
      if (role === 'incoming' && this.hasLeasedDisks(spec)) this.fenceIncoming(spec.name, record);
      void handle.exited.then(async ({ code, signal }) => {
        if (this.vms.get(spec.name) !== record) return;
        if (!record.stopping) this.options.logger.warn('vm process exited', { vm: spec.name, code, signal, role: record.role });
        await this.release(spec.name, record);
      });
      return record;
    } catch (err) {
      if (leased) await this.releaseLeases(spec).catch(() => undefined);
      await this.detach(spec, attached.map((a) => a.nicId));
      throw err;
    }
  }

  /**
   * Fencing rule D1: an incoming copy never runs without the lease of its disks. The
   * server moves the lease before it lets the source send its last state, so this
   * only fires if that order was broken; the copy is killed before it can write.
   */
  private fenceIncoming(name: string, record: VmRecord): void {
    const watch = record.handle.events$.subscribe({
      next: (event) => {
        if (event.type !== 'resumed' || record.role !== 'incoming' || record.leased) return;
        this.options.logger.error('an incoming copy started running without the lease of its disks; killed', { vm: name, host: this.name });
        record.stopping = true;
        void record.handle.stop(0);
      },
      error: () => undefined,
    });
    void record.handle.exited.then(() => watch.unsubscribe());
  }

  /** Forgets a VM whose process has ended, giving back its leases and switch ports. */
  private async release(name: string, vm: VmRecord): Promise<void> {
    if (this.vms.get(name) === vm) this.vms.delete(name);
    vm.heartbeat?.stop();
    if (vm.leased) {
      vm.leased = false;
      await this.releaseLeases(vm.spec).catch((err: unknown) => {
        this.options.logger.error('could not release storage leases', { vm: name, error: (err as Error).message });
      });
    }
    const nics = vm.nics.splice(0);
    await this.detach(vm.spec, nics);
  }

  private async detach(spec: VmSpec, nicIds: string[]): Promise<void> {
    for (const nicId of nicIds) {
      const nic = spec.nics?.find((n) => n.id === nicId);
      if (!nic) continue;
      await (await this.networkFor(nic.network)).detach(spec.name, nicId).catch((err: unknown) => {
        this.options.logger.warn('could not detach a NIC', { vm: spec.name, nic: nicId, error: (err as Error).message });
      });
    }
  }

  private async networkFor(network: string): Promise<NetworkProvider> {
    for (const provider of this.plugins.contributions(NetworkProviderToken)) {
      if ((await provider.networks()).includes(network)) return provider;
    }
    throw new MotusError('MOTUS_E_INVALID_REQUEST', `network '${network}' does not exist on host ${this.name}`, { network, host: this.name });
  }

  private disksByProvider(spec: VmSpec): Array<[StorageProvider, NonNullable<VmSpec['disks']>]> {
    const disks = spec.disks ?? [];
    return this.plugins
      .contributions(StorageProviderToken)
      .map((provider) => [provider, disks.filter((d) => provider.owns(d))] as [StorageProvider, typeof disks])
      .filter(([, owned]) => owned.length > 0);
  }

  /**
   * The spec the hypervisor launches: disks whose provider names them per host
   * (StorageProvider.localPath) get this host's path; the VM's own spec keeps the
   * site-wide name, so both ends of a migration start from the same spec.
   */
  private async localDisks(spec: VmSpec): Promise<VmSpec> {
    if (!spec.disks) return spec;
    const local = new Map<string, string>();
    for (const [provider, disks] of this.disksByProvider(spec)) {
      if (!provider.localPath) continue;
      for (const disk of disks) local.set(disk.id, await provider.localPath(disk));
    }
    if (local.size === 0) return spec;
    return { ...spec, disks: spec.disks.map((d) => (local.has(d.id) ? { ...d, path: local.get(d.id)! } : d)) };
  }

  private async acquireLeases(spec: VmSpec): Promise<void> {
    const done: Array<[StorageProvider, NonNullable<VmSpec['disks']>]> = [];
    try {
      for (const [provider, disks] of this.disksByProvider(spec)) {
        await this.meters.lease(provider.kind, 'acquire', () => provider.acquire(spec.name, disks));
        done.push([provider, disks]);
      }
    } catch (err) {
      for (const [provider, disks] of done) await provider.release(spec.name, disks).catch(() => undefined);
      throw err;
    }
  }

  private async releaseLeases(spec: VmSpec): Promise<void> {
    for (const [provider, disks] of this.disksByProvider(spec)) await this.meters.lease(provider.kind, 'release', () => provider.release(spec.name, disks));
  }

  private outgoing(name: string): VmRecord {
    const vm = this.get(name);
    if (vm.role !== 'outgoing') throw new MotusError('MOTUS_E_INVALID_REQUEST', `VM ${name} on ${this.name} is ${vm.role}, not being migrated away`, { vm: name });
    return vm;
  }

  private get(name: string): VmRecord {
    const vm = this.vms.get(name);
    if (!vm) throw new MotusError('MOTUS_E_VM_NOT_FOUND', `VM ${name} has no process on host ${this.name}`, { vm: name, host: this.name });
    return vm;
  }

  private describe(name: string, vm: VmRecord): AgentVm {
    return { name, role: vm.role, spec: vm.spec, pid: vm.handle.pid, serialLog: vm.handle.serialLog, startedAt: vm.startedAt };
  }
}
