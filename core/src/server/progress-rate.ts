import type { MigrationEventOf, MigrationProgress } from '@motus/sdk';

type ProgressEvent = Omit<MigrationEventOf<'progress'>, 'migrationId' | 'seq' | 'at'>;

/**
 * Turns raw hypervisor samples into progress events. QEMU's own throughput figure
 * (ram.mbps) is the rate of its last 100 ms window and swings by orders of magnitude
 * between samples, which makes the ETA useless; the rate here is measured from the
 * bytes sent between samples and smoothed.
 */
export class ProgressRate {
  private last: { bytes: number; ms: number } | undefined;
  private rate: number | undefined;

  constructor(private readonly weight = 0.5) {}

  event(p: MigrationProgress): ProgressEvent {
    if (this.last && p.totalTimeMs > this.last.ms) {
      const measured = ((p.transferredBytes - this.last.bytes) * 1000) / (p.totalTimeMs - this.last.ms);
      this.rate = this.rate === undefined ? measured : this.weight * measured + (1 - this.weight) * this.rate;
    }
    this.last = { bytes: p.transferredBytes, ms: p.totalTimeMs };
    const throughput = Math.max(0, Math.round(this.rate ?? p.throughputBytesPerSec));
    const net = throughput - p.dirtyRateBytesPerSec;
    return {
      type: 'progress',
      status: p.status,
      round: p.round,
      totalBytes: p.totalBytes,
      transferredBytes: p.transferredBytes,
      remainingBytes: p.remainingBytes,
      dirtyRateBytesPerSec: p.dirtyRateBytesPerSec,
      throughputBytesPerSec: throughput,
      etaMs: net > 0 ? Math.round((p.remainingBytes / net) * 1000) : null,
      expectedDowntimeMs: p.expectedDowntimeMs ?? null,
    };
  }
}
