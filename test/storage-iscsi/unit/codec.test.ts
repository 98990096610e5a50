import { expect } from 'chai';
import {
  BHS_LENGTH, crc32c, crc32cOf, decodeFrame, decodeText, encodePdu, encodePduParts, encodeText, isIscsiError, type Pdu, PduOpcode, type PduInit, PduReader, RESERVED_TAG,
} from '@motus/storage-iscsi';
import { prng, randomBytes } from '../../support/index.js';

describe('CRC32C', () => {
  // RFC 3720 appendix B.4, bytes as they appear on the wire.
  const vectors: Array<[string, Buffer, string]> = [
    ['32 bytes of zeroes', Buffer.alloc(32, 0), 'aa36918a'],
    ['32 bytes of ones', Buffer.alloc(32, 0xff), '43aba862'],
    ['32 bytes incrementing 00..1f', Buffer.from(Array.from({ length: 32 }, (_, i) => i)), '4e79dd46'],
    ['32 bytes decrementing 1f..00', Buffer.from(Array.from({ length: 32 }, (_, i) => 31 - i)), '5cdb3f11'],
    ['an iSCSI SCSI Read (10) command PDU', Buffer.from(
      '01c000000000000000000000000000001400000000000400000000140000001828000000000000000200000000000000', 'hex'), '563a96d9'],
  ];
  for (const [name, data, wire] of vectors) {
    it(`matches RFC 3720 B.4: ${name}`, () => {
      const out = Buffer.alloc(4);
      out.writeUInt32LE(crc32c(data));
      expect(out.toString('hex')).to.equal(wire);
    });
  }

  it('gives the check value 0xE3069283 for "123456789"', () => {
    expect(crc32c(Buffer.from('123456789'))).to.equal(0xe3069283);
  });

  it('continues across buffers as over one', () => {
    const rand = prng(7);
    const data = randomBytes(rand, 1003);
    for (const cut of [0, 1, 3, 4, 500, 1002, 1003]) expect(crc32cOf([data.subarray(0, cut), data.subarray(cut)])).to.equal(crc32c(data));
  });
});

const ALL_PDUS: PduInit[] = [
  { opcode: PduOpcode.NopOut, immediate: true, itt: 5, ttt: RESERVED_TAG, cmdSN: 9, expStatSN: 3, data: Buffer.from('ping') },
  { opcode: PduOpcode.ScsiCommand, final: true, read: true, attr: 1, lun: Buffer.from([0, 1, 0, 0, 0, 0, 0, 0]), itt: 0x10, expectedDataTransferLength: 4096, cmdSN: 77, expStatSN: 12, cdb: Buffer.from('8800000000000000000000000008000000', 'hex').subarray(0, 16) },
  { opcode: PduOpcode.TaskMgmtRequest, immediate: true, function: 1, itt: 3, referencedTaskTag: 0x10, cmdSN: 78, expStatSN: 13, refCmdSN: 77 },
  { opcode: PduOpcode.LoginRequest, immediate: true, transit: true, csg: 1, nsg: 3, isid: Buffer.from('800102030405', 'hex'), itt: 1, cid: 0, cmdSN: 1, data: encodeText([['MaxBurstLength', '262144']]) },
  { opcode: PduOpcode.TextRequest, final: true, itt: 2, ttt: RESERVED_TAG, cmdSN: 5, expStatSN: 1, data: encodeText([['SendTargets', 'All']]) },
  { opcode: PduOpcode.DataOut, final: true, itt: 0x10, ttt: 0x44, expStatSN: 2, dataSN: 3, bufferOffset: 8192, data: Buffer.alloc(1001, 0xaa) },
  { opcode: PduOpcode.LogoutRequest, immediate: true, reason: 0, itt: 9, cmdSN: 100, expStatSN: 50 },
  { opcode: PduOpcode.NopIn, itt: RESERVED_TAG, ttt: 0x77, statSN: 4, expCmdSN: 10, maxCmdSN: 40 },
  { opcode: PduOpcode.ScsiResponse, underflow: true, status: 2, itt: 0x10, statSN: 5, expCmdSN: 11, maxCmdSN: 41, residual: 512, data: Buffer.from([0, 3, 0x70, 0, 5]) },
  { opcode: PduOpcode.TaskMgmtResponse, response: 1, itt: 3, statSN: 6, expCmdSN: 12, maxCmdSN: 42 },
  { opcode: PduOpcode.LoginResponse, transit: true, csg: 1, nsg: 3, versionMax: 0, isid: Buffer.from('800102030405', 'hex'), tsih: 0x1234, itt: 1, statSN: 1, expCmdSN: 1, maxCmdSN: 33, statusClass: 0, data: encodeText([['MaxBurstLength', '65536']]) },
  { opcode: PduOpcode.TextResponse, final: true, itt: 2, ttt: RESERVED_TAG, statSN: 2, expCmdSN: 6, maxCmdSN: 37, data: encodeText([['TargetName', 'iqn.x:y'], ['TargetAddress', '127.0.0.1:3260,1']]) },
  { opcode: PduOpcode.DataIn, final: true, hasStatus: true, status: 0, itt: 0x10, ttt: RESERVED_TAG, statSN: 7, expCmdSN: 13, maxCmdSN: 43, dataSN: 0, bufferOffset: 0, data: Buffer.alloc(4096, 1) },
  { opcode: PduOpcode.LogoutResponse, response: 0, itt: 9, statSN: 8, expCmdSN: 14, maxCmdSN: 44, time2Wait: 2, time2Retain: 20 },
  { opcode: PduOpcode.R2T, itt: 0x10, ttt: 0x44, statSN: 9, expCmdSN: 15, maxCmdSN: 45, r2tSN: 1, bufferOffset: 65536, desiredLength: 65536 },
  { opcode: PduOpcode.AsyncMessage, itt: RESERVED_TAG, statSN: 10, expCmdSN: 16, maxCmdSN: 46, asyncEvent: 1, parameter3: 5 },
  { opcode: PduOpcode.Reject, itt: RESERVED_TAG, reason: 4, statSN: 11, expCmdSN: 17, maxCmdSN: 47, data: Buffer.alloc(48, 1) },
];

const DIGEST_MODES = [
  { headerDigest: false, dataDigest: false },
  { headerDigest: true, dataDigest: false },
  { headerDigest: false, dataDigest: true },
  { headerDigest: true, dataDigest: true },
];

describe('iSCSI PDU codec', () => {
  for (const mode of DIGEST_MODES) {
    it(`round-trips every PDU type (header digest ${mode.headerDigest}, data digest ${mode.dataDigest})`, () => {
      for (const init of ALL_PDUS) {
        const bytes = encodePdu(init, mode);
        expect(bytes.length % 4).to.equal(0);
        const r = decodeFrame(bytes, { ...mode, maxDataSegmentLength: 1 << 20 });
        expect(r.kind, `opcode 0x${init.opcode.toString(16)}`).to.equal('pdu');
        if (r.kind !== 'pdu') continue;
        expect(r.length).to.equal(bytes.length);
        for (const [k, v] of Object.entries(init)) {
          const got = (r.pdu as unknown as Record<string, unknown>)[k];
          if (Buffer.isBuffer(v)) expect(Buffer.from(got as Buffer).subarray(0, v.length).equals(v), k).to.equal(true);
          else expect(got, `${k} of opcode 0x${init.opcode.toString(16)}`).to.equal(v);
        }
      }
    });
  }

  it('hands the data segment to the socket uncopied, with padding and digest after it', () => {
    const data = Buffer.alloc(1001, 0x5a);
    const parts = encodePduParts({ opcode: PduOpcode.DataOut, final: true, data }, { headerDigest: true, dataDigest: true });
    expect(parts.map((p) => p.length)).to.deep.equal([52, 1001, 7]);
    expect(parts[1]!.buffer).to.equal(data.buffer);
    const r = decodeFrame(Buffer.concat(parts), { headerDigest: true, dataDigest: true, maxDataSegmentLength: 8192 });
    expect(r.kind === 'pdu' && r.pdu.data.equals(data)).to.equal(true);
    expect(encodePduParts({ opcode: PduOpcode.NopOut }).length).to.equal(1);
  });

  it('pads the data segment to 4 bytes and keeps its true length in the BHS', () => {
    const b = encodePdu({ opcode: PduOpcode.DataOut, data: Buffer.alloc(5, 1) });
    expect(b.length).to.equal(48 + 8);
    expect(b.readUIntBE(5, 3)).to.equal(5);
  });

  it('asks for more bytes at every truncation, never throws', () => {
    for (const mode of DIGEST_MODES) {
      for (const init of ALL_PDUS) {
        const bytes = encodePdu(init, mode);
        for (let cut = 0; cut < bytes.length; cut++) {
          const r = decodeFrame(bytes.subarray(0, cut), { ...mode, maxDataSegmentLength: 1 << 20 });
          expect(r.kind).to.equal('need');
          if (r.kind === 'need') expect(r.length).to.be.greaterThan(cut);
        }
      }
    }
  });

  it('detects a corrupted header or data with digests on', () => {
    const mode = { headerDigest: true, dataDigest: true, maxDataSegmentLength: 1 << 20 };
    const bytes = encodePdu(ALL_PDUS[12]!, mode);
    const h = Buffer.from(bytes);
    h[20] = h[20]! ^ 0x01;
    const rh = decodeFrame(h, mode);
    expect(rh.kind === 'error' && isIscsiError(rh.error, 'MOTUS_E_ISCSI_DIGEST') && rh.error.message.includes('header digest')).to.equal(true);
    const d = Buffer.from(bytes);
    d[200] = d[200]! ^ 0x80;
    const rd = decodeFrame(d, mode);
    expect(rd.kind === 'error' && rd.error.message.includes('data digest')).to.equal(true);
  });

  it('refuses a data segment longer than the negotiated maximum before buffering it', () => {
    const b = encodePdu({ opcode: PduOpcode.DataIn, data: Buffer.alloc(9000) });
    const r = decodeFrame(b.subarray(0, 48), { headerDigest: false, dataDigest: false, maxDataSegmentLength: 8192 });
    expect(r.kind).to.equal('error');
  });

  it('decodes random garbage to a PDU, a need or a typed error, never a throw', () => {
    const rand = prng(12345);
    const counts = { pdu: 0, need: 0, error: 0 };
    for (let i = 0; i < 20000; i++) {
      const len = Math.floor(rand() * 160);
      const buf = randomBytes(rand, len);
      if (len > 7 && rand() < 0.7) buf.writeUIntBE(Math.floor(rand() * 64), 5, 3);
      if (len > 4 && rand() < 0.7) buf[4] = Math.floor(rand() * 4);
      const mode = DIGEST_MODES[i % 4]!;
      const r = decodeFrame(buf, { ...mode, maxDataSegmentLength: 8192 });
      counts[r.kind]++;
      if (r.kind === 'pdu') expect(r.length).to.be.at.most(len);
      if (r.kind === 'error') expect(r.error.code).to.match(/^MOTUS_E_(ISCSI_PROTOCOL|ISCSI_DIGEST)$/);
    }
    expect(counts.pdu).to.be.greaterThan(0);
    expect(counts.error).to.be.greaterThan(0);
    expect(counts.need).to.be.greaterThan(0);
  });

  it('flips every bit of a digested PDU and always reports a typed error or a valid frame', () => {
    const mode = { headerDigest: true, dataDigest: true, maxDataSegmentLength: 1 << 20 };
    const bytes = encodePdu(ALL_PDUS[8]!, mode);
    for (let bit = 0; bit < bytes.length * 8; bit++) {
      const b = Buffer.from(bytes);
      b[bit >> 3] = b[bit >> 3]! ^ (1 << (bit & 7));
      const r = decodeFrame(b, mode);
      // A flip in the length fields changes the framing (need or error); anywhere else the digest catches it.
      expect(r.kind).to.not.equal('pdu');
    }
  });

  it('reassembles a stream cut at random points, several PDUs per chunk', () => {
    const rand = prng(99);
    for (const mode of DIGEST_MODES) {
      const stream = Buffer.concat(ALL_PDUS.map((p) => encodePdu(p, mode)));
      for (let round = 0; round < 50; round++) {
        const reader = new PduReader({ ...mode, maxDataSegmentLength: 1 << 20 });
        const got: Pdu[] = [];
        let at = 0;
        while (at < stream.length) {
          const n = 1 + Math.floor(rand() * (rand() < 0.5 ? 64 : 3000));
          const r = reader.push(stream.subarray(at, at + n));
          expect(r.error).to.equal(undefined);
          got.push(...r.pdus);
          at += n;
        }
        expect(got.map((p) => p.opcode)).to.deep.equal(ALL_PDUS.map((p) => p.opcode));
        expect(reader.pendingBytes).to.equal(0);
      }
    }
  });

  it('stops after a framing error and says so on every later push', () => {
    const reader = new PduReader({ headerDigest: false, dataDigest: false, maxDataSegmentLength: 8192 });
    const bad = Buffer.alloc(BHS_LENGTH);
    bad[0] = 0x3e;
    const first = reader.push(Buffer.concat([encodePdu(ALL_PDUS[7]!), bad]));
    expect(first.pdus.length).to.equal(1);
    expect(first.error?.message).to.include('unknown iSCSI opcode 0x3e');
    expect(reader.push(encodePdu(ALL_PDUS[7]!)).pdus.length).to.equal(0);
  });
});

describe('iSCSI text codec', () => {
  it('round-trips key=value pairs, repeated keys kept in order', () => {
    const pairs: Array<[string, string]> = [['TargetName', 'iqn.a:b'], ['TargetAddress', '1.2.3.4:3260,1'], ['TargetAddress', '[::1]:3260,2'], ['X-com.example.Key', '']];
    const r = decodeText(encodeText(pairs));
    expect(r.ok && r.pairs).to.deep.equal(pairs);
  });

  it('accepts padding NULs at the end', () => {
    const r = decodeText(Buffer.concat([encodeText([['A', '1']]), Buffer.alloc(3)]));
    expect(r.ok && r.pairs).to.deep.equal([['A', '1']]);
  });

  it('rejects malformed text with a typed error, for every truncation and for garbage', () => {
    for (const bad of ['novalue\0', '=x\0', 'bad key=1\0', `${'K'.repeat(64)}=1\0`, `A=${'v'.repeat(9000)}\0`]) {
      const r = decodeText(Buffer.from(bad));
      expect(r.ok, bad.slice(0, 20)).to.equal(false);
    }
    const good = encodeText([['HeaderDigest', 'CRC32C,None'], ['MaxBurstLength', '262144']]);
    for (let cut = 0; cut <= good.length; cut++) expect(() => decodeText(good.subarray(0, cut))).to.not.throw();
    const rand = prng(3);
    for (let i = 0; i < 2000; i++) {
      const r = decodeText(randomBytes(rand, Math.floor(rand() * 80)));
      if (!r.ok) expect(r.error.code).to.equal('MOTUS_E_ISCSI_PROTOCOL');
    }
  });
});
