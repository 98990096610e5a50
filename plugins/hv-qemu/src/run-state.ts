import type { VmRunState } from '@motus/sdk';

const KNOWN: ReadonlySet<string> = new Set<VmRunState>([
  'running',
  'paused',
  'inmigrate',
  'postmigrate',
  'finish-migrate',
  'prelaunch',
  'shutdown',
  'internal-error',
  'io-error',
  'guest-panicked',
]);

/** QEMU's RunState (query-status 'status') as the SDK's VmRunState; states the SDK does not name are 'other'. */
export function toRunState(status: string): VmRunState {
  return KNOWN.has(status) ? (status as VmRunState) : 'other';
}
