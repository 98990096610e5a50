import { Subject } from 'rxjs';
import {
  API_VERSION,
  HypervisorDriverToken,
  MotusError,
  definePlugin,
  type HypervisorDriver,
  type HypervisorEvent,
  type HypervisorFacts,
  type LaunchOptions,
  type MigrationProgress,
  type MigrationTuning,
  type VmHandle,
  type VmRunState,
  type VmSpec,
} from '@motus/sdk';

/**
 * An in-memory hypervisor for unit tests of the orchestration logic: VMs are
 * objects, a migration moves through a few pre-copy rounds on a timer. The real
 * driver is tested against QEMU in test/hv-qemu and test/core/e2e.
 */
export class FakeVm implements VmHandle {
  private static nextPid = 40_000;
  readonly pid = FakeVm.nextPid++;
  readonly serialLog: string;
  private readonly subject = new Subject<HypervisorEvent>();
  readonly events$ = this.subject.asObservable();
  private exit!: (value: { code: number | null; signal: string | null }) => void;
  readonly exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => (this.exit = resolve));
  state: VmRunState;
  alive = true;
  progress: MigrationProgress = { status: 'none', totalTimeMs: 0, round: 0, totalBytes: 0, transferredBytes: 0, remainingBytes: 0, dirtyRateBytesPerSec: 0, throughputBytesPerSec: 0 };
  tuning: MigrationTuning | undefined;
  launchOptions: LaunchOptions | undefined;
  private timer: NodeJS.Timeout | undefined;
  private target: FakeVm | undefined;

  constructor(
    readonly name: string,
    readonly spec: VmSpec,
    private readonly driver: FakeDriver,
    incoming: boolean,
    runDir: string,
  ) {
    this.state = incoming ? 'inmigrate' : 'running';
    this.serialLog = `${runDir}/serial.log`;
  }

  async runState(): Promise<VmRunState> {
    this.assertAlive();
    return this.state;
  }

  async listenForMigration(address: string): Promise<string> {
    const uri = `fake:${address}:${this.pid}`;
    this.driver.world.listening.set(uri, this);
    return uri;
  }

  async startMigration(uri: string, tuning?: MigrationTuning): Promise<void> {
    this.assertAlive();
    this.tuning = tuning;
    const target = this.driver.world.listening.get(uri);
    if (!target) throw new Error(`nothing listens on ${uri}`);
    this.target = target;
    const total = this.spec.memoryMiB * (1 << 20);
    const rounds = this.driver.world.rounds;
    let round = 0;
    this.progress = { ...this.progress, status: 'active', totalBytes: total, remainingBytes: total, throughputBytesPerSec: 1 << 30, dirtyRateBytesPerSec: 1 << 20 };
    this.timer = setInterval(() => {
      if (!target.alive) {
        this.finish('failed', 'Unable to write to socket: Connection reset by peer');
        return;
      }
      if (this.progress.status === 'pre-switchover') return;
      round += 1;
      const remaining = Math.max(0, total - Math.round((total * round) / rounds));
      this.progress = { ...this.progress, round, transferredBytes: total - remaining, remainingBytes: remaining, totalTimeMs: round * 20 };
      if (round < rounds) return;
      if (this.tuning?.capabilities?.['pause-before-switchover'] && !this.continued) {
        this.state = 'paused';
        this.progress = { ...this.progress, status: 'pre-switchover' };
        this.subject.next({ type: 'migration-status', at: new Date().toISOString(), status: 'pre-switchover' });
        return;
      }
      this.complete();
    }, 20);
  }

  private continued = false;

  async continueMigration(): Promise<void> {
    this.continued = true;
    if (this.progress.status === 'pre-switchover') this.complete();
  }

  private complete(): void {
    this.state = 'postmigrate';
    this.finish('completed');
    if (this.driver.world.destinationFailsToRun) this.target!.kill();
    else this.target!.startRunning();
  }

  /** The incoming copy starts running, as QEMU does by itself once the whole stream arrived. */
  startRunning(): void {
    this.state = 'running';
    this.subject.next({ type: 'resumed', at: new Date().toISOString() });
  }

  private finish(status: MigrationProgress['status'], error?: string): void {
    clearInterval(this.timer);
    this.progress = { ...this.progress, status, ...(status === 'completed' ? { downtimeMs: 12 } : {}), ...(error ? { error } : {}) };
    this.subject.next({ type: 'migration-status', at: new Date().toISOString(), status });
  }

  async tuneMigration(tuning: MigrationTuning): Promise<void> {
    this.tuning = { ...this.tuning, ...tuning };
  }

  /** Post-copy switched on by the orchestrator (the fake just records it). */
  postcopyStarted = false;

  async startPostcopy(): Promise<void> {
    this.postcopyStarted = true;
  }

  async migrationProgress(): Promise<MigrationProgress> {
    this.assertAlive();
    return this.progress;
  }

  async cancelMigration(): Promise<void> {
    if (this.progress.status === 'active' || this.progress.status === 'pre-switchover') {
      if (this.state === 'paused') this.state = 'running';
      this.finish('cancelled');
    }
  }

  async resume(): Promise<void> {
    this.assertAlive();
    this.state = 'running';
  }

  async stop(): Promise<void> {
    this.kill();
  }

  /** Simulates the process dying. */
  kill(): void {
    if (!this.alive) return;
    this.alive = false;
    clearInterval(this.timer);
    this.driver.vms.delete(this);
    this.subject.next({ type: 'exited', at: new Date().toISOString(), code: null, signal: 'SIGKILL' });
    this.subject.complete();
    this.exit({ code: null, signal: 'SIGKILL' });
  }

  private assertAlive(): void {
    if (!this.alive) throw new MotusError('MOTUS_E_QMP_DISCONNECTED', 'QMP connection closed');
  }
}

/** Shared between the fake drivers of all hosts of one test platform. */
export interface FakeWorld {
  listening: Map<string, FakeVm>;
  rounds: number;
  destinationFailsToRun: boolean;
  launched: FakeVm[];
}

export function createFakeWorld(): FakeWorld {
  return { listening: new Map(), rounds: 5, destinationFailsToRun: false, launched: [] };
}

export class FakeDriver implements HypervisorDriver {
  readonly kind = 'fake';
  readonly vms = new Set<FakeVm>();
  constructor(readonly world: FakeWorld) {}

  async probe(): Promise<HypervisorFacts> {
    return { kind: 'fake', version: '1.0.0', accelerator: 'none', acceleratorReason: 'fake driver for unit tests' };
  }

  async launch(spec: VmSpec, options: LaunchOptions): Promise<VmHandle> {
    const vm = new FakeVm(spec.name, spec, this, options.incoming === true, options.runDir);
    vm.launchOptions = options;
    this.vms.add(vm);
    this.world.launched.push(vm);
    return vm;
  }

  async dispose(): Promise<void> {
    for (const vm of [...this.vms]) vm.kill();
  }
}

export function fakeHypervisorPlugin(world: FakeWorld) {
  return definePlugin({
    name: 'fake-hypervisor',
    version: '1.0.0',
    apiVersion: API_VERSION,
    provides: [HypervisorDriverToken],
    roles: ['agent'],
    setup(ctx) {
      ctx.provide(HypervisorDriverToken, new FakeDriver(world));
    },
  });
}

export function fakeSpec(name: string, memoryMiB = 256): VmSpec {
  return { name, memoryMiB, vcpus: 1, boot: { kind: 'kernel', kernel: '/nonexistent/vmlinuz' } };
}
