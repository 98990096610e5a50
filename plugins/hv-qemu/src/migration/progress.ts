import type { MigrationProgress, MigrationStatus, QmpMigrationInfo } from '@motus/sdk';

const STATUSES: ReadonlySet<string> = new Set<MigrationStatus>([
  'none',
  'setup',
  'active',
  'pre-switchover',
  'device',
  'postcopy-active',
  'completed',
  'failed',
  'cancelling',
  'cancelled',
]);

/** QEMU's MigrationStatus as the SDK's; QEMU's extra states fold into the nearest SDK one. */
export function toMigrationStatus(status: string | undefined): MigrationStatus {
  if (status === undefined) return 'none';
  if (STATUSES.has(status)) return status as MigrationStatus;
  switch (status) {
    case 'postcopy-paused':
    case 'postcopy-recover':
      return 'postcopy-active';
    case 'wait-unplug':
      return 'setup';
    default:
      // 'colo' and states newer QEMUs add: the stream still runs.
      return 'active';
  }
}

const DEFAULT_PAGE_SIZE = 4096;

function n(value: number | undefined): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : 0;
}

/** One query-migrate answer as a MigrationProgress sample. */
export function toMigrationProgress(info: QmpMigrationInfo): MigrationProgress {
  const status = toMigrationStatus(info.status);
  const ram = info.ram ?? {};
  const pageSize = n(ram['page-size']) || DEFAULT_PAGE_SIZE;
  const progress: MigrationProgress = {
    status,
    totalTimeMs: n(info['total-time']),
    round: n(ram['dirty-sync-count']),
    totalBytes: n(ram.total),
    transferredBytes: n(ram.transferred),
    remainingBytes: n(ram.remaining),
    dirtyRateBytesPerSec: n(ram['dirty-pages-rate']) * pageSize,
    // QEMU's mbps is decimal megabits per second.
    throughputBytesPerSec: Math.round((n(ram.mbps) * 1_000_000) / 8),
  };
  if (info['expected-downtime'] !== undefined) progress.expectedDowntimeMs = n(info['expected-downtime']);
  if (info['cpu-throttle-percentage'] !== undefined) progress.cpuThrottlePct = n(info['cpu-throttle-percentage']);
  const x = info['xbzrle-cache'];
  if (x !== undefined) {
    progress.xbzrle = {
      cacheBytes: n(x['cache-size']),
      pages: n(x.pages),
      encodingRate: n(x['encoding-rate']),
      cacheMissRate: n(x['cache-miss-rate']),
      overflow: n(x.overflow),
    };
  }
  if (status === 'completed') {
    if (info.downtime !== undefined) progress.downtimeMs = n(info.downtime);
    if (info['setup-time'] !== undefined) progress.setupTimeMs = n(info['setup-time']);
  }
  if (info['error-desc'] !== undefined) progress.error = info['error-desc'];
  return progress;
}
