import type { Observable } from 'rxjs';
import { QmpSession, type QmpExecuteOptions, type QmpSessionOptions } from './session.js';
import type { QmpEvent, QmpGreeting } from './messages.js';

/** Shapes of the QMP replies Motus reads (QEMU 7.2, qapi/*.json); fields Motus ignores are left out. */

export interface QmpStatusInfo {
  running: boolean;
  status: string;
}

export interface QmpVersionInfo {
  qemu: { major: number; minor: number; micro: number };
  package: string;
}

export interface QmpMigrationRamStats {
  transferred?: number;
  remaining?: number;
  total?: number;
  duplicate?: number;
  normal?: number;
  'normal-bytes'?: number;
  'dirty-pages-rate'?: number;
  mbps?: number;
  'dirty-sync-count'?: number;
  'page-size'?: number;
  'pages-per-second'?: number;
  'precopy-bytes'?: number;
  'downtime-bytes'?: number;
}

export interface QmpSocketAddress {
  type: string;
  host?: string;
  port?: string;
  path?: string;
}

export interface QmpMigrationInfo {
  status?: string;
  ram?: QmpMigrationRamStats;
  'total-time'?: number;
  'expected-downtime'?: number;
  downtime?: number;
  'setup-time'?: number;
  'error-desc'?: string;
  'socket-address'?: QmpSocketAddress[];
  'cpu-throttle-percentage'?: number;
  'xbzrle-cache'?: QmpXbzrleCacheStats;
}

export interface QmpXbzrleCacheStats {
  'cache-size'?: number;
  bytes?: number;
  pages?: number;
  'cache-miss'?: number;
  'cache-miss-rate'?: number;
  'encoding-rate'?: number;
  overflow?: number;
}

export interface QmpCpuInfoFast {
  'cpu-index': number;
  'qom-path': string;
  'thread-id': number;
  target: string;
}

/** QMP client: typed wrappers over a session for the commands Motus uses. */
export class QmpClient {
  private constructor(readonly session: QmpSession) {}

  static async connect(path: string, options?: QmpSessionOptions): Promise<QmpClient> {
    return new QmpClient(await QmpSession.connect(path, options));
  }

  get greeting(): QmpGreeting {
    return this.session.greeting;
  }

  get events$(): Observable<QmpEvent> {
    return this.session.events$;
  }

  get closed(): Promise<unknown> {
    return this.session.closed;
  }

  close(): void {
    this.session.close();
  }

  execute<T = unknown>(command: string, args?: Record<string, unknown>, options?: QmpExecuteOptions): Promise<T> {
    return this.session.execute<T>(command, args, options);
  }

  queryStatus(): Promise<QmpStatusInfo> {
    return this.execute<QmpStatusInfo>('query-status');
  }

  queryVersion(): Promise<QmpVersionInfo> {
    return this.execute<QmpVersionInfo>('query-version');
  }

  queryMigrate(): Promise<QmpMigrationInfo> {
    return this.execute<QmpMigrationInfo>('query-migrate');
  }

  queryCpusFast(): Promise<QmpCpuInfoFast[]> {
    return this.execute<QmpCpuInfoFast[]>('query-cpus-fast');
  }

  async migrate(uri: string): Promise<void> {
    await this.execute('migrate', { uri });
  }

  async migrateIncoming(uri: string): Promise<void> {
    await this.execute('migrate-incoming', { uri });
  }

  async migrateSetCapabilities(capabilities: Record<string, boolean>): Promise<void> {
    const list = Object.entries(capabilities).map(([capability, state]) => ({ capability, state }));
    if (list.length === 0) return;
    await this.execute('migrate-set-capabilities', { capabilities: list });
  }

  async migrateSetParameters(parameters: Record<string, unknown>): Promise<void> {
    if (Object.keys(parameters).length === 0) return;
    await this.execute('migrate-set-parameters', parameters);
  }

  /** Switches a pre-copy armed with postcopy-ram to post-copy. */
  async migrateStartPostcopy(): Promise<void> {
    await this.execute('migrate-start-postcopy');
  }

  /** Per-vCPU dirty page rate limit, MiB/s (KVM with a dirty ring only; QEMU says so otherwise). */
  async setVcpuDirtyLimit(dirtyRateMBps: number): Promise<void> {
    await this.execute('set-vcpu-dirty-limit', { 'dirty-rate': dirtyRateMBps });
  }

  async migrateCancel(): Promise<void> {
    await this.execute('migrate_cancel');
  }

  /** Lets a migration paused in `state` (QEMU: 'pre-switchover') go on. */
  async migrateContinue(state: string): Promise<void> {
    await this.execute('migrate-continue', { state });
  }

  async cont(): Promise<void> {
    await this.execute('cont');
  }

  async stop(): Promise<void> {
    await this.execute('stop');
  }

  async quit(options?: QmpExecuteOptions): Promise<void> {
    await this.execute('quit', undefined, options);
  }

  /** Has QEMU send gratuitous RARPs for every vNIC so switches relearn where the VM is. */
  async announceSelf(params: { initial?: number; max?: number; rounds?: number; step?: number } = {}): Promise<void> {
    await this.execute('announce-self', { initial: 50, max: 550, rounds: 5, step: 100, ...params });
  }
}
