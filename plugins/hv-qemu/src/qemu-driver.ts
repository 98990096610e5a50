import { MotusError, type HypervisorDriver, type HypervisorFacts, type LaunchOptions, type Logger, type VmSpec } from '@motus/sdk';
import { probeAccelerator, type AcceleratorSetting } from './accel-probe.js';
import { buildQemuArgv, runFiles } from './launch/argv.js';
import { DEFAULT_QEMU_BINARY, requireQemu } from './launch/binaries.js';
import { startQemu } from './launch/launch.js';
import { QemuVm } from './qemu-vm.js';
import { qemuVersion } from './qemu-version.js';
import { migrationFeatures } from './migration/features.js';
import { qemuHasTls } from './migration/tls.js';

export interface QemuDriverOptions {
  /** Name on PATH or absolute path; qemu-system-x86_64 by default. */
  qemuBinary?: string;
  /** 'auto' probes KVM; MOTUS_ACCEL in the environment overrides this. */
  accelerator?: AcceleratorSetting;
  /** Per QMP command. */
  qmpTimeoutMs?: number;
  /** For QEMU to start and answer on QMP. */
  startTimeoutMs?: number;
  /** For the KVM probe guest to print its marker. */
  probeTimeoutMs?: number;
  logger?: Logger;
  /** Initiator name for iscsi:// disks (libiscsi's `-iscsi initiator-name=`). */
  iscsiInitiatorName?: string;
  /** Environment read for MOTUS_ACCEL; process.env by default. */
  env?: NodeJS.ProcessEnv;
}

export const DEFAULT_QMP_TIMEOUT_MS = 10_000;
export const DEFAULT_START_TIMEOUT_MS = 15_000;
export const DEFAULT_PROBE_TIMEOUT_MS = 5_000;

/** Launches and tracks QEMU processes on this host. */
export class QemuDriver implements HypervisorDriver {
  readonly kind = 'qemu';
  private readonly vms = new Set<QemuVm>();
  private disposed = false;

  constructor(private readonly options: QemuDriverOptions = {}) {}

  private get binary(): string {
    return this.options.qemuBinary ?? DEFAULT_QEMU_BINARY;
  }

  async probe(): Promise<HypervisorFacts> {
    const qemuPath = requireQemu(this.binary);
    const [version, migrationTls, choice] = await Promise.all([
      qemuVersion(qemuPath),
      qemuHasTls(qemuPath),
      probeAccelerator({
        qemuPath,
        setting: this.options.accelerator ?? 'auto',
        bootTimeoutMs: this.options.probeTimeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS,
        ...(this.options.env ? { env: this.options.env } : {}),
      }),
    ]);
    return { kind: this.kind, version, accelerator: choice.accelerator, acceleratorReason: choice.reason, migrationFeatures: migrationFeatures(choice.accelerator), migrationTls };
  }

  async launch(spec: VmSpec, options: LaunchOptions): Promise<QemuVm> {
    if (this.disposed) throw new MotusError('MOTUS_E_INTERNAL', `the QEMU driver is disposed; cannot launch ${spec.name}`, { vm: spec.name });
    const qemuPath = requireQemu(this.binary);
    const facts = await this.probe();
    const accelerator = facts.accelerator === 'kvm' ? 'kvm' : 'tcg';
    const argv = buildQemuArgv(spec, options, accelerator, this.options.iscsiInitiatorName);
    const files = runFiles(options.runDir);
    const qmpTimeoutMs = this.options.qmpTimeoutMs ?? DEFAULT_QMP_TIMEOUT_MS;
    const { process, qmp } = await startQemu({
      qemuPath,
      argv,
      runDir: options.runDir,
      files,
      startTimeoutMs: this.options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS,
      qmpTimeoutMs,
    });
    const vm = new QemuVm(spec.name, process, qmp, files, options.incoming === true, this.options.logger?.child({ vm: spec.name }));
    this.vms.add(vm);
    void vm.exited.then(() => this.vms.delete(vm));
    try {
      // MIGRATION events on both ends let owners react to status changes without polling.
      await qmp.migrateSetCapabilities({ events: true });
    } catch (err) {
      await vm.stop(1_000).catch(() => undefined);
      throw new MotusError('MOTUS_E_QEMU_LAUNCH', `QEMU for ${spec.name} started but refused to enable migration events: ${err instanceof Error ? err.message : String(err)}`, {
        vm: spec.name,
      });
    }
    this.options.logger?.info('QEMU started', { vm: spec.name, pid: vm.pid, accelerator, incoming: options.incoming === true });
    return vm;
  }

  /** VMs launched by this driver whose process still runs. */
  get running(): readonly QemuVm[] {
    return [...this.vms];
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    await Promise.allSettled([...this.vms].map((vm) => vm.stop(2_000)));
  }
}
