import type { MigrationEvent, MigrationEventOf } from '@motus/sdk';

export function mib(bytes: number): string {
  return `${(bytes / (1 << 20)).toFixed(bytes >= 100 * (1 << 20) ? 0 : 1)} MiB`;
}

export function rate(bytesPerSec: number): string {
  return `${mib(bytesPerSec)}/s`;
}

/** A table with left-aligned columns and a header row. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/** The progress bar line for a terminal: percentage, round, remaining, dirty rate, throughput, ETA. */
export function progressLine(event: MigrationEventOf<'progress'>, width = 30): string {
  const done = event.totalBytes > 0 ? Math.min(1, Math.max(0, 1 - event.remainingBytes / event.totalBytes)) : 0;
  const filled = Math.round(done * width);
  const bar = '#'.repeat(filled) + '.'.repeat(width - filled);
  const eta = event.etaMs === null ? '  ETA ?' : `  ETA ${(event.etaMs / 1000).toFixed(1)}s`;
  return `[${bar}] ${(done * 100).toFixed(0).padStart(3)}%  round ${event.round}  left ${mib(event.remainingBytes)}  dirty ${rate(event.dirtyRateBytesPerSec)}  sent at ${rate(event.throughputBytesPerSec)}${eta}`;
}

/** One human line per lifecycle event (progress is drawn as a bar instead). */
export function describeEvent(event: MigrationEvent): string {
  switch (event.type) {
    case 'requested':
      return `requested: ${event.vm} ${event.source} -> ${event.destination} by ${event.requestedBy} (${event.priority})`;
    case 'validated':
      return 'validated';
    case 'rejected':
      return `rejected: ${event.error.code}: ${event.error.message}`;
    case 'prepared':
      return `destination prepared in ${event.ms} ms (${event.uri})`;
    case 'progress':
      return progressLine(event);
    case 'policy':
      return `policy: ${event.action} (${event.reason})`;
    case 'switchover':
      return `switchover to ${event.host}`;
    case 'resumed':
      return `resumed on ${event.host}`;
    case 'announced':
      return `announced on ${event.host} in ${event.ms} ms`;
    case 'warning':
      return `warning: ${event.step} failed (${event.phase}), the VM stays on its destination: ${event.error.code}: ${event.error.message}`;
    case 'completed':
      return (
        `completed: downtime ${event.downtimeMs} ms, total ${(event.totalTimeMs / 1000).toFixed(2)} s, ${mib(event.bytes)} sent (${event.bytesPerMemory}× memory) in ${event.rounds} rounds, ` +
        `throttle ${event.throttlePct}%, switchover target ${event.switchoverTargetMs} ms${event.postcopy ? ', post-copy' : ''}, ` +
        `${event.guestPauseMs === null ? 'no guest heartbeat' : `guest pause ${event.guestPauseMs} ms`}, control plane ${event.controlPlaneMs} ms`
      );
    case 'failed':
      return `failed in ${event.phase}: ${event.error.code}: ${event.error.message}`;
    case 'rolled-back':
      return `rolled back: the VM stays on ${event.host} (${event.vmState})`;
    case 'cancelled':
      return `cancelled by ${event.by}`;
  }
}
