import type { MigrationTuning } from '@motus/sdk';

/** What a MigrationTuning asks of QEMU: capabilities, parameters, and a per-vCPU dirty limit (its own command). */
export interface QmpTuning {
  capabilities: Record<string, boolean>;
  parameters: Record<string, unknown>;
  /** set-vcpu-dirty-limit dirty-rate, MiB/s; undefined leaves it alone. */
  dirtyLimitMBps?: number;
}

const PAGE_SIZE = 4096;

/** QEMU takes only powers of two of at least a page for the xbzrle cache; the size asked for, rounded down to one. */
export function xbzrleCacheSize(bytes: number): number {
  if (!(bytes >= PAGE_SIZE)) return PAGE_SIZE;
  return 2 ** Math.floor(Math.log2(bytes));
}

function pct(value: number): number {
  // QEMU's throttle parameters take 1..99 (threshold 1..100); 0 would be refused.
  return Math.min(99, Math.max(1, Math.round(value)));
}

/** The migrate-set-capabilities and migrate-set-parameters arguments a tuning stands for. */
export function tuningToQmp(tuning: MigrationTuning = {}): QmpTuning {
  const parameters: Record<string, unknown> = { ...(tuning.parameters ?? {}) };
  const capabilities: Record<string, boolean> = { ...(tuning.capabilities ?? {}) };
  // The typed fields win over the same keys passed raw: they are what the caller named.
  if (tuning.maxBandwidthBytesPerSec !== undefined) parameters['max-bandwidth'] = Math.round(tuning.maxBandwidthBytesPerSec);
  if (tuning.downtimeLimitMs !== undefined) parameters['downtime-limit'] = Math.round(tuning.downtimeLimitMs);
  if (tuning.switchoverBandwidthBytesPerSec !== undefined) parameters['avail-switchover-bandwidth'] = Math.round(tuning.switchoverBandwidthBytesPerSec);
  if (tuning.throttle) {
    capabilities['auto-converge'] = true;
    parameters['cpu-throttle-initial'] = pct(tuning.throttle.initialPct);
    parameters['cpu-throttle-increment'] = pct(tuning.throttle.incrementPct);
    parameters['max-cpu-throttle'] = pct(tuning.throttle.maxPct);
    if (tuning.throttle.triggerThresholdPct !== undefined) {
      parameters['throttle-trigger-threshold'] = Math.min(100, Math.max(1, Math.round(tuning.throttle.triggerThresholdPct)));
    }
  }
  if (tuning.xbzrle) {
    capabilities['xbzrle'] = true;
    parameters['xbzrle-cache-size'] = xbzrleCacheSize(tuning.xbzrle.cacheBytes);
  }
  if (tuning.multifd) {
    capabilities['multifd'] = true;
    parameters['multifd-channels'] = Math.max(1, Math.min(255, Math.round(tuning.multifd.channels)));
  }
  if (tuning.postcopy !== undefined) capabilities['postcopy-ram'] = tuning.postcopy;
  const out: QmpTuning = { capabilities, parameters };
  if (tuning.dirtyLimitMBps !== undefined) out.dirtyLimitMBps = Math.max(1, Math.round(tuning.dirtyLimitMBps));
  return out;
}

/**
 * The part of a tuning a running migration may change: QEMU refuses
 * migrate-set-capabilities while a migration runs, so only parameters (and the
 * dirty limit) go through; a capability turned on then is a caller error.
 */
export function liveTuningToQmp(tuning: MigrationTuning): QmpTuning {
  const { capabilities: _fixedAtStart, ...live } = tuningToQmp(tuning);
  return { capabilities: {}, ...live };
}

/** Builds the tcp: URI for an address and port; IPv6 addresses go in brackets. */
export function tcpUri(host: string, port: number | string): string {
  return host.includes(':') && !host.startsWith('[') ? `tcp:[${host}]:${port}` : `tcp:${host}:${port}`;
}
