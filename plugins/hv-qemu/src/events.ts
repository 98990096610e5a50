import type { HypervisorEvent, QmpEvent } from '@motus/sdk';
import { toMigrationStatus } from './migration/progress.js';

function isoTime(timestampUs: number): string {
  // QEMU stamps events with its own clock; an event without a stamp gets the time it was read.
  return new Date(timestampUs > 0 ? Math.floor(timestampUs / 1000) : Date.now()).toISOString();
}

/** The HypervisorEvent a QMP event stands for, or undefined for events Motus does not report. */
export function toHypervisorEvent(event: QmpEvent): HypervisorEvent | undefined {
  const at = isoTime(event.timestampUs);
  switch (event.event) {
    case 'STOP':
      return { type: 'stopped', at };
    case 'RESUME':
      return { type: 'resumed', at };
    case 'SHUTDOWN':
      return { type: 'shutdown', at, guest: event.data['guest'] === true };
    case 'MIGRATION': {
      const status = event.data['status'];
      return typeof status === 'string' ? { type: 'migration-status', at, status: toMigrationStatus(status) } : undefined;
    }
    default:
      return undefined;
  }
}
