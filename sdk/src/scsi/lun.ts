import { type ScsiResult, badResponse, ok } from './errors.js';

/**
 * SAM LUN structure (8 bytes): single-level peripheral addressing below 256,
 * flat space addressing below 16384, as initiators and targets commonly agree.
 */
export function encodeLun(lun: number): Buffer {
  const out = Buffer.alloc(8);
  if (!Number.isInteger(lun) || lun < 0 || lun > 0x3fff) throw new RangeError(`LUN ${lun} outside 0..16383`);
  if (lun < 256) out[1] = lun;
  else {
    out[0] = 0x40 | (lun >> 8);
    out[1] = lun & 0xff;
  }
  return out;
}

export interface DecodedLun {
  /** The LUN number when the address is single-level peripheral or flat; undefined for other methods. */
  lun?: number;
  addressMethod: 'peripheral' | 'flat' | 'logical-unit' | 'extended';
  raw: Buffer;
}

export function decodeLun(raw: Buffer): DecodedLun {
  const b = Buffer.alloc(8);
  raw.copy(b, 0, 0, Math.min(8, raw.length));
  const method = b[0]! >> 6;
  const rest = b.subarray(2).every((x) => x === 0);
  if (method === 0) return { addressMethod: 'peripheral', raw: b, ...(b[0] === 0 && rest ? { lun: b[1]! } : {}) };
  if (method === 1) return { addressMethod: 'flat', raw: b, ...(rest ? { lun: ((b[0]! & 0x3f) << 8) | b[1]! } : {}) };
  return { addressMethod: method === 2 ? 'logical-unit' : 'extended', raw: b };
}

/** REPORT LUNS parameter data; `truncated` says the list did not fit the allocation length. */
export function parseReportLuns(buf: Buffer): ScsiResult<{ luns: DecodedLun[]; truncated: boolean }> {
  if (buf.length < 8) return badResponse('REPORT LUNS data: shorter than 8 bytes', { length: buf.length });
  const listLength = buf.readUInt32BE(0);
  if (listLength % 8 !== 0) return badResponse('REPORT LUNS data: list length is not a multiple of 8', { listLength });
  const available = Math.min(listLength, buf.length - 8);
  const luns: DecodedLun[] = [];
  for (let at = 8; at + 8 <= 8 + available; at += 8) luns.push(decodeLun(buf.subarray(at, at + 8)));
  return ok({ luns, truncated: available < listLength });
}
