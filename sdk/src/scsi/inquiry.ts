import { type ScsiResult, badResponse, ok } from './errors.js';

export const DeviceType: Record<number, string> = {
  0x00: 'direct-access block device',
  0x01: 'sequential-access device',
  0x05: 'CD/DVD device',
  0x07: 'optical memory device',
  0x08: 'media changer',
  0x0c: 'storage array controller',
  0x0d: 'enclosure services device',
  0x1f: 'unknown or no device type',
};

export interface StandardInquiry {
  /** 0: connected, 1: supported but not connected, 3: no device at this LUN. */
  peripheralQualifier: number;
  peripheralDeviceType: number;
  deviceTypeName: string;
  removable: boolean;
  /** The SPC version the device claims (5 = SPC-3, 6 = SPC-4). */
  version: number;
  responseDataFormat: number;
  hiSup: boolean;
  tpgs: number;
  threePc: boolean;
  protect: boolean;
  multiP: boolean;
  cmdQue: boolean;
  vendor: string;
  product: string;
  revision: string;
  versionDescriptors: number[];
}

function ascii(buf: Buffer, start: number, end: number): string {
  return buf.subarray(Math.min(start, buf.length), Math.min(end, buf.length)).toString('latin1').replace(/\0+$/, '').trim();
}

/** Parses standard INQUIRY data; needs the first 36 bytes (SPC-4 6.6.2). */
export function parseStandardInquiry(buf: Buffer): ScsiResult<StandardInquiry> {
  if (buf.length < 36) return badResponse('standard INQUIRY data: shorter than 36 bytes', { length: buf.length });
  const type = buf[0]! & 0x1f;
  const end = Math.min(buf.length, 5 + buf[4]!);
  const versionDescriptors: number[] = [];
  for (let at = 58; at + 2 <= Math.min(end, 74); at += 2) {
    const v = buf.readUInt16BE(at);
    if (v !== 0) versionDescriptors.push(v);
  }
  return ok({
    peripheralQualifier: buf[0]! >> 5,
    peripheralDeviceType: type,
    deviceTypeName: DeviceType[type] ?? `device type 0x${type.toString(16)}`,
    removable: (buf[1]! & 0x80) !== 0,
    version: buf[2]!,
    responseDataFormat: buf[3]! & 0x0f,
    hiSup: (buf[3]! & 0x10) !== 0,
    tpgs: (buf[5]! >> 4) & 0x03,
    threePc: (buf[5]! & 0x08) !== 0,
    protect: (buf[5]! & 0x01) !== 0,
    multiP: (buf[6]! & 0x10) !== 0,
    cmdQue: (buf[7]! & 0x02) !== 0,
    vendor: ascii(buf, 8, 16),
    product: ascii(buf, 16, 32),
    revision: ascii(buf, 32, 36),
    versionDescriptors,
  });
}

/** The VPD page header, and the page body clipped to what both the header and the buffer hold. */
function vpdBody(buf: Buffer, page: number): ScsiResult<Buffer> {
  if (buf.length < 4) return badResponse(`VPD page 0x${page.toString(16)}: shorter than 4 bytes`, { length: buf.length });
  if (buf[1] !== page) return badResponse(`VPD page 0x${page.toString(16)}: the device sent page 0x${buf[1]!.toString(16)}`);
  const length = buf.readUInt16BE(2);
  if (4 + length > buf.length) return badResponse(`VPD page 0x${page.toString(16)}: page length ${length} runs past the ${buf.length} bytes received`);
  return ok(buf.subarray(4, 4 + length));
}

export function parseSupportedVpdPages(buf: Buffer): ScsiResult<number[]> {
  const body = vpdBody(buf, 0x00);
  if (!body.ok) return body;
  return ok([...body.value]);
}

export function parseUnitSerialNumber(buf: Buffer): ScsiResult<string> {
  const body = vpdBody(buf, 0x80);
  if (!body.ok) return body;
  return ok(body.value.toString('latin1').replace(/\0+$/, '').trim());
}

export const DesignatorType = {
  VENDOR_SPECIFIC: 0x0,
  T10_VENDOR_ID: 0x1,
  EUI64: 0x2,
  NAA: 0x3,
  RELATIVE_TARGET_PORT: 0x4,
  TARGET_PORT_GROUP: 0x5,
  LOGICAL_UNIT_GROUP: 0x6,
  MD5_LOGICAL_UNIT: 0x7,
  SCSI_NAME_STRING: 0x8,
} as const;

export type DesignatorKind = 'vendor-specific' | 't10' | 'eui64' | 'naa' | 'relative-target-port' | 'target-port-group' | 'logical-unit-group' | 'md5' | 'scsi-name' | 'reserved';

const KIND_BY_TYPE: DesignatorKind[] = ['vendor-specific', 't10', 'eui64', 'naa', 'relative-target-port', 'target-port-group', 'logical-unit-group', 'md5', 'scsi-name'];

export type Association = 'logical-unit' | 'target-port' | 'target-device' | 'reserved';
const ASSOCIATIONS: Association[] = ['logical-unit', 'target-port', 'target-device', 'reserved'];

export interface Designator {
  kind: DesignatorKind;
  association: Association;
  /** 1 binary, 2 ASCII, 3 UTF-8. */
  codeSet: number;
  protocolIdentifier?: number;
  raw: Buffer;
  /**
   * A printable form: `naa.<hex>` for NAA, `eui.<hex>` for EUI-64, the text for
   * T10 vendor ids and SCSI name strings, hex for the rest.
   */
  id: string;
  /** NAA only: the NAA field (2, 3, 5 or 6). */
  naaType?: number;
  /** T10 only: the 8-byte vendor identification. */
  vendor?: string;
  /** Relative target port / port group ids. */
  number?: number;
}

export interface DeviceIdentification {
  designators: Designator[];
  /** The first NAA designator of the logical unit: what hosts agree a LUN by. */
  naa?: string;
}

function describe(type: number, codeSet: number, raw: Buffer): Pick<Designator, 'id' | 'naaType' | 'vendor' | 'number'> {
  const text = (): string => raw.toString(codeSet === 3 ? 'utf8' : 'latin1').replace(/\0+$/, '').trim();
  switch (type) {
    case DesignatorType.NAA:
      return { id: `naa.${raw.toString('hex')}`, ...(raw.length > 0 ? { naaType: raw[0]! >> 4 } : {}) };
    case DesignatorType.EUI64:
      return { id: `eui.${raw.toString('hex')}` };
    case DesignatorType.T10_VENDOR_ID:
      return { id: text(), vendor: raw.subarray(0, 8).toString('latin1').trim() };
    case DesignatorType.SCSI_NAME_STRING:
      return { id: text() };
    case DesignatorType.RELATIVE_TARGET_PORT:
    case DesignatorType.TARGET_PORT_GROUP:
    case DesignatorType.LOGICAL_UNIT_GROUP:
      return raw.length >= 4 ? { id: String(raw.readUInt16BE(2)), number: raw.readUInt16BE(2) } : { id: raw.toString('hex') };
    default:
      return { id: codeSet === 2 || codeSet === 3 ? text() : raw.toString('hex') };
  }
}

/** Parses the Device Identification VPD page (0x83) into its designators. */
export function parseDeviceIdentification(buf: Buffer): ScsiResult<DeviceIdentification> {
  const body = vpdBody(buf, 0x83);
  if (!body.ok) return body;
  const page = body.value;
  const designators: Designator[] = [];
  let at = 0;
  while (at < page.length) {
    if (at + 4 > page.length) return badResponse('VPD page 0x83: truncated designation descriptor header', { offset: at + 4 });
    const len = page[at + 3]!;
    if (at + 4 + len > page.length) return badResponse('VPD page 0x83: designator runs past the page', { offset: at + 4, length: len });
    const codeSet = page[at]! & 0x0f;
    const piv = (page[at + 1]! & 0x80) !== 0;
    const type = page[at + 1]! & 0x0f;
    const raw = Buffer.from(page.subarray(at + 4, at + 4 + len));
    const designator: Designator = {
      kind: KIND_BY_TYPE[type] ?? 'reserved',
      association: ASSOCIATIONS[(page[at + 1]! >> 4) & 0x03]!,
      codeSet,
      raw,
      ...describe(type, codeSet, raw),
    };
    if (piv) designator.protocolIdentifier = page[at]! >> 4;
    designators.push(designator);
    at += 4 + len;
  }
  const naa = designators.find((d) => d.kind === 'naa' && d.association === 'logical-unit')?.id;
  return ok(naa === undefined ? { designators } : { designators, naa });
}
