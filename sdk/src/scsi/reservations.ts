import { ReservationType, type ReservationTypeName } from './cdb.js';
import { type ScsiResult, badResponse, ok } from './errors.js';

export interface RegisteredKeys {
  generation: number;
  keys: bigint[];
}

export interface Reservation {
  generation: number;
  /** Absent when no reservation is held. */
  holder?: { key: bigint; type: ReservationTypeName | 'unknown'; typeCode: number; scope: number };
}

function header(buf: Buffer, what: string): ScsiResult<{ generation: number; length: number }> {
  if (buf.length < 8) return badResponse(`${what}: shorter than 8 bytes`, { length: buf.length });
  return ok({ generation: buf.readUInt32BE(0), length: buf.readUInt32BE(4) });
}

/** PERSISTENT RESERVE IN / READ KEYS; keys beyond the received bytes are not invented. */
export function parseReadKeys(buf: Buffer): ScsiResult<RegisteredKeys & { truncated: boolean }> {
  const h = header(buf, 'READ KEYS data');
  if (!h.ok) return h;
  if (h.value.length % 8 !== 0) return badResponse('READ KEYS data: additional length is not a multiple of 8', { length: h.value.length });
  const available = Math.min(h.value.length, buf.length - 8);
  const keys: bigint[] = [];
  for (let at = 8; at + 8 <= 8 + available; at += 8) keys.push(buf.readBigUInt64BE(at));
  return ok({ generation: h.value.generation, keys, truncated: available < h.value.length });
}

export function reservationTypeName(code: number): ReservationTypeName | 'unknown' {
  const entry = Object.entries(ReservationType).find(([, v]) => v === code);
  return entry ? (entry[0] as ReservationTypeName) : 'unknown';
}

/** PERSISTENT RESERVE IN / READ RESERVATION. */
export function parseReadReservation(buf: Buffer): ScsiResult<Reservation> {
  const h = header(buf, 'READ RESERVATION data');
  if (!h.ok) return h;
  if (h.value.length === 0) return ok({ generation: h.value.generation });
  if (h.value.length < 16 || buf.length < 24) return badResponse('READ RESERVATION data: reservation descriptor truncated', { length: h.value.length, received: buf.length });
  const typeCode = buf[21]! & 0x0f;
  return ok({
    generation: h.value.generation,
    holder: { key: buf.readBigUInt64BE(8), type: reservationTypeName(typeCode), typeCode, scope: buf[21]! >> 4 },
  });
}
