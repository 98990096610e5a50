/**
 * A host's identity on the SAN: its initiator name and its persistent
 * reservation key. Both derive from the host name alone, so an agent that
 * restarts (or another process of the same host) finds its own earlier
 * registrations, and every host can name the owner of a key it reads back.
 */
import { createHash } from 'node:crypto';

export function initiatorName(prefix: string, host: string): string {
  // iSCSI names allow lowercase letters, digits, '-', '.', ':'.
  return `${prefix}:${host.toLowerCase().replace(/[^a-z0-9.-]/g, '-')}`;
}

/** A non-zero 64-bit key (zero means "no key" in PERSISTENT RESERVE OUT). */
export function reservationKey(host: string): bigint {
  const digest = createHash('sha256').update(`motus-host-key:${host}`).digest();
  const key = digest.readBigUInt64BE(0);
  return key === 0n ? 1n : key;
}

export function keyHex(key: bigint): string {
  return `0x${key.toString(16).padStart(16, '0')}`;
}
