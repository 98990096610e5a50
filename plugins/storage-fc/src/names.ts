/**
 * The names Linux gives FC objects, parsed and normalized in one place: port
 * WWNs (`0x500143802426baf4` in sysfs), LUN identities (sysfs `wwid`
 * `naa.6001405…`, scsi_id/multipath `36001405…`, udev `wwn-0x6001405…`) and
 * LUN numbers (the kernel's integer, the SAM 8-byte LUN, udev's by-path form
 * which switches to `lun-0x…` from LUN 256 on).
 */
import { decodeLun, type DecodedLun } from '@motus/sdk';
import type { Read } from './sysfs.js';

/** A port's WWN as sysfs writes it: `0x` and 16 lowercase hex digits; colons accepted on input. */
export function parsePortWwn(text: string): Read<string> {
  const hex = text.trim().toLowerCase().replace(/^0x/, '').replace(/:/g, '');
  if (!/^[0-9a-f]{16}$/.test(hex)) return { ok: false, reason: `'${text.slice(0, 40)}' is not a 64-bit port WWN` };
  if (/^0+$/.test(hex)) return { ok: false, reason: 'port WWN is zero (the port has no name yet)' };
  return { ok: true, value: `0x${hex}` };
}

export interface LunIdentity {
  /** scsi_id's form, which multipath and dm-uuid use: NAA type digit '3' then the id, e.g. `36001405…`. */
  wwid: string;
  /** udev's by-id form for NAA ids, e.g. `0x6001405…`; absent for T10/EUI identities. */
  wwn?: string;
}

const NAA = /^[0-9a-f]{16}$|^[0-9a-f]{32}$/;

function naaLength(hex: string): boolean {
  // NAA 5 (IEEE registered) is 64 bits; NAA 6 (registered extended) is 128; 1, 2 and 3 are 64.
  const kind = hex[0];
  if (kind === '6') return hex.length === 32;
  return (kind === '1' || kind === '2' || kind === '3' || kind === '5') && hex.length === 16;
}

/** The `wwid` attribute of a SCSI device (`naa.…`, `eui.…`, `t10.…`). */
export function parseSysfsWwid(text: string): Read<LunIdentity> {
  const t = text.trim();
  const naa = /^naa\.([0-9a-fA-F]+)$/.exec(t);
  if (naa) {
    const hex = naa[1]!.toLowerCase();
    if (!NAA.test(hex) || !naaLength(hex)) return { ok: false, reason: `wwid '${t.slice(0, 48)}' is not a valid NAA identifier` };
    return { ok: true, value: { wwid: `3${hex}`, wwn: `0x${hex}` } };
  }
  const eui = /^eui\.([0-9a-fA-F]{16}|[0-9a-fA-F]{24}|[0-9a-fA-F]{32})$/.exec(t);
  if (eui) return { ok: true, value: { wwid: `2${eui[1]!.toLowerCase()}` } };
  const t10 = /^t10\.([\x21-\x7e][\x20-\x7e]*)$/.exec(t);
  if (t10) return { ok: true, value: { wwid: `1${t10[1]!.replace(/ +/g, '_')}` } };
  return { ok: false, reason: `wwid '${t.slice(0, 48)}' is neither naa., eui. nor t10.` };
}

/**
 * A LUN's WWN as a site file or a VM disk may give it — `0x6001405…`,
 * `naa.6001405…`, `wwn-0x6001405…` or the multipath WWID `36001405…` — in
 * udev's by-id form `0x6001405…`.
 */
export function normalizeLunWwn(text: string): Read<string> {
  const t = text.trim().toLowerCase();
  let hex: string | undefined;
  if (/^(wwn-)?0x[0-9a-f]+$/.test(t)) hex = t.replace(/^(wwn-)?0x/, '');
  else if (/^naa\.[0-9a-f]+$/.test(t)) hex = t.slice(4);
  else if (/^3[0-9a-f]+$/.test(t) && (t.length === 17 || t.length === 33)) hex = t.slice(1);
  if (hex === undefined || !NAA.test(hex) || !naaLength(hex)) {
    return { ok: false, reason: `'${text.slice(0, 48)}' is not a LUN WWN (0x6…/0x5… NAA id, naa.…, wwn-0x… or a 3… multipath WWID)` };
  }
  return { ok: true, value: `0x${hex}` };
}

/** The multipath WWID (`3…`) of a by-id WWN (`0x…`). */
export function wwidOfWwn(wwn: string): string {
  return `3${wwn.replace(/^0x/, '')}`;
}

/** The kernel's LUN integer as the 8-byte SAM LUN (the kernel's int_to_scsilun layout). */
export function linuxLunToSam(lun: number): Buffer {
  const out = Buffer.alloc(8);
  let v = BigInt(lun);
  for (let i = 0; i < 8; i += 2) {
    out[i] = Number((v >> 8n) & 0xffn);
    out[i + 1] = Number(v & 0xffn);
    v >>= 16n;
  }
  return out;
}

/** The LUN number the storage array gives (decoded by the SDK's SAM LUN decoder) of the kernel's LUN integer. */
export function samLunOf(linuxLun: number): DecodedLun {
  return decodeLun(linuxLunToSam(linuxLun));
}

/** The kernel's LUN integer of an array's LUN number (single-level peripheral below 256, flat space above). */
export function linuxLunOf(lun: number): number {
  if (lun < 256) return lun;
  // Flat space addressing: first two bytes 0x40|hi, lo; the kernel folds bytes 0-1 into the low 16 bits.
  return ((0x40 | (lun >> 8)) << 8) | (lun & 0xff);
}

/** udev path_id's LUN suffix: `lun-<n>` below 256, `lun-0x<16 hex digits>` from 256 on. */
export function byPathLun(linuxLun: number): string {
  if (linuxLun < 256) return `lun-${linuxLun}`;
  const lo = linuxLun & 0xffff;
  const hi = Math.floor(linuxLun / 0x10000) & 0xffff;
  return `lun-0x${lo.toString(16).padStart(4, '0')}${hi.toString(16).padStart(4, '0')}00000000`;
}

export interface ByPathName {
  /** The PCI (or other bus) prefix of the HBA, e.g. `pci-0000:00:03.0`. */
  bus: string;
  /** The target port's WWN. */
  targetWwpn: string;
  /** The kernel's LUN integer. */
  linuxLun: number;
}

/** Parses a by-path link name of an FC LUN (`pci-…-fc-0x<wwpn>-lun-<n>`); partitions and other transports are not. */
export function parseByPath(name: string): ByPathName | undefined {
  const m = /^(.+)-fc-(0x[0-9a-fA-F]{16})-lun-(\d+|0x[0-9a-fA-F]{16})$/.exec(name);
  if (!m) return undefined;
  const wwpn = parsePortWwn(m[2]!);
  if (!wwpn.ok) return undefined;
  let linuxLun: number;
  if (m[3]!.startsWith('0x')) {
    const h = m[3]!.slice(2);
    if (h.slice(8) !== '00000000') return undefined;
    linuxLun = parseInt(h.slice(0, 4), 16) + parseInt(h.slice(4, 8), 16) * 0x10000;
  } else {
    linuxLun = Number(m[3]);
    if (linuxLun >= 256) return undefined;
  }
  return { bus: m[1]!, targetWwpn: wwpn.value, linuxLun };
}

/** `H:C:T:L` of a SCSI device name. */
export function parseHctl(name: string): { host: number; channel: number; target: number; lun: number } | undefined {
  const m = /^(\d+):(\d+):(\d+):(\d+)$/.exec(name);
  if (!m) return undefined;
  const [host, channel, target, lun] = [m[1], m[2], m[3], m[4]].map(Number) as [number, number, number, number];
  if (![host, channel, target, lun].every(Number.isSafeInteger)) return undefined;
  return { host, channel, target, lun };
}

/** fc_host `speed` ("16 Gbit", "8 Gbit/s", "unknown") in Gbit/s; undefined when unknown. */
export function parseSpeed(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*Gbit/i.exec(text.trim());
  return m ? Number(m[1]) : undefined;
}
