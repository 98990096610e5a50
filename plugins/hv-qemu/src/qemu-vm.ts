import { Subject, type Observable } from 'rxjs';
import {
  MotusError,
  type HypervisorEvent,
  type Logger,
  type MigrationProgress,
  type MigrationTls,
  type MigrationTuning,
  type VmGuestStats,
  type VmHandle,
  type VmRunState,
} from '@motus/sdk';
import { toHypervisorEvent } from './events.js';
import type { RunFiles } from './launch/argv.js';
import type { ProcessExit, QemuProcess } from './launch/qemu-process.js';
import { toMigrationProgress } from './migration/progress.js';
import { tlsCredsObject, tlsParameters } from './migration/tls.js';
import { liveTuningToQmp, tcpUri, tuningToQmp, type QmpTuning } from './migration/tuning.js';
import type { QmpClient } from '@motus/sdk';
import { toRunState } from './run-state.js';

const DEFAULT_STOP_GRACE_MS = 5_000;
/** After SIGKILL only an uninterruptible sleep in the kernel can delay the exit. */
const KILL_WAIT_MS = 10_000;

/** One QEMU process holding one VM, driven over QMP. */
export class QemuVm implements VmHandle {
  private readonly subject = new Subject<HypervisorEvent>();
  readonly events$: Observable<HypervisorEvent> = this.subject.asObservable();
  readonly exited: Promise<ProcessExit>;
  private stopping: Promise<void> | undefined;
  /** tls-creds-x509 objects added so far: each migration loads the credentials afresh (they may have been rotated). */
  private tlsObjects = 0;

  constructor(
    readonly name: string,
    private readonly process: QemuProcess,
    /** The VM's QMP client, for commands the VmHandle contract does not cover. */
    readonly qmp: QmpClient,
    private readonly files: RunFiles,
    private readonly incoming: boolean,
    private readonly logger: Logger | undefined,
  ) {
    const subscription = qmp.events$.subscribe({
      next: (event) => {
        const mapped = toHypervisorEvent(event);
        if (mapped) this.subject.next(mapped);
      },
      error: (err: unknown) => logger?.warn('QMP event stream failed', { vm: name, error: String(err) }),
    });
    this.exited = process.exited.then((exit) => {
      subscription.unsubscribe();
      qmp.close();
      this.subject.next({ type: 'exited', at: new Date().toISOString(), code: exit.code, signal: exit.signal });
      this.subject.complete();
      return exit;
    });
  }

  get pid(): number {
    return this.process.pid;
  }

  get serialLog(): string {
    return this.files.serialLog;
  }

  /** The VM's QMP socket, serial log and pid file. */
  get runFiles(): RunFiles {
    return this.files;
  }

  get hasExited(): boolean {
    return this.process.hasExited;
  }

  /** QEMU's stderr and stdout so far (the last 64 KiB). */
  get output(): string {
    return this.process.outputText;
  }

  async runState(): Promise<VmRunState> {
    const info = await this.qmp.queryStatus();
    return toRunState(info.status);
  }

  async listenForMigration(address: string, port: number, tuning?: MigrationTuning, tls?: MigrationTls): Promise<string> {
    if (!this.incoming) {
      throw new MotusError('MOTUS_E_INVALID_REQUEST', `VM ${this.name} was not launched with incoming: true, so it cannot receive a migration`, { vm: this.name });
    }
    if (tuning) {
      // Only what both ends must agree on before the stream starts; rates and limits are the source's.
      const { capabilities, parameters } = tuningToQmp({
        ...(tuning.multifd ? { multifd: tuning.multifd } : {}),
        ...(tuning.postcopy !== undefined ? { postcopy: tuning.postcopy } : {}),
      });
      await this.qmp.migrateSetCapabilities(capabilities);
      await this.qmp.migrateSetParameters(parameters);
    }
    await this.qmp.migrateSetParameters(tlsParameters(tls ? await this.addTlsCreds(tls, 'server') : undefined));
    await this.qmp.migrateIncoming(tcpUri(address, port));
    const info = await this.qmp.queryMigrate();
    // With port 0 the kernel picks the port; QEMU reports the one it bound. The host
    // stays the caller's: a wildcard QEMU reports (0.0.0.0) is no address to send to.
    const bound = info['socket-address']?.find((a) => (a.type === 'inet' || a.type === 'tcp') && a.port !== undefined);
    if (bound?.port !== undefined) return tcpUri(address, bound.port);
    if (port !== 0) return tcpUri(address, port);
    throw new MotusError('MOTUS_E_QMP_PROTOCOL', `QEMU listens for ${this.name}'s migration but query-migrate does not say on which port`, { vm: this.name, reply: info });
  }

  async startMigration(uri: string, tuning?: MigrationTuning, tls?: MigrationTls): Promise<void> {
    const qmp = tuningToQmp(tuning);
    if (qmp.parameters['max-bandwidth'] === undefined) {
      this.logger?.info("migration max-bandwidth not given: QEMU's current limit applies (its default is 128 MiB/s)", { vm: this.name });
    }
    const creds = tls ? await this.addTlsCreds(tls, 'client') : undefined;
    await this.apply({ ...qmp, parameters: { ...qmp.parameters, ...tlsParameters(creds, tls?.peerName) } });
    await this.qmp.migrate(uri);
  }

  /** Adds a tls-creds-x509 object reading `tls.credentialsDir`; returns its id. */
  private async addTlsCreds(tls: MigrationTls, endpoint: 'server' | 'client'): Promise<string> {
    this.tlsObjects += 1;
    const object = tlsCredsObject(`motus-tls-${this.tlsObjects}`, tls.credentialsDir, endpoint);
    await this.qmp.execute('object-add', object);
    return object.id;
  }

  async tuneMigration(tuning: MigrationTuning): Promise<void> {
    const live = liveTuningToQmp(tuning);
    // QEMU refuses capability changes while a migration runs: raw ones passed here go
    // through so that QEMU's own error reaches the caller.
    await this.qmp.migrateSetCapabilities(tuning.capabilities ?? {});
    await this.apply(live);
  }

  async startPostcopy(): Promise<void> {
    await this.qmp.migrateStartPostcopy();
  }

  private async apply({ capabilities, parameters, dirtyLimitMBps }: QmpTuning): Promise<void> {
    await this.qmp.migrateSetCapabilities(capabilities);
    await this.qmp.migrateSetParameters(parameters);
    if (dirtyLimitMBps !== undefined) await this.qmp.setVcpuDirtyLimit(dirtyLimitMBps);
  }

  async migrationProgress(): Promise<MigrationProgress> {
    return toMigrationProgress(await this.qmp.queryMigrate());
  }

  async cancelMigration(): Promise<void> {
    await this.qmp.migrateCancel();
  }

  async continueMigration(): Promise<void> {
    await this.qmp.migrateContinue('pre-switchover');
  }

  async resume(): Promise<void> {
    await this.qmp.cont();
  }

  /**
   * The balloon's size (query-balloon; an error when the VM has no balloon) and the
   * guest's dirty rate: each call reads the last calc-dirty-rate result and starts
   * the next one-second measurement (page sampling, which works under TCG too), so
   * a caller sampling every few seconds always has a fresh figure.
   */
  async guestStats(): Promise<VmGuestStats> {
    const stats: VmGuestStats = {};
    const balloon = await this.qmp.execute<{ actual: number }>('query-balloon').catch(() => undefined);
    if (balloon) stats.balloonBytes = balloon.actual;
    const dirty = await this.qmp.execute<{ status: string; 'dirty-rate'?: number }>('query-dirty-rate').catch(() => undefined);
    // QEMU reports the rate in MB/s (MiB).
    if (dirty?.status === 'measured' && dirty['dirty-rate'] !== undefined) stats.dirtyBytesPerSec = dirty['dirty-rate'] * 1024 * 1024;
    if (dirty && dirty.status !== 'measuring') await this.qmp.execute('calc-dirty-rate', { 'calc-time': 1 }).catch(() => undefined);
    return stats;
  }

  /** Sends gratuitous RARPs for every vNIC (after a migration, so switches relearn the MACs). */
  async announce(): Promise<void> {
    await this.qmp.announceSelf();
  }

  stop(graceMs: number = DEFAULT_STOP_GRACE_MS): Promise<void> {
    this.stopping ??= this.stopNow(graceMs);
    return this.stopping;
  }

  private async stopNow(graceMs: number): Promise<void> {
    if (this.process.hasExited) {
      await this.exited;
      return;
    }
    // quit answers before QEMU is gone; a lost connection is just as good a sign.
    await this.qmp.quit({ timeoutMs: Math.max(100, Math.min(graceMs, 2_000)) }).catch(() => undefined);
    if (!(await this.process.waitExit(graceMs))) {
      this.logger?.warn('QEMU did not quit; sending SIGTERM', { vm: this.name, pid: this.pid });
      this.process.kill('SIGTERM');
      if (!(await this.process.waitExit(graceMs))) {
        this.logger?.warn('QEMU ignored SIGTERM; sending SIGKILL', { vm: this.name, pid: this.pid });
        this.process.kill('SIGKILL');
        if (!(await this.process.waitExit(KILL_WAIT_MS))) {
          throw new MotusError('MOTUS_E_INTERNAL', `QEMU (pid ${this.pid}) of VM ${this.name} has not exited ${KILL_WAIT_MS} ms after SIGKILL`, { vm: this.name, pid: this.pid });
        }
      }
    }
    await this.exited;
  }
}
