import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { decodeText, encodePdu, type Pdu, PduOpcode, PduReader } from '@motus/storage-iscsi';

interface Fixture {
  targetIqn: string;
  initiatorIqn: string;
  frames: Array<{ direction: 'out' | 'in'; hex: string }>;
  written: { lba: number; bytes: number; sha256: string };
}

const fixture = JSON.parse(readFileSync(fileURLToPath(new URL('../../../storage-iscsi/fixtures/tgt-traffic.json', import.meta.url)), 'utf8')) as Fixture;

/** Decodes each direction as one byte stream, fed in uneven chunks as TCP would deliver it. */
function decodeDirection(direction: 'out' | 'in'): Pdu[] {
  const stream = Buffer.concat(fixture.frames.filter((f) => f.direction === direction).map((f) => Buffer.from(f.hex, 'hex')));
  const reader = new PduReader({ headerDigest: false, dataDigest: false, maxDataSegmentLength: 1 << 20 });
  const pdus: Pdu[] = [];
  for (let at = 0, step = 1; at < stream.length; at += step, step = (step * 7) % 1499 + 1) {
    const r = reader.push(stream.subarray(at, at + step));
    expect(r.error).to.equal(undefined);
    pdus.push(...r.pdus);
  }
  expect(reader.pendingBytes).to.equal(0);
  return pdus;
}

describe('recorded tgt traffic', () => {
  const out = decodeDirection('out');
  const inbound = decodeDirection('in');

  it('decodes every recorded frame, in both directions', () => {
    expect(out.length).to.equal(fixture.frames.filter((f) => f.direction === 'out').length);
    expect(inbound.length).to.equal(fixture.frames.filter((f) => f.direction === 'in').length);
  });

  it('re-encodes every frame byte for byte', () => {
    const frames = fixture.frames.map((f) => Buffer.from(f.hex, 'hex'));
    const pdus = fixture.frames.map((f) => f.direction);
    let o = 0;
    let i = 0;
    frames.forEach((frame, k) => {
      const pdu = pdus[k] === 'out' ? out[o++]! : inbound[i++]!;
      expect(encodePdu(pdu).equals(frame), `frame ${k} (opcode 0x${pdu.opcode.toString(16)})`).to.equal(true);
    });
  });

  it('shows a CHAP login through the security and operational stages to full feature phase', () => {
    const logins = out.filter((p) => p.opcode === PduOpcode.LoginRequest);
    const responses = inbound.filter((p) => p.opcode === PduOpcode.LoginResponse);
    expect(logins.length).to.be.at.least(4);
    const keys = (p: Pdu): Map<string, string> => {
      const t = decodeText(p.data);
      return new Map(t.ok ? t.pairs : []);
    };
    expect(keys(logins[0]!).get('InitiatorName')).to.equal(fixture.initiatorIqn);
    expect(keys(logins[0]!).get('TargetName')).to.equal(fixture.targetIqn);
    expect(keys(responses[0]!).get('AuthMethod')).to.equal('CHAP');
    expect(keys(responses[1]!).get('CHAP_A')).to.equal('5');
    expect(keys(responses[1]!).get('CHAP_C')).to.match(/^0x[0-9a-f]+$/i);
    expect(keys(logins[2]!).get('CHAP_N')).to.equal('motus-host');
    expect(keys(logins[2]!).get('CHAP_R')).to.match(/^0x[0-9a-f]{32}$/);
    const last = responses[responses.length - 1]! as Extract<Pdu, { opcode: 0x23 }>;
    expect(last).to.deep.include({ transit: true, csg: 1, nsg: 3, statusClass: 0 });
    expect(last.tsih).to.not.equal(0);
  });

  it('shows commands answered by task tag, with R2T-driven Data-Out for the write', () => {
    const commands = out.filter((p): p is Extract<Pdu, { opcode: 0x01 }> => p.opcode === PduOpcode.ScsiCommand);
    const write = commands.find((c) => c.cdb[0] === 0x8a)!;
    expect(write.expectedDataTransferLength).to.equal(fixture.written.bytes);
    const r2ts = inbound.filter((p): p is Extract<Pdu, { opcode: 0x31 }> => p.opcode === PduOpcode.R2T && p.itt === write.itt);
    expect(r2ts.length).to.be.greaterThan(0);
    const dataOut = out.filter((p): p is Extract<Pdu, { opcode: 0x05 }> => p.opcode === PduOpcode.DataOut && p.itt === write.itt);
    const assembled = Buffer.alloc(fixture.written.bytes);
    write.data.copy(assembled, 0);
    for (const d of dataOut) d.data.copy(assembled, d.bufferOffset);
    expect(createHash('sha256').update(assembled).digest('hex')).to.equal(fixture.written.sha256);
    const read = commands.find((c) => c.cdb[0] === 0x88 && c.expectedDataTransferLength === fixture.written.bytes)!;
    const dataIn = inbound.filter((p): p is Extract<Pdu, { opcode: 0x25 }> => p.opcode === PduOpcode.DataIn && p.itt === read.itt);
    const back = Buffer.alloc(fixture.written.bytes);
    for (const d of dataIn) d.data.copy(back, d.bufferOffset);
    expect(createHash('sha256').update(back).digest('hex')).to.equal(fixture.written.sha256);
    expect(dataIn[dataIn.length - 1]!.hasStatus || inbound.some((p) => p.opcode === PduOpcode.ScsiResponse && p.itt === read.itt)).to.equal(true);
    // CmdSN goes up by one per non-immediate command.
    const sns = commands.map((c) => c.cmdSN);
    sns.forEach((sn, k) => k > 0 && expect(sn).to.equal((sns[k - 1]! + 1) >>> 0));
  });

  it('ends with a logout answered by the target', () => {
    expect(out[out.length - 1]!.opcode).to.equal(PduOpcode.LogoutRequest);
    expect(inbound[inbound.length - 1]).to.deep.include({ opcode: PduOpcode.LogoutResponse, response: 0 });
  });
});
