import { expect } from 'chai';
import { encodeLun, isScsiError } from '@motus/sdk';
import {
  type DataOutPdu, encodePdu, IscsiSession, isIscsiError, type Pdu, PduOpcode, RESERVED_TAG, type ScsiCommandPdu, Session, type SessionOptions,
} from '@motus/storage-iscsi';
import { sleep, waitFor } from '../../support/index.js';
import { type FakeConnection, type FakeTarget, type FakeTargetOptions, startFakeTarget } from '../support/fake-target.js';

const INITIATOR = 'iqn.2026-11.dev.motus:unit';
const TARGET = 'iqn.2026-11.dev.motus.test:fake';

function read10Cdb(lba: number, blocks: number): Buffer {
  const cdb = Buffer.alloc(16);
  cdb[0] = 0x88;
  cdb.writeUInt32BE(lba, 6);
  cdb.writeUInt32BE(blocks, 10);
  return cdb;
}

describe('iSCSI session against a fake target', function () {
  this.timeout(20000);
  let target: FakeTarget | undefined;
  let session: Session | undefined;

  const start = async (opts: FakeTargetOptions, sessionOpts: Partial<SessionOptions> = {}): Promise<Session> => {
    target = await startFakeTarget(opts);
    session = await Session.open({
      portal: { host: '127.0.0.1', port: target.port }, initiatorName: INITIATOR, targetName: TARGET, keepaliveIntervalMs: 0,
      reconnectTimeoutMs: 0, commandTimeoutMs: 5000, ...sessionOpts,
    });
    return session;
  };
  const commands = (): ScsiCommandPdu[] => target!.received.map((r) => r.pdu).filter((p): p is ScsiCommandPdu => p.opcode === PduOpcode.ScsiCommand);

  afterEach(async () => {
    session?.destroy();
    session = undefined;
    await target?.close();
    target = undefined;
  });

  it('keeps within the command window and sends the rest as MaxCmdSN opens', async () => {
    const held: Array<[ScsiCommandPdu, FakeConnection]> = [];
    const s = await start({ window: 2, onPdu: (p, c) => p.opcode === PduOpcode.ScsiCommand && held.push([p, c]) });
    const results = Array.from({ length: 6 }, (_, i) => s.execute({ lun: encodeLun(1), cdb: read10Cdb(i, 1), dataIn: 512, name: `READ ${i}` }));
    await waitFor('two commands', () => (held.length === 2 ? true : undefined), 2000, 10);
    await sleep(100);
    expect(held.length, 'only the window of 2 is sent').to.equal(2);
    expect(s.window.queued).to.equal(4);
    // Each answer moves ExpCmdSN by one, and so MaxCmdSN.
    for (let i = 0; i < 6; i++) {
      await waitFor(`command ${i}`, () => (held.length > i ? true : undefined), 2000, 5);
      const [cmd, conn] = held[i]!;
      conn.reply(cmd, { data: Buffer.alloc(512, i) });
    }
    const out = await Promise.all(results);
    out.forEach((r, i) => expect(r.data.equals(Buffer.alloc(512, i))).to.equal(true));
    const cmdSNs = commands().map((c) => c.cmdSN);
    expect(cmdSNs).to.deep.equal([...cmdSNs].sort((a, b) => a - b));
    expect(new Set(cmdSNs).size).to.equal(6);
  });

  it('matches out-of-order responses to their commands by task tag, across Data-In PDUs', async () => {
    const held: Array<[ScsiCommandPdu, FakeConnection]> = [];
    const s = await start({ onPdu: (p, c) => p.opcode === PduOpcode.ScsiCommand && held.push([p, c]) });
    const results = [0, 1, 2, 3].map((i) => s.execute({ lun: encodeLun(0), cdb: read10Cdb(i * 8, 8), dataIn: 4096, name: `READ ${i}` }));
    await waitFor('four commands', () => (held.length === 4 ? true : undefined), 2000, 10);
    for (const [cmd, conn] of [...held].reverse()) {
      const lba = cmd.cdb.readUInt32BE(6);
      conn.reply(cmd, { data: Buffer.alloc(4096, lba), pduSize: 1000 });
    }
    const out = await Promise.all(results);
    out.forEach((r, i) => {
      expect(r.status).to.equal(0);
      expect(r.data.equals(Buffer.alloc(4096, i * 8))).to.equal(true);
    });
  });

  it('answers R2Ts with Data-Out sequences cut to the target MaxRecvDataSegmentLength', async () => {
    const data = Buffer.alloc(100 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31) & 0xff;
    const got = Buffer.alloc(data.length);
    const dataOuts: DataOutPdu[] = [];
    const s = await start({
      keys: { InitialR2T: 'Yes', ImmediateData: 'No', MaxRecvDataSegmentLength: '8192', MaxBurstLength: '32768' },
      onPdu: (p, c) => {
        if (p.opcode === PduOpcode.ScsiCommand) {
          expect(p.data.length, 'no immediate data when ImmediateData=No').to.equal(0);
          expect(p.final).to.equal(true);
          let r2tSN = 0;
          const cmd = p;
          const next = (offset: number): void => {
            if (offset >= data.length) return c.reply(cmd);
            c.send({ opcode: PduOpcode.R2T, lun: cmd.lun, itt: cmd.itt, ttt: 0x1000 + r2tSN, statSN: c.statSN, expCmdSN: c.expCmdSN, maxCmdSN: c.maxCmdSN, r2tSN: r2tSN++, bufferOffset: offset, desiredLength: Math.min(32768, data.length - offset) });
          };
          (c as FakeConnection & { next?: (o: number) => void }).next = next;
          next(0);
        } else if (p.opcode === PduOpcode.DataOut) {
          dataOuts.push(p);
          p.data.copy(got, p.bufferOffset);
          if (p.final) (c as FakeConnection & { next?: (o: number) => void }).next!(p.bufferOffset + p.data.length);
        }
      },
    });
    expect(s.params.initialR2T).to.equal(true);
    expect(s.params.immediateData).to.equal(false);
    const r = await s.execute({ lun: encodeLun(1), cdb: Buffer.from([0x8a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xc8, 0, 0]), dataIn: 0, dataOut: data, name: 'WRITE(16)' });
    expect(r.status).to.equal(0);
    expect(got.equals(data)).to.equal(true);
    expect(Math.max(...dataOuts.map((d) => d.data.length))).to.equal(8192);
    // Four bursts of 32 KiB, 8 KiB PDUs each, DataSN restarting at every R2T.
    expect(dataOuts.filter((d) => d.final).length).to.equal(4);
    expect(dataOuts.slice(0, 4).map((d) => d.dataSN)).to.deep.equal([0, 1, 2, 3]);
    expect(dataOuts[4]!.dataSN).to.equal(0);
    expect(new Set(dataOuts.map((d) => d.ttt))).to.deep.equal(new Set([0x1000, 0x1001, 0x1002, 0x1003]));
  });

  it('sends immediate data, then unsolicited Data-Out up to FirstBurstLength, then waits for R2T', async () => {
    const data = Buffer.alloc(40000, 7);
    let cmdPdu: ScsiCommandPdu | undefined;
    const unsolicited: DataOutPdu[] = [];
    const s = await start({
      keys: { InitialR2T: 'No', ImmediateData: 'Yes', MaxRecvDataSegmentLength: '4096', FirstBurstLength: '16384', MaxBurstLength: '65536' },
      onPdu: (p, c) => {
        if (p.opcode === PduOpcode.ScsiCommand) cmdPdu = p;
        else if (p.opcode === PduOpcode.DataOut && p.ttt === RESERVED_TAG) {
          unsolicited.push(p);
          if (p.final) c.send({ opcode: PduOpcode.R2T, lun: p.lun, itt: p.itt, ttt: 9, statSN: c.statSN, expCmdSN: c.expCmdSN, maxCmdSN: c.maxCmdSN, r2tSN: 0, bufferOffset: 16384, desiredLength: 40000 - 16384 });
        } else if (p.opcode === PduOpcode.DataOut && p.final) c.reply(cmdPdu!);
      },
    });
    const r = await s.execute({ lun: encodeLun(1), cdb: Buffer.from([0x8a]), dataIn: 0, dataOut: data, name: 'WRITE(16)' });
    expect(r.status).to.equal(0);
    expect(cmdPdu!.data.length, 'immediate data').to.equal(4096);
    expect(cmdPdu!.final, 'F clear: unsolicited data follows').to.equal(false);
    expect(unsolicited.map((d) => [d.bufferOffset, d.data.length])).to.deep.equal([[4096, 4096], [8192, 4096], [12288, 4096]]);
  });

  it('turns CHECK CONDITION sense data into a typed SCSI error', async () => {
    const sense = Buffer.alloc(18);
    sense[0] = 0x70; sense[2] = 0x05; sense[7] = 10; sense[12] = 0x21; sense[13] = 0x00;
    target = await startFakeTarget({ onPdu: (p, c) => p.opcode === PduOpcode.ScsiCommand && c.reply(p, { status: 0x02, sense }) });
    const s = await IscsiSession.login({ portal: target.portal, targetIqn: TARGET, initiatorIqn: INITIATOR, keepaliveIntervalMs: 0, reconnectTimeoutMs: 0 });
    session = s.transport;
    const err = await s.lun(3).testUnitReady().then(() => undefined, (e: unknown) => e);
    expect(isScsiError(err, 'MOTUS_E_SCSI_ILLEGAL_REQUEST'), String(err)).to.equal(true);
    expect((err as Error).message).to.equal('TEST UNIT READY failed: ILLEGAL REQUEST, logical block address out of range');
  });

  it('times out a command the target never answers, and asks the target to abort it', async () => {
    const s = await start({ onPdu: (p, c) => {
      if (p.opcode === PduOpcode.TaskMgmtRequest) c.send({ opcode: PduOpcode.TaskMgmtResponse, itt: p.itt, response: 0, statSN: c.statSN++, expCmdSN: c.expCmdSN, maxCmdSN: c.maxCmdSN });
    } });
    const started = Date.now();
    const err = await s.execute({ lun: encodeLun(1), cdb: read10Cdb(0, 1), dataIn: 512, name: 'READ(16)', timeoutMs: 300 }).then(() => undefined, (e: unknown) => e);
    expect(isIscsiError(err, 'MOTUS_E_TIMEOUT'), String(err)).to.equal(true);
    expect(Date.now() - started).to.be.within(250, 2000);
    const tmf = await waitFor('ABORT TASK', () => target!.received.map((r) => r.pdu).find((p) => p.opcode === PduOpcode.TaskMgmtRequest), 2000, 10);
    const cmd = commands()[0]!;
    expect(tmf).to.deep.include({ function: 1, referencedTaskTag: cmd.itt, refCmdSN: cmd.cmdSN, immediate: true });
  });

  it('aborts a command on request (ABORT TASK) and ignores its late data', async () => {
    let late: (() => void) | undefined;
    const s = await start({ onPdu: (p, c) => {
      if (p.opcode === PduOpcode.ScsiCommand) late = () => c.reply(p, { data: Buffer.alloc(512) });
      if (p.opcode === PduOpcode.NopOut) c.send({ opcode: PduOpcode.NopIn, itt: p.itt, ttt: RESERVED_TAG, statSN: c.statSN++, expCmdSN: c.expCmdSN, maxCmdSN: c.maxCmdSN });
      if (p.opcode === PduOpcode.TaskMgmtRequest) c.send({ opcode: PduOpcode.TaskMgmtResponse, itt: p.itt, response: 0, statSN: c.statSN++, expCmdSN: c.expCmdSN, maxCmdSN: c.maxCmdSN });
    } });
    const pending = s.submit({ lun: encodeLun(1), cdb: read10Cdb(0, 1), dataIn: 512, name: 'READ(16)' });
    const outcome = pending.then(() => undefined, (e: unknown) => e);
    await waitFor('the command', () => (commands().length === 1 ? true : undefined), 2000, 10);
    expect(await s.abort(pending)).to.equal(true);
    expect(isIscsiError(await outcome, 'MOTUS_E_ISCSI_TASK_ABORTED')).to.equal(true);
    late!();
    expect(await s.ping(1000)).to.be.a('number');
  });

  it('answers the target NOP-In pings and pings the target when idle', async () => {
    const s = await start({ onPdu: (p, c) => {
      if (p.opcode === PduOpcode.NopOut && p.itt !== RESERVED_TAG) c.send({ opcode: PduOpcode.NopIn, itt: p.itt, ttt: RESERVED_TAG, statSN: c.statSN++, expCmdSN: c.expCmdSN, maxCmdSN: c.maxCmdSN });
    } }, { keepaliveIntervalMs: 150, keepaliveTimeoutMs: 1000 });
    const conn = target!.connections[0]!;
    conn.send({ opcode: PduOpcode.NopIn, itt: RESERVED_TAG, ttt: 0x5151, lun: Buffer.alloc(8), statSN: conn.statSN, expCmdSN: conn.expCmdSN, maxCmdSN: conn.maxCmdSN, data: Buffer.from('ping') });
    const answer = await waitFor('NOP-Out answer', () => target!.received.map((r) => r.pdu).find((p) => p.opcode === PduOpcode.NopOut && p.ttt === 0x5151), 2000, 10);
    expect(answer).to.deep.include({ itt: RESERVED_TAG, immediate: true });
    expect(answer.data.toString()).to.equal('ping');
    await waitFor('our own ping', () => target!.received.map((r) => r.pdu).find((p) => p.opcode === PduOpcode.NopOut && p.itt !== RESERVED_TAG), 2000, 10);
    expect(s.status).to.equal('full-feature');
  });

  it('drops a connection whose target stops answering pings, logs in again with the same ISID and retries', async () => {
    let connectionsAnswering = 1;
    const s = await start({ onPdu: (p, c) => {
      if (c.id <= connectionsAnswering - 1) return;
      if (p.opcode === PduOpcode.ScsiCommand && c.id >= 2) c.reply(p, { data: Buffer.alloc(512, 9) });
      if (p.opcode === PduOpcode.NopOut && c.id >= 2 && p.itt !== RESERVED_TAG) c.send({ opcode: PduOpcode.NopIn, itt: p.itt, ttt: RESERVED_TAG, statSN: c.statSN++, expCmdSN: c.expCmdSN, maxCmdSN: c.maxCmdSN });
    } }, { keepaliveIntervalMs: 100, keepaliveTimeoutMs: 300, reconnectTimeoutMs: 5000, reconnectDelayMs: 50 });
    connectionsAnswering = 2;
    const r = await s.execute({ lun: encodeLun(1), cdb: read10Cdb(0, 1), dataIn: 512, name: 'READ(16)' });
    expect(r.data.equals(Buffer.alloc(512, 9))).to.equal(true);
    expect(s.reconnects).to.equal(1);
    const logins = target!.received.filter((x) => x.pdu.opcode === PduOpcode.LoginRequest).map((x) => x.pdu as Extract<Pdu, { opcode: 0x03 }>);
    expect(new Set(logins.map((l) => l.isid.toString('hex'))).size).to.equal(1);
    expect(commands().filter((c) => c.cdb[0] === 0x88).length).to.equal(2);
  });

  it('does not re-issue a non-idempotent command after a lost connection', async () => {
    const s = await start({ onPdu: (p, c) => {
      if (p.opcode === PduOpcode.ScsiCommand && c.id === 1) c.close();
      else if (p.opcode === PduOpcode.ScsiCommand) c.reply(p);
    } }, { reconnectTimeoutMs: 3000, reconnectDelayMs: 50 });
    const err = await s.execute({ lun: encodeLun(1), cdb: Buffer.from([0x5f, 0x04]), dataIn: 0, dataOut: Buffer.alloc(24), name: 'PREEMPT', idempotent: false }).then(() => undefined, (e: unknown) => e);
    expect(isIscsiError(err, 'MOTUS_E_ISCSI_DISCONNECTED'), String(err)).to.equal(true);
    expect((err as Error).message).to.include('may or may not have taken effect');
    await s.settled();
    const ok = await s.execute({ lun: encodeLun(1), cdb: read10Cdb(0, 0), dataIn: 0, name: 'READ(16)' });
    expect(ok.status).to.equal(0);
  });

  it('surfaces a Reject of a command as a typed error', async () => {
    const s = await start({ onPdu: (p, c) => {
      if (p.opcode === PduOpcode.ScsiCommand) {
        c.send({ opcode: PduOpcode.Reject, itt: RESERVED_TAG, reason: 0x09, statSN: c.statSN++, expCmdSN: c.expCmdSN, maxCmdSN: c.maxCmdSN, data: encodePdu(p).subarray(0, 48) });
      }
    } });
    const err = await s.execute({ lun: encodeLun(1), cdb: read10Cdb(0, 1), dataIn: 512, name: 'READ(16)' }).then(() => undefined, (e: unknown) => e);
    expect(isIscsiError(err, 'MOTUS_E_ISCSI_REJECT')).to.equal(true);
    expect((err as Error).message).to.include('invalid PDU field');
  });

  describe('a hostile target', () => {
    const hostile = async (misbehave: (cmd: ScsiCommandPdu, c: FakeConnection) => void): Promise<unknown> => {
      const s = await start({ onPdu: (p, c) => p.opcode === PduOpcode.ScsiCommand && misbehave(p, c) });
      return s.execute({ lun: encodeLun(1), cdb: read10Cdb(0, 1), dataIn: 512, name: 'READ(16)', timeoutMs: 2000 }).then(() => undefined, (e: unknown) => e);
    };

    it('sending an unknown opcode ends the connection with a protocol error, not a crash', async () => {
      const err = await hostile((_cmd, c) => {
        const bad = Buffer.alloc(48);
        bad[0] = 0x1e;
        c.sendRaw(bad);
      });
      expect(isIscsiError(err, 'MOTUS_E_ISCSI_DISCONNECTED'), String(err)).to.equal(true);
      expect((err as Error).message).to.include('unknown iSCSI opcode 0x1e');
    });

    it('sending Data-In past the command buffer is a protocol error', async () => {
      const err = await hostile((cmd, c) => c.send({ opcode: PduOpcode.DataIn, itt: cmd.itt, final: true, hasStatus: true, statSN: c.statSN++, expCmdSN: c.expCmdSN, maxCmdSN: c.maxCmdSN, bufferOffset: 0, data: Buffer.alloc(1024) }));
      expect((err as Error).message).to.include('past the 512 expected');
    });

    it('sending Data-In with a gap or out of DataSN order is a protocol error (we negotiated in-order data)', async () => {
      const err = await hostile((cmd, c) => c.send({ opcode: PduOpcode.DataIn, itt: cmd.itt, final: true, hasStatus: true, statSN: c.statSN++, expCmdSN: c.expCmdSN, maxCmdSN: c.maxCmdSN, bufferOffset: 256, data: Buffer.alloc(256) }));
      expect((err as Error).message).to.include('out of order: offset 256 DataSN 0, expected offset 0 DataSN 0');
    });

    it('declaring a data segment beyond what we accept is a protocol error, with no allocation', async () => {
      const err = await hostile((cmd, c) => {
        const head = encodePdu({ opcode: PduOpcode.DataIn, itt: cmd.itt, final: true });
        head.writeUIntBE(0xffffff, 5, 3);
        c.sendRaw(head);
      });
      expect((err as Error).message).to.match(/declares a data segment of 16777215 bytes/);
    });

    it('sending a sense length past its segment is a protocol error', async () => {
      const err = await hostile((cmd, c) => c.send({ opcode: PduOpcode.ScsiResponse, itt: cmd.itt, status: 2, statSN: c.statSN++, expCmdSN: c.expCmdSN, maxCmdSN: c.maxCmdSN, data: Buffer.from([0x01, 0x00, 0x70]) }));
      expect((err as Error).message).to.include('sense length 256');
    });

    it('answering with an R2T for a read is a protocol error', async () => {
      const err = await hostile((cmd, c) => c.send({ opcode: PduOpcode.R2T, itt: cmd.itt, ttt: 1, statSN: c.statSN, expCmdSN: c.expCmdSN, maxCmdSN: c.maxCmdSN, desiredLength: 512 }));
      expect((err as Error).message).to.include('which has no data to send');
    });

    it('an out-of-window MaxCmdSN is ignored rather than trusted', async () => {
      const s = await start({ onPdu: (p, c) => {
        if (p.opcode !== PduOpcode.ScsiCommand) return;
        // MaxCmdSN far below ExpCmdSN - 1: RFC 7143 says to ignore both.
        c.reply(p, {});
        c.send({ opcode: PduOpcode.NopIn, itt: RESERVED_TAG, ttt: RESERVED_TAG, statSN: c.statSN, expCmdSN: (c.expCmdSN + 1000) >>> 0, maxCmdSN: 5 });
      } });
      const before = s.window.maxCmdSN;
      await s.execute({ lun: encodeLun(1), cdb: read10Cdb(0, 0), dataIn: 0, name: 'READ(16)' });
      await sleep(50);
      expect(s.window.maxCmdSN).to.be.at.least(before);
      expect(s.window.expCmdSN).to.not.equal((before + 1000) >>> 0);
    });

    it('stalling during login is a timeout', async () => {
      target = await startFakeTarget({ onLogin: () => true });
      const err = await Session.open({ portal: { host: '127.0.0.1', port: target.port }, initiatorName: INITIATOR, targetName: TARGET, loginTimeoutMs: 300 }).then(() => undefined, (e: unknown) => e);
      expect(isIscsiError(err, 'MOTUS_E_TIMEOUT'), String(err)).to.equal(true);
    });

    it('answering a login with an error status names the reason', async () => {
      target = await startFakeTarget({ onLogin: (p, c) => {
        c.send({ opcode: PduOpcode.LoginResponse, itt: p.itt, statusClass: 2, statusDetail: 3, statSN: 1, expCmdSN: 1, maxCmdSN: 1 });
        return true;
      } });
      const err = await Session.open({ portal: { host: '127.0.0.1', port: target.port }, initiatorName: INITIATOR, targetName: TARGET }).then(() => undefined, (e: unknown) => e);
      expect(isIscsiError(err, 'MOTUS_E_ISCSI_LOGIN')).to.equal(true);
      expect((err as Error).message).to.include('the target does not exist');
    });

    it('a target answering MaxBurstLength above our offer fails negotiation', async () => {
      target = await startFakeTarget({ keys: { MaxBurstLength: '99999999' } });
      const err = await Session.open({ portal: { host: '127.0.0.1', port: target.port }, initiatorName: INITIATOR, targetName: TARGET }).then(() => undefined, (e: unknown) => e);
      expect(isIscsiError(err, 'MOTUS_E_ISCSI_NEGOTIATION'), String(err)).to.equal(true);
    });
  });
});
