/**
 * A host's persistent reservation key, the same for every storage plugin (iSCSI,
 * FC): it derives from the host name alone, so an agent that restarts finds its
 * own earlier registrations, and every host can name the owner of a key it reads
 * back from a LUN.
 */
import { createHash } from 'node:crypto';

/** A non-zero 64-bit key (zero means "no key" in PERSISTENT RESERVE OUT). */
export function reservationKey(host: string): bigint {
  const digest = createHash('sha256').update(`motus-host-key:${host}`).digest();
  const key = digest.readBigUInt64BE(0);
  return key === 0n ? 1n : key;
}

export function keyHex(key: bigint): string {
  return `0x${key.toString(16).padStart(16, '0')}`;
}
