import type { ReservationTypeName } from './cdb.js';
import type { RegisteredKeys, Reservation } from './reservations.js';

/**
 * One I_T nexus to a logical unit that carries SCSI-3 persistent reservation
 * commands, whatever transport issues them: the iSCSI initiator's `Lun`, or the
 * Fibre Channel plugin's `sg_persist` on one path's block device. Failures are
 * MotusErrors with the MOTUS_E_SCSI_* codes (a conflict is
 * MOTUS_E_SCSI_RESERVATION_CONFLICT), so ownership code reads the same over both.
 */
export interface PersistentReservationDevice {
  readKeys(): Promise<RegisteredKeys>;
  readReservation(): Promise<Reservation>;
  /** REGISTER AND IGNORE EXISTING KEY: this nexus is registered with `key`. */
  registerAndIgnore(key: bigint): Promise<void>;
  /** REGISTER with service action key 0: this nexus's registration is removed. */
  unregister(key: bigint): Promise<void>;
  reserve(key: bigint, type: ReservationTypeName): Promise<void>;
  release(key: bigint, type: ReservationTypeName): Promise<void>;
  preempt(key: bigint, victim: bigint, type: ReservationTypeName): Promise<void>;
}
