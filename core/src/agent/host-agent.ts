import { mkdirSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import {
  HypervisorDriverToken,
  MotusError,
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
import { TERMINAL_STATUSES, type AgentFacts, type AgentVm, type HostLink } from './host-link.js';

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
}

interface VmRecord {
  handle: VmHandle;
  spec: VmSpec;
  role: AgentVm['role'];
  startedAt: string;
}

/**
 * The agent of one host: holds that host's VM processes through the hypervisor
 * driver a plugin provides, and carries out the server's orders.
 */
export class HostAgent implements HostLink {
  private readonly vms = new Map<string, VmRecord>();
  private facts_: HypervisorFacts | undefined;
  private stopped = false;

  private constructor(
    private readonly options: HostAgentOptions,
    private readonly plugins: PluginHost,
    private readonly driver: HypervisorDriver,
  ) {}

  get name(): string {
    return this.options.name;
  }

  static async start(options: HostAgentOptions): Promise<HostAgent> {
    mkdirSync(options.stateDir, { recursive: true });
    const plugins = new PluginHost({
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
      const agent = new HostAgent(options, plugins, driver);
      agent.facts_ = await driver.probe();
      options.logger.info('agent ready', { host: options.name, hypervisor: agent.facts_ });
      return agent;
    } catch (err) {
      await plugins.dispose();
      throw err;
    }
  }

  async facts(): Promise<AgentFacts> {
    const hypervisor = this.facts_ ?? (await this.driver.probe());
    return {
      name: this.name,
      migrationAddress: this.options.migrationAddress,
      memoryTotalMiB: this.options.memoryMiB ?? Math.floor(totalmem() / (1 << 20)),
      memoryUsedMiB: [...this.vms.values()].reduce((sum, vm) => sum + vm.spec.memoryMiB, 0),
      cpus: cpus().length,
      hypervisor,
      vms: [...this.vms.entries()].map(([name, vm]) => this.describe(name, vm)),
    };
  }

  async startVm(specInput: VmSpec): Promise<AgentVm> {
    const spec = parseVmSpec(specInput);
    this.claimName(spec.name);
    const handle = await this.driver.launch(spec, { runDir: this.runDir(spec.name) });
    const record = this.track(spec, handle, 'running');
    this.options.logger.info('vm started', { vm: spec.name, pid: handle.pid });
    return this.describe(spec.name, record);
  }

  async stopVm(name: string): Promise<void> {
    const vm = this.get(name);
    await vm.handle.stop(5_000);
    this.forget(name);
  }

  async prepareIncoming(specInput: VmSpec, migrationId: string): Promise<{ uri: string }> {
    const spec = parseVmSpec(specInput);
    this.claimName(spec.name);
    const handle = await this.driver.launch(spec, { runDir: this.runDir(spec.name), incoming: true });
    this.track(spec, handle, 'incoming');
    try {
      const uri = await handle.listenForMigration(this.options.migrationAddress, 0);
      this.options.logger.info('incoming migration ready', { vm: spec.name, migrationId, uri });
      return { uri };
    } catch (err) {
      await this.abortIncoming(spec.name);
      throw err;
    }
  }

  async *migrateOut(name: string, uri: string, tuning: MigrationTuning, migrationId: string, signal: AbortSignal): AsyncGenerator<MigrationProgress> {
    const vm = this.get(name);
    if (vm.role !== 'running') throw new MotusError('MOTUS_E_VM_BUSY', `VM ${name} is already ${vm.role} on ${this.name}`, { vm: name });
    vm.role = 'outgoing';
    // Status changes wake the sampler at once, so a pause before switchover is
    // reported without waiting for the next sampling tick.
    let wake: (() => void) | undefined;
    const statusWatch = vm.handle.events$.subscribe({
      next: (event) => {
        if (event.type === 'migration-status' || event.type === 'exited') wake?.();
      },
      error: () => wake?.(),
    });
    const onAbort = () => wake?.();
    signal.addEventListener('abort', onAbort, { once: true });
    const interval = this.options.progressIntervalMs ?? 250;
    try {
      await vm.handle.startMigration(uri, tuning);
      this.options.logger.info('outgoing migration started', { vm: name, migrationId, uri });
      let lastStatus: string | undefined;
      for (;;) {
        const progress = await vm.handle.migrationProgress();
        yield progress;
        if (TERMINAL_STATUSES.has(progress.status)) {
          if (progress.status !== 'completed') vm.role = 'running';
          return;
        }
        if (signal.aborted) return;
        // In pre-switchover the sample repeats until the server continues; only wait for events.
        const waitMs = progress.status === 'pre-switchover' && lastStatus === 'pre-switchover' ? 60_000 : interval;
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
      statusWatch.unsubscribe();
      signal.removeEventListener('abort', onAbort);
    }
  }

  async continueMigration(name: string): Promise<void> {
    await this.get(name).handle.continueMigration();
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

  async resume(name: string): Promise<void> {
    const vm = this.get(name);
    await vm.handle.resume();
    vm.role = 'running';
  }

  async commitIncoming(name: string): Promise<void> {
    const vm = this.get(name);
    vm.role = 'running';
  }

  async abortIncoming(name: string): Promise<void> {
    const vm = this.vms.get(name);
    if (!vm) return;
    if (vm.role !== 'incoming') {
      throw new MotusError('MOTUS_E_VM_BUSY', `VM ${name} on ${this.name} is ${vm.role}, not an incoming copy; refusing to stop it`, { vm: name });
    }
    await vm.handle.stop(2_000);
    this.forget(name);
  }

  async finishOutgoing(name: string): Promise<void> {
    const vm = this.vms.get(name);
    if (!vm) return;
    const state = await vm.handle.runState().catch(() => 'absent' as const);
    if (state !== 'postmigrate' && state !== 'absent') {
      throw new MotusError('MOTUS_E_VM_BUSY', `VM ${name} on ${this.name} is ${state}, not migrated away; refusing to stop it`, { vm: name });
    }
    await vm.handle.stop(2_000);
    this.forget(name);
  }

  /** Stops every VM this agent holds and unloads its plugins. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await Promise.allSettled([...this.vms.values()].map((vm) => vm.handle.stop(3_000)));
    for (const name of [...this.vms.keys()]) this.forget(name);
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

  private track(spec: VmSpec, handle: VmHandle, role: AgentVm['role']): VmRecord {
    const record: VmRecord = { handle, spec, role, startedAt: new Date().toISOString() };
    this.vms.set(spec.name, record);
    void handle.exited.then(({ code, signal }) => {
      if (this.vms.get(spec.name) !== record) return;
      this.options.logger.warn('vm process exited', { vm: spec.name, code, signal, role: record.role });
      this.vms.delete(spec.name);
    });
    return record;
  }

  private forget(name: string): void {
    this.vms.delete(name);
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
