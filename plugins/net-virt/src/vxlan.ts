/**
 * VXLAN header (RFC 7348 §5): 8 bytes before the inner Ethernet frame — flags with
 * the I bit (0x08) set, 24 reserved bits, the 24-bit VNI, 8 reserved bits. Pure
 * and total: any datagram decodes to a frame or a typed error.
 */

export const VXLAN_HEADER_BYTES = 8;
export const VXLAN_FLAG_I = 0x08;
export const MAX_VNI = 0xffffff;

export type VxlanDecodeResult =
  | { ok: true; vni: number; frame: Buffer }
  | { ok: false; error: 'short' | 'no-vni-flag' | 'short-inner-frame' };

export function encodeVxlan(vni: number, frame: Buffer): Buffer {
  const out = Buffer.allocUnsafe(VXLAN_HEADER_BYTES + frame.length);
  out.writeUInt32BE(VXLAN_FLAG_I << 24, 0);
  out.writeUInt32BE(((vni & MAX_VNI) << 8) >>> 0, 4);
  frame.copy(out, VXLAN_HEADER_BYTES);
  return out;
}

export function decodeVxlan(datagram: Buffer): VxlanDecodeResult {
  if (datagram.length < VXLAN_HEADER_BYTES) return { ok: false, error: 'short' };
  // Reserved bits are ignored on receipt, as §5 asks; only the I flag is required.
  if ((datagram[0]! & VXLAN_FLAG_I) === 0) return { ok: false, error: 'no-vni-flag' };
  if (datagram.length < VXLAN_HEADER_BYTES + 14) return { ok: false, error: 'short-inner-frame' };
  const vni = datagram.readUInt32BE(4) >>> 8;
  return { ok: true, vni, frame: datagram.subarray(VXLAN_HEADER_BYTES) };
}
