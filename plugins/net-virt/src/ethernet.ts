/**
 * Ethernet II and 802.1Q header parsing. Pure and total: a buffer too short to be
 * an Ethernet frame gives `undefined`, never an exception.
 */

export const ETHERTYPE_VLAN = 0x8100;
export const ETHERTYPE_RARP = 0x8035;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_IPV4 = 0x0800;

export interface EthernetHeader {
  /** Lower-case, colon-separated. */
  dst: string;
  src: string;
  /** 802.1Q VLAN id when the frame is tagged (0 is a priority tag). */
  vlan?: number;
  /** EtherType after any VLAN tag. */
  etherType: number;
  /** Offset of the payload after the (possibly tagged) header. */
  payloadOffset: number;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

export function macToString(buf: Buffer, offset: number): string {
  return `${HEX[buf[offset]!]}:${HEX[buf[offset + 1]!]}:${HEX[buf[offset + 2]!]}:${HEX[buf[offset + 3]!]}:${HEX[buf[offset + 4]!]}:${HEX[buf[offset + 5]!]}`;
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** Canonical form of a MAC written by a person or a spec; undefined when it is not one. */
export function normalizeMac(mac: string): string | undefined {
  const lower = mac.trim().toLowerCase().replace(/-/g, ':');
  return MAC_RE.test(lower) ? lower : undefined;
}

export function macToBytes(mac: string): Buffer {
  return Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
}

export function parseEthernet(frame: Buffer): EthernetHeader | undefined {
  if (frame.length < 14) return undefined;
  const dst = macToString(frame, 0);
  const src = macToString(frame, 6);
  const type = frame.readUInt16BE(12);
  if (type === ETHERTYPE_VLAN) {
    if (frame.length < 18) return undefined;
    return { dst, src, vlan: frame.readUInt16BE(14) & 0x0fff, etherType: frame.readUInt16BE(16), payloadOffset: 18 };
  }
  return { dst, src, etherType: type, payloadOffset: 14 };
}

/** Group bit of the first octet: broadcast and multicast frames are flooded. */
export function isGroupAddress(frame: Buffer): boolean {
  return frame.length > 0 && (frame[0]! & 1) === 1;
}

/** The frame with an 802.1Q tag (priority 0) inserted after the source MAC. */
export function pushVlanTag(frame: Buffer, vlan: number): Buffer {
  const out = Buffer.allocUnsafe(frame.length + 4);
  frame.copy(out, 0, 0, 12);
  out.writeUInt16BE(ETHERTYPE_VLAN, 12);
  out.writeUInt16BE(vlan & 0x0fff, 14);
  frame.copy(out, 16, 12);
  return out;
}

/** The frame without its outer 802.1Q tag; the frame itself when it has none. */
export function popVlanTag(frame: Buffer): Buffer {
  if (frame.length < 18 || frame.readUInt16BE(12) !== ETHERTYPE_VLAN) return frame;
  const out = Buffer.allocUnsafe(frame.length - 4);
  frame.copy(out, 0, 0, 12);
  frame.copy(out, 12, 16);
  return out;
}
