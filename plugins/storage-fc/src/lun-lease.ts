/**
 * Ownership of an FC LUN, on SCSI-3 persistent reservations.
 *
 * On FC, QEMU opens the LUN through the host's own kernel (host_device on the
 * multipath map or a path), so its writes travel over the very I_T nexuses the
 * host registers: unlike iSCSI through QEMU's own libiscsi session, the
 * reservation can be *held* while the VM runs, and the array itself refuses
 * any other host's writes. The lease is: the host's key registered on every
 * path of the LUN, and a Write Exclusive – Registrants Only reservation held
 * by that key. Registrations are per I_T nexus, so every path registers (a
 * path without registration would get RESERVATION CONFLICT when multipath
 * fails over to it); one path reserves.
 *
 * take:  READ KEYS — another key: refused, naming its owner, without registering;
 *        REGISTER AND IGNORE on every path; RESERVE on the first (RESERVATION
 *        CONFLICT: another host is taking it — our registrations go, refused);
 *        READ KEYS until only ours (a contender that lost the RESERVE leaves).
 * give:  RELEASE through the reserving path, then unregister every path (the
 *        holder's unregistration also ends the reservation if the RELEASE
 *        could not be sent).
 * check: our key still registered.
 * A key other than ours is never preempted: a host that stopped answering may
 * still have a QEMU writing, and only an operator knows it is off.
 */
import { MotusError, awaitContendersGone, isReservationConflict, keyHex, type PersistentReservationDevice } from '@motus/sdk';

export const LEASE_TYPE = 'WRITE_EXCLUSIVE_REGISTRANTS_ONLY' as const;

export interface LunRef {
  datastore: string;
  wwn: string;
  lunNumbers: number[];
}

export interface TakeResult {
  commands: number;
  ms: number;
  /** Index of the path that holds the reservation. */
  reservedVia: number;
}

function label(ref: LunRef): string {
  return `LUN ${ref.wwn}${ref.lunNumbers.length ? ` (LUN ${ref.lunNumbers.join('/')})` : ''} of FC datastore ${ref.datastore}`;
}

export function heldError(ref: LunRef, key: bigint, owner: string | undefined, how: string): MotusError {
  const who = owner ? `host ${owner}` : `another host (key ${keyHex(key)})`;
  return new MotusError('MOTUS_E_FC_LUN_HELD', `${label(ref)} is held by ${who}: ${how}`, {
    datastore: ref.datastore, wwn: ref.wwn, lun: ref.lunNumbers[0], key: keyHex(key), ...(owner ? { owner } : {}),
  });
}

async function undo(paths: readonly PersistentReservationDevice[], key: bigint): Promise<void> {
  await Promise.all(paths.map((p) => p.unregister(key).catch(() => undefined)));
}

export async function takeLun(paths: readonly PersistentReservationDevice[], key: bigint, ref: LunRef, ownerOf: (key: bigint) => string | undefined): Promise<TakeResult> {
  if (paths.length === 0) throw new MotusError('MOTUS_E_FC_NO_USABLE_PATH', `${label(ref)} has no active path to register on`, { datastore: ref.datastore, wwn: ref.wwn });
  const t0 = performance.now();
  let commands = 0;
  const first = paths[0]!;
  const before = await first.readKeys();
  commands++;
  const foreign = before.keys.find((k) => k !== key);
  if (foreign !== undefined) throw heldError(ref, foreign, ownerOf(foreign), 'its registration key is on the LUN');
  try {
    // One after the other: a failing path stops the take before the others change.
    for (const p of paths) {
      await p.registerAndIgnore(key);
      commands++;
    }
  } catch (err) {
    await undo(paths, key);
    throw err;
  }
  try {
    await first.reserve(key, LEASE_TYPE);
    commands++;
  } catch (err) {
    await undo(paths, key);
    if (!isReservationConflict(err)) throw err;
    const r = await first.readReservation().catch(() => undefined);
    const k = r?.holder?.key ?? 0n;
    throw heldError(ref, k, ownerOf(k), 'it is taking the LUN at this moment');
  }
  const contenders = await awaitContendersGone(first, key);
  commands += contenders.commands;
  if (contenders.staying !== undefined) {
    await first.release(key, LEASE_TYPE).catch(() => undefined);
    await undo(paths, key);
    throw heldError(ref, contenders.staying, ownerOf(contenders.staying), 'its registration key stayed on the LUN');
  }
  return { commands, ms: performance.now() - t0, reservedVia: 0 };
}

export async function giveLun(paths: readonly PersistentReservationDevice[], key: bigint, reservedVia = 0): Promise<{ commands: number; ms: number }> {
  const t0 = performance.now();
  let commands = 0;
  const holder = paths[reservedVia];
  if (holder) {
    await holder.release(key, LEASE_TYPE).catch((err: unknown) => {
      // Not registered any more (preempted) or the path is gone: the unregistrations below decide.
      if (!isReservationConflict(err) && !(err instanceof MotusError)) throw err;
    });
    commands++;
  }
  const failures: unknown[] = [];
  await Promise.all(
    paths.map(async (p) => {
      try {
        await p.unregister(key);
      } catch (err) {
        // RESERVATION CONFLICT on unregister: this nexus holds no registration (a new path, or preempted).
        if (!isReservationConflict(err)) failures.push(err);
      }
    }),
  );
  commands += paths.length;
  if (failures.length > 0) throw failures[0];
  return { commands, ms: performance.now() - t0 };
}

export type LeaseCheck = { held: true } | { held: false; reason: string };

export async function checkLease(path: PersistentReservationDevice, key: bigint, ownerOf: (key: bigint) => string | undefined): Promise<LeaseCheck> {
  const [{ keys }, reservation] = await Promise.all([path.readKeys(), path.readReservation()]);
  const foreign = keys.filter((k) => k !== key);
  if (!keys.includes(key)) {
    const who = foreign[0] !== undefined ? (ownerOf(foreign[0]) ?? keyHex(foreign[0])) : undefined;
    return { held: false, reason: who ? `our registration was removed and ${who} is registered` : 'our registration was removed' };
  }
  if (reservation.holder && reservation.holder.key !== key) return { held: false, reason: `the reservation is held by ${ownerOf(reservation.holder.key) ?? keyHex(reservation.holder.key)}` };
  if (!reservation.holder) return { held: false, reason: 'our reservation was released by someone else' };
  return { held: true };
}
