/**
 * A host's identity on the SAN: its initiator name and its persistent
 * reservation key. Both derive from the host name alone, so an agent that
 * restarts (or another process of the same host) finds its own earlier
 * registrations, and every host can name the owner of a key it reads back.
 * The key is the SDK's, shared with the Fibre Channel plugin.
 */
export { keyHex, reservationKey } from '@motus/sdk';

export function initiatorName(prefix: string, host: string): string {
  // iSCSI names allow lowercase letters, digits, '-', '.', ':'.
  return `${prefix}:${host.toLowerCase().replace(/[^a-z0-9.-]/g, '-')}`;
}
