/**
 * Ownership of a LUN, on SCSI-3 persistent reservations.
 *
 * The lease is the owner's *registration*: a LUN belongs to the host whose key
 * is registered on it, and to no one when no key is. The *reservation* (Write
 * Exclusive – Registrants Only) is only the arbiter of a take: RESERVE is atomic
 * at the target, so two hosts racing for a free LUN cannot both win.
 *
 * Why the reservation is not held while the VM runs: QEMU opens the LUN through
 * libiscsi, in a session of its own that never registers a key, and targets like
 * tgt bind registrations to the I_T nexus (session) that made them. Under any
 * persistent reservation type, that unregistered session would get RESERVATION
 * CONFLICT on its own writes. Write Exclusive – Registrants Only is the type used
 * for the arbitration window because reads (other hosts' scans, READ CAPACITY)
 * go on during it, which Exclusive Access would refuse.
 *
 * take:    READ KEYS — another key: refuse (no registration made, so an owner
 *          never sees a passing contender); REGISTER AND IGNORE our key; RESERVE;
 *          READ KEYS until only ours (a contender that lost the RESERVE leaves
 *          at once); RELEASE. A failed RESERVE means another host is taking it.
 * give:    unregister our key (if this session's registration was lost with a
 *          reconnection, register again, PREEMPT our own key's other
 *          registrations, then unregister).
 * reclaim: after a reconnection the new session registers again and drops its
 *          predecessors' registrations (PREEMPT of our own key) — only while no
 *          other key is registered; otherwise the lease is lost.
 * A key other than our own is never preempted by a take: a host that stopped
 * answering may still have a QEMU writing.
 */
import { MotusError, awaitContendersGone, isReservationConflict } from '@motus/sdk';
import type { Lun } from './lun.js';
import { keyHex } from './host-identity.js';

const ARBITER = 'WRITE_EXCLUSIVE_REGISTRANTS_ONLY' as const;

export interface TakeResult {
  /** Commands it took, and how long. */
  commands: number;
  ms: number;
  /** Our own stale registrations (an earlier run of this host) that were dropped. */
  droppedOwnStale: boolean;
}

export interface LunRef {
  datastore: string;
  lun: number;
  naa?: string | undefined;
}

export function heldError(ref: LunRef, key: bigint, owner: string | undefined, how: string): MotusError {
  const who = owner ? `host ${owner}` : `another host (key ${keyHex(key)})`;
  return new MotusError('MOTUS_E_ISCSI_LUN_HELD', `LUN ${ref.lun}${ref.naa ? ` (${ref.naa})` : ''} of iSCSI datastore ${ref.datastore} is held by ${who}: ${how}`, {
    datastore: ref.datastore,
    lun: ref.lun,
    ...(ref.naa ? { naa: ref.naa } : {}),
    key: keyHex(key),
    ...(owner ? { owner } : {}),
  });
}

export async function takeLun(lun: Lun, key: bigint, ref: LunRef, ownerOf: (key: bigint) => string | undefined): Promise<TakeResult> {
  const t0 = performance.now();
  let commands = 0;
  const before = await lun.readKeys();
  commands++;
  const foreign = before.keys.find((k) => k !== key);
  if (foreign !== undefined) throw heldError(ref, foreign, ownerOf(foreign), 'its registration key is on the LUN');
  const droppedOwnStale = before.keys.includes(key);
  await lun.registerAndIgnore(key);
  commands++;
  try {
    await lun.reserve(key, ARBITER);
    commands++;
  } catch (err) {
    if (!isReservationConflict(err)) throw err;
    await lun.unregister(key).catch(() => undefined);
    const r = await lun.readReservation().catch(() => undefined);
    const k = r?.holder?.key ?? 0n;
    throw heldError(ref, k, ownerOf(k), 'it is taking the LUN at this moment');
  }
  try {
    if (droppedOwnStale) {
      // Registrations of our key made by earlier sessions (tgt keeps them after the session ends).
      await lun.preempt(key, key, ARBITER);
      commands++;
    }
    const contenders = await awaitContendersGone(lun, key);
    commands += contenders.commands;
    if (contenders.staying !== undefined) {
      await lun.release(key, ARBITER).catch(() => undefined);
      await lun.unregister(key).catch(() => undefined);
      throw heldError(ref, contenders.staying, ownerOf(contenders.staying), 'its registration key stayed on the LUN');
    }
    await lun.release(key, ARBITER);
    commands++;
  } catch (err) {
    if (!(err instanceof MotusError && err.code === 'MOTUS_E_ISCSI_LUN_HELD')) {
      await lun.release(key, ARBITER).catch(() => undefined);
      await lun.unregister(key).catch(() => undefined);
    }
    throw err;
  }
  return { commands, ms: performance.now() - t0, droppedOwnStale };
}

export async function giveLun(lun: Lun, key: bigint): Promise<{ commands: number; ms: number }> {
  const t0 = performance.now();
  try {
    await lun.unregister(key);
    return { commands: 1, ms: performance.now() - t0 };
  } catch (err) {
    if (!isReservationConflict(err)) throw err;
  }
  // This session's registration went with an earlier connection: register again to speak for our key.
  await lun.registerAndIgnore(key);
  await lun.preempt(key, key, ARBITER);
  await lun.unregister(key);
  return { commands: 4, ms: performance.now() - t0 };
}

export type LeaseCheck = { held: true; foreign: bigint[] } | { held: false; reason: string; foreign: bigint[] };

/** Whether our key is still registered on the LUN. */
export async function checkLease(lun: Lun, key: bigint): Promise<LeaseCheck> {
  const { keys } = await lun.readKeys();
  const foreign = keys.filter((k) => k !== key);
  if (keys.includes(key)) return { held: true, foreign };
  return { held: false, reason: foreign.length > 0 ? `our registration was removed and key ${keyHex(foreign[0]!)} is registered` : 'our registration was removed', foreign };
}

/**
 * After a reconnection: registers this session again. Another key on the LUN
 * means the lease is lost. No key at all means the target forgot its
 * registrations (tgt keeps them in memory only, so a restarted tgtd has none):
 * nobody can have taken the LUN without registering, so it is taken again
 * through the arbiter like a free LUN.
 */
export async function reclaimLun(lun: Lun, key: bigint, ref: LunRef, ownerOf: (key: bigint) => string | undefined): Promise<LeaseCheck> {
  const { keys } = await lun.readKeys();
  const foreign = keys.filter((k) => k !== key);
  if (foreign.length > 0) return { held: false, reason: `key ${keyHex(foreign[0]!)} was registered while the connection was down`, foreign };
  if (!keys.includes(key)) {
    try {
      await takeLun(lun, key, ref, ownerOf);
    } catch (err) {
      if (err instanceof MotusError && err.code === 'MOTUS_E_ISCSI_LUN_HELD') return { held: false, reason: `the target forgot our registration and ${err.message}`, foreign };
      throw err;
    }
    return { held: true, foreign };
  }
  await lun.registerAndIgnore(key);
  await lun.preempt(key, key, ARBITER);
  return { held: true, foreign };
}
