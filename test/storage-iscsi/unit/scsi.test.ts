import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import {
  compareAndWrite, decodeLun, encodeLun, inquiry, parseDeviceIdentification, parseReadCapacity16, parseReadKeys, parseReadReservation, parseReportLuns,
  parseSense, parseStandardInquiry, parseSupportedVpdPages, parseUnitSerialNumber, persistentReserveIn, persistentReserveOut, PrInAction, read16,
  readCapacity16, reportLuns, ScsiError, statusError, synchronizeCache10, synchronizeCache16, testUnitReady, write16, type ScsiResult,
} from '@motus/sdk';
import { prng, randomBytes } from '../../support/index.js';

// Real answers from tgt 1.0.85 (LUN 1 of a 64 MiB file-backed target), recorded by support/capture-traffic.ts.
const fixture = JSON.parse(readFileSync(fileURLToPath(new URL('../../../storage-iscsi/fixtures/tgt-traffic.json', import.meta.url)), 'utf8')) as { scsi: Record<string, string> };
const TGT_INQUIRY = Buffer.from(fixture.scsi['inquiry']!, 'hex');
const TGT_VPD00 = Buffer.from(fixture.scsi['vpd00']!, 'hex');
const TGT_VPD80 = Buffer.from(fixture.scsi['vpd80']!, 'hex');
const TGT_VPD83 = Buffer.from(fixture.scsi['vpd83']!, 'hex');
const TGT_CAPACITY = Buffer.from(fixture.scsi['readCapacity16']!, 'hex');
const TGT_KEYS = Buffer.from(fixture.scsi['readKeys']!, 'hex');

function never<T>(parse: (b: Buffer) => ScsiResult<T>, sample: Buffer, seed: number): void {
  for (let cut = 0; cut <= sample.length; cut++) {
    const r = parse(sample.subarray(0, cut));
    if (!r.ok) expect(r.error).to.be.instanceOf(ScsiError);
  }
  const rand = prng(seed);
  for (let i = 0; i < 3000; i++) {
    const b = rand() < 0.5 ? randomBytes(rand, Math.floor(rand() * 300)) : Buffer.from(sample);
    if (b.length > 0) for (let k = 0; k < 4; k++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
    const r = parse(b);
    if (!r.ok) expect(r.error.code).to.match(/^MOTUS_E_SCSI_/);
  }
}

describe('SCSI CDB builders', () => {
  it('build the CDBs of SPC-4/SBC-3', () => {
    expect(testUnitReady().cdb.toString('hex')).to.equal('000000000000');
    expect(inquiry().cdb.toString('hex')).to.equal('12000000ff00');
    expect(inquiry(0x83, 1024).cdb.toString('hex')).to.equal('120183040000');
    expect(reportLuns(4096).cdb.toString('hex')).to.equal('a00000000000000010000000');
    expect(readCapacity16().cdb.toString('hex')).to.equal('9e100000000000000000000000200000');
    expect(read16(0x123456789an, 8, 512).cdb.toString('hex')).to.equal('880000000012345678 9a0000000800 00'.replace(/ /g, ''));
    expect(read16(1, 8, 512).dataIn).to.equal(4096);
    const w = write16(7, Buffer.alloc(1024), 512, { fua: true });
    expect(w.cdb.toString('hex')).to.equal('8a080000000000000007000000020000');
    expect(w.dataOut!.length).to.equal(1024);
    expect(() => write16(0, Buffer.alloc(100), 512)).to.throw(RangeError);
    expect(synchronizeCache10().cdb.toString('hex')).to.equal('35000000000000000000');
    expect(synchronizeCache16(5, 10).cdb.toString('hex')).to.equal('9100000000000000000500000 00a0000'.replace(/ /g, ''));
    expect(persistentReserveIn(PrInAction.READ_RESERVATION).cdb.toString('hex')).to.equal('5e010000000000200000');
    const caw = compareAndWrite(3, Buffer.alloc(512, 1), Buffer.alloc(512, 2), 512);
    expect(caw.cdb[0]).to.equal(0x89);
    expect(caw.cdb[13]).to.equal(1);
    expect(caw.dataOut!.length).to.equal(1024);
  });

  it('builds PERSISTENT RESERVE OUT with its 24-byte parameter list', () => {
    const c = persistentReserveOut('PREEMPT', { key: 0xbn, serviceActionKey: 0xan, type: 'WRITE_EXCLUSIVE_REGISTRANTS_ONLY' });
    expect(c.cdb.toString('hex')).to.equal('5f040500000000001800');
    expect(c.cdb[1]).to.equal(0x04);
    expect(c.cdb[2]).to.equal(0x05);
    expect(c.cdb.readUInt32BE(5)).to.equal(24);
    expect(c.dataOut!.toString('hex')).to.equal('000000000000000b000000000000000a' + '0'.repeat(16));
    const types = ['WRITE_EXCLUSIVE', 'EXCLUSIVE_ACCESS', 'WRITE_EXCLUSIVE_REGISTRANTS_ONLY', 'EXCLUSIVE_ACCESS_REGISTRANTS_ONLY'] as const;
    expect(types.map((t) => persistentReserveOut('RESERVE', { key: 1n, type: t }).cdb[2])).to.deep.equal([1, 3, 5, 6]);
    expect(persistentReserveOut('REGISTER_AND_IGNORE_EXISTING_KEY', { serviceActionKey: 5n }).cdb[1]).to.equal(6);
    expect(persistentReserveOut('CLEAR', { key: 5n }).cdb[1]).to.equal(3);
    expect(persistentReserveOut('RELEASE', { key: 5n, type: 'EXCLUSIVE_ACCESS' }).cdb[1]).to.equal(2);
    expect(persistentReserveOut('REGISTER', { serviceActionKey: 5n, aptpl: true }).dataOut![20]).to.equal(1);
  });

  it('encodes LUNs with peripheral and flat addressing and decodes them back', () => {
    expect(encodeLun(1).toString('hex')).to.equal('0001000000000000');
    expect(encodeLun(300).toString('hex')).to.equal('412c000000000000');
    for (const n of [0, 1, 255, 256, 16383]) expect(decodeLun(encodeLun(n)).lun).to.equal(n);
    expect(decodeLun(Buffer.from('c000000000000000', 'hex')).addressMethod).to.equal('extended');
    expect(decodeLun(Buffer.from([0, 1])).lun).to.equal(1);
  });
});

describe('SCSI response parsers', () => {
  it('parse tgt standard INQUIRY data', () => {
    const r = parseStandardInquiry(TGT_INQUIRY);
    expect(r.ok && r.value).to.deep.include({ peripheralDeviceType: 0, vendor: 'IET', product: 'VIRTUAL-DISK', revision: '0001', version: 5, cmdQue: true, hiSup: true, responseDataFormat: 2 });
    expect(r.ok && r.value.versionDescriptors).to.deep.equal([0x04c0, 0x0960, 0x0300]);
  });

  it('parse VPD pages 0x00, 0x80 and 0x83 with their designators', () => {
    const pages = parseSupportedVpdPages(TGT_VPD00);
    expect(pages.ok && pages.value).to.deep.equal([0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2]);
    const serial = parseUnitSerialNumber(TGT_VPD80);
    expect(serial.ok && serial.value).to.equal('beaf11');
    const id = parseDeviceIdentification(TGT_VPD83);
    expect(id.ok).to.equal(true);
    if (!id.ok) return;
    expect(id.value.designators.map((d) => [d.kind, d.association, d.codeSet])).to.deep.equal([['t10', 'logical-unit', 2], ['naa', 'logical-unit', 1], ['naa', 'logical-unit', 1]]);
    expect(id.value.designators[0]).to.deep.include({ id: 'IET     00010001', vendor: 'IET' });
    expect(id.value.naa).to.equal('naa.3000000100000001');
    expect(id.value.designators[1]!.naaType).to.equal(3);
    expect(id.value.designators[2]).to.deep.include({ id: 'naa.60000000000000000e00000000010001', naaType: 6 });
  });

  it('parse EUI-64 and SCSI name string designators, and refuse a page of another code', () => {
    const page = Buffer.from([0x00, 0x83, 0x00, 28, 0x01, 0x02, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8, 0x53, 0xa8, 0x00, 0x0c, ...Buffer.from('iqn.a:b\0\0\0\0\0')]);
    const r = parseDeviceIdentification(page);
    expect(r.ok).to.equal(true);
    if (!r.ok) return;
    expect(r.value.designators[0]).to.deep.include({ kind: 'eui64', id: 'eui.0102030405060708' });
    expect(r.value.designators[1]).to.deep.include({ kind: 'scsi-name', id: 'iqn.a:b', association: 'target-device', protocolIdentifier: 5 });
    expect(parseDeviceIdentification(TGT_VPD80).ok).to.equal(false);
  });

  it('parse READ CAPACITY(16)', () => {
    const r = parseReadCapacity16(TGT_CAPACITY);
    expect(r.ok && r.value).to.deep.include({ lastLba: 131071n, blockSize: 512, bytes: 67108864n, logicalBlocksPerPhysicalExponent: 3 });
  });

  it('parse REPORT LUNS, PR READ KEYS and READ RESERVATION', () => {
    const luns = parseReportLuns(Buffer.from('00000010000000000000000000000000' + '0001000000000000', 'hex'));
    expect(luns.ok && luns.value.luns.map((l) => l.lun)).to.deep.equal([0, 1]);
    const truncated = parseReportLuns(Buffer.from('00000018000000000000000000000000', 'hex'));
    expect(truncated.ok && truncated.value.truncated).to.equal(true);
    const keys = parseReadKeys(Buffer.from('00000007000000100000000000a11ce00000000000000b0b', 'hex'));
    expect(keys.ok && keys.value).to.deep.include({ generation: 7, keys: [0xa11ce0n, 0xb0bn] });
    const real = parseReadKeys(TGT_KEYS);
    expect(real.ok && real.value.keys).to.deep.equal([0x1234n]);
    const none = parseReadReservation(Buffer.from('0000000300000000', 'hex'));
    expect(none.ok && none.value).to.deep.equal({ generation: 3 });
    const held = parseReadReservation(Buffer.from('000000040000001000000000000000aa00000000000500000000', 'hex'));
    expect(held.ok && held.value.holder).to.deep.equal({ key: 0xaan, type: 'WRITE_EXCLUSIVE_REGISTRANTS_ONLY', typeCode: 5, scope: 0 });
    expect(parseReportLuns(Buffer.from('0000000900000000', 'hex')).ok).to.equal(false);
  });

  it('are total: every truncation and garbage gives a value or a typed error, never a throw', () => {
    never(parseStandardInquiry, TGT_INQUIRY, 1);
    never(parseSupportedVpdPages, TGT_VPD00, 2);
    never(parseUnitSerialNumber, TGT_VPD80, 3);
    never(parseDeviceIdentification, TGT_VPD83, 4);
    never(parseReadCapacity16, TGT_CAPACITY, 5);
    never(parseReportLuns, Buffer.from('00000010000000000000000000000000' + '0001000000000000', 'hex'), 6);
    never(parseReadKeys, Buffer.from('00000007000000100000000000a11ce00000000000000b0b', 'hex'), 7);
    never(parseReadReservation, Buffer.from('000000040000001000000000000000aa00000000000500000000', 'hex'), 8);
    never(parseSense, Buffer.from('70000500000000 0a00000000210000000000'.replace(/ /g, ''), 'hex'), 9);
    never(parseSense, Buffer.from('720b1d000000000c000a800000000000000004000000', 'hex'), 10);
  });
});

describe('sense data and status', () => {
  const fixed = (key: number, asc: number, ascq: number, info?: number): Buffer => {
    const b = Buffer.alloc(18);
    b[0] = info === undefined ? 0x70 : 0xf0;
    b[2] = key;
    if (info !== undefined) b.writeUInt32BE(info, 3);
    b[7] = 10;
    b[12] = asc;
    b[13] = ascq;
    return b;
  };

  it('decode fixed and descriptor sense with the information field', () => {
    const f = parseSense(fixed(3, 0x11, 0, 4096));
    expect(f.ok && f.value).to.deep.equal({ format: 'fixed', current: true, key: 3, asc: 0x11, ascq: 0, information: 4096n });
    const d = parseSense(Buffer.from('720e1d000000000c000a80000000000000000200', 'hex'));
    expect(d.ok && d.value).to.deep.include({ format: 'descriptor', key: 0x0e, asc: 0x1d, information: 512n });
  });

  it('turn each sense key into an error a person understands', () => {
    const cases: Array<[Buffer, string, string]> = [
      [fixed(2, 0x04, 0x01), 'MOTUS_E_SCSI_NOT_READY', 'NOT READY, logical unit is in process of becoming ready'],
      [fixed(3, 0x11, 0x00, 77), 'MOTUS_E_SCSI_MEDIUM_ERROR', 'MEDIUM ERROR, unrecovered read error'],
      [fixed(5, 0x20, 0x00), 'MOTUS_E_SCSI_ILLEGAL_REQUEST', 'ILLEGAL REQUEST, invalid command operation code'],
      [fixed(5, 0x24, 0x00), 'MOTUS_E_SCSI_ILLEGAL_REQUEST', 'ILLEGAL REQUEST, invalid field in CDB'],
      [fixed(6, 0x2a, 0x03), 'MOTUS_E_SCSI_UNIT_ATTENTION', 'UNIT ATTENTION, reservations preempted'],
      [fixed(7, 0x27, 0x00), 'MOTUS_E_SCSI_DATA_PROTECT', 'DATA PROTECT, write protected'],
      [fixed(0x0e, 0x1d, 0x00, 512), 'MOTUS_E_SCSI_MISCOMPARE', 'MISCOMPARE, miscompare during verify operation'],
      [fixed(0x0b, 0x47, 0x00), 'MOTUS_E_SCSI_ABORTED', 'ABORTED COMMAND, SCSI parity error'],
      [fixed(0x05, 0x99, 0x42), 'MOTUS_E_SCSI_ILLEGAL_REQUEST', 'ILLEGAL REQUEST, ASC 0x99 ASCQ 0x42'],
    ];
    for (const [sense, code, text] of cases) {
      const e = statusError(0x02, sense, 'WRITE(16)');
      expect(e?.code).to.equal(code);
      expect(e?.message).to.equal(`WRITE(16) failed: ${text}`);
    }
    expect(statusError(0x02, fixed(5, 0x20, 0), 'COMPARE AND WRITE')?.data['unsupported']).to.equal(true);
    expect(statusError(0x02, fixed(0x0e, 0x1d, 0, 512))?.data['offset']).to.equal(512);
    expect(statusError(0x02, fixed(3, 0x11, 0, 77))?.data['information']).to.equal('77');
  });

  it('map the status byte', () => {
    expect(statusError(0x00, undefined)).to.equal(undefined);
    expect(statusError(0x02, fixed(1, 0x17, 0))).to.equal(undefined);
    expect(statusError(0x18, undefined, 'WRITE(16)')?.code).to.equal('MOTUS_E_SCSI_RESERVATION_CONFLICT');
    expect(statusError(0x08, undefined)?.code).to.equal('MOTUS_E_SCSI_BUSY');
    expect(statusError(0x28, undefined)?.code).to.equal('MOTUS_E_SCSI_BUSY');
    expect(statusError(0x40, undefined)?.code).to.equal('MOTUS_E_SCSI_ABORTED');
    expect(statusError(0x02, undefined)?.code).to.equal('MOTUS_E_SCSI_CHECK_CONDITION');
    expect(statusError(0x02, Buffer.from([0x55]))?.code).to.equal('MOTUS_E_SCSI_BAD_RESPONSE');
    expect(statusError(0x77, undefined)?.message).to.include('status 0x77');
  });
});
