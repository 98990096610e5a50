/**
 * What the FC and iSCSI LUN leases do alike around the RESERVE that arbitrates
 * a take (the reservation is only the arbiter; the lease is the registration).
 */
import { MotusError } from '../errors.js';
import type { PersistentReservationDevice } from './reservation-device.js';

/** RESERVATION CONFLICT: another initiator's reservation forbade the command. */
export function isReservationConflict(err: unknown): boolean {
  return err instanceof MotusError && err.code === 'MOTUS_E_SCSI_RESERVATION_CONFLICT';
}

/**
 * After our RESERVE succeeded: reads the keys until only ours is left. A
 * contender registers only after seeing no key, and leaves as soon as its
 * RESERVE fails, so a key still there after five reads 25 ms apart belongs to
 * a holder: it is returned as `staying`, with the READ KEYS commands spent.
 */
export async function awaitContendersGone(device: Pick<PersistentReservationDevice, 'readKeys'>, key: bigint): Promise<{ commands: number; staying?: bigint }> {
  for (let attempt = 0; ; attempt++) {
    const { keys } = await device.readKeys();
    const other = keys.find((k) => k !== key);
    if (other === undefined) return { commands: attempt + 1 };
    if (attempt >= 4) return { commands: attempt + 1, staying: other };
    await new Promise<void>((resolve) => setTimeout(resolve, 25));
  }
}
