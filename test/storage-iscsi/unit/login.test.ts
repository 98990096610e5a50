import { expect } from 'chai';
import { encodeLun } from '@motus/sdk';
import {
  decodeText, discover, encodeText, isIscsiError, type LoginRequestPdu, type Pdu, PduOpcode, RESERVED_TAG, Session,
} from '@motus/storage-iscsi';
import { waitFor } from '../../support/index.js';
import { type FakeConnection, type FakeTarget, startFakeTarget } from '../support/fake-target.js';

const INITIATOR = 'iqn.2026-11.dev.motus:unit';
const TARGET = 'iqn.2026-11.dev.motus.test:fake';

describe('login, text and asynchronous events against a fake target', function () {
  this.timeout(20000);
  let target: FakeTarget | undefined;
  let session: Session | undefined;

  afterEach(async () => {
    session?.destroy();
    session = undefined;
    await target?.close();
    target = undefined;
  });

  it('answers keys the target offers on its own, over an extra login round', async () => {
    let round = 0;
    const seen: Array<Array<[string, string]>> = [];
    target = await startFakeTarget({
      onLogin: (p, c) => {
        if (p.opcode !== PduOpcode.LoginRequest || p.csg !== 1) return false;
        const keys = decodeText(p.data);
        seen.push(keys.ok ? keys.pairs : []);
        round++;
        const answer = (pairs: Array<[string, string]>, transit: boolean): void => c.send({
          opcode: PduOpcode.LoginResponse, transit, csg: 1, nsg: transit ? 3 : 0, isid: p.isid, tsih: transit ? 9 : 0, itt: p.itt,
          statSN: c.statSN++, expCmdSN: p.cmdSN, maxCmdSN: p.cmdSN + 31, data: encodeText(pairs),
        });
        if (round === 1) {
          // Answer our offers, and offer two keys of our own with T=0: the initiator must answer before we go on.
          answer([['HeaderDigest', 'None'], ['DataDigest', 'None'], ['MaxBurstLength', '131072'], ['InitialR2T', 'Yes'], ['ImmediateData', 'No'],
            ['MaxRecvDataSegmentLength', '16384'], ['X-com.example.Color', 'blue'], ['IFMarker', 'No']], false);
        } else answer([], true);
        return true;
      },
    });
    session = await Session.open({ portal: { host: '127.0.0.1', port: target.port }, initiatorName: INITIATOR, targetName: TARGET, keepaliveIntervalMs: 0, reconnectTimeoutMs: 0 });
    expect(session.params).to.deep.include({ maxBurstLength: 131072, initialR2T: true, immediateData: false, maxXmitDataSegmentLength: 16384 });
    expect(seen.length).to.equal(2);
    expect(seen[1]).to.deep.include(['X-com.example.Color', 'NotUnderstood']);
    expect(seen[1]).to.deep.include(['IFMarker', 'NotUnderstood']);
    expect(session.login.tsih).to.equal(9);
  });

  it('follows a SendTargets answer split over continued text responses', async () => {
    const body = encodeText([['TargetName', 'iqn.x:one'], ['TargetAddress', '127.0.0.1:3260,1'], ['TargetName', 'iqn.x:two'], ['TargetAddress', '[::1]:3261,2']]);
    const cut = 23;
    target = await startFakeTarget({
      onPdu: (p, c) => {
        if (p.opcode !== PduOpcode.TextRequest) return;
        const first = p.ttt === RESERVED_TAG;
        c.send({
          opcode: PduOpcode.TextResponse, final: !first, cont: first, itt: p.itt, ttt: first ? 0x77 : RESERVED_TAG,
          statSN: c.statSN++, expCmdSN: c.expCmdSN, maxCmdSN: c.maxCmdSN, data: first ? body.subarray(0, cut) : body.subarray(cut),
        });
      },
    });
    const targets = await discover(target.portal, { timeoutMs: 3000 });
    expect(targets).to.deep.equal([
      { name: 'iqn.x:one', portals: [{ host: '127.0.0.1', port: 3260, tpgt: 1 }] },
      { name: 'iqn.x:two', portals: [{ host: '::1', port: 3261, tpgt: 2 }] },
    ]);
    const logins = target.received.map((r) => r.pdu).filter((p): p is LoginRequestPdu => p.opcode === PduOpcode.LoginRequest);
    const keys = decodeText(logins[0]!.data);
    expect(keys.ok && keys.pairs).to.deep.include(['SessionType', 'Discovery']);
    expect(target.received.map((r) => r.pdu.opcode)).to.include(PduOpcode.LogoutRequest);
  });

  it('logs in again when the target asks for a logout with an asynchronous message', async () => {
    const answer = (p: Pdu, c: FakeConnection): void => {
      if (p.opcode === PduOpcode.ScsiCommand) c.reply(p, {});
    };
    target = await startFakeTarget({ onPdu: answer });
    const events: string[] = [];
    session = await Session.open({ portal: { host: '127.0.0.1', port: target.port }, initiatorName: INITIATOR, targetName: TARGET, keepaliveIntervalMs: 0, reconnectTimeoutMs: 3000, reconnectDelayMs: 20 });
    session.events$.subscribe({ next: (e) => events.push(e.type), error: () => undefined });
    const c = target.connections[0]!;
    c.send({ opcode: PduOpcode.AsyncMessage, itt: RESERVED_TAG, statSN: c.statSN++, expCmdSN: c.expCmdSN, maxCmdSN: c.maxCmdSN, asyncEvent: 1, parameter3: 2 });
    await waitFor('the second login', () => (target!.connections.length === 2 ? true : undefined), 3000, 10);
    await session.settled();
    const r = await session.execute({ lun: encodeLun(0), cdb: Buffer.from([0]), dataIn: 0, name: 'TEST UNIT READY' });
    expect(r.status).to.equal(0);
    expect(events).to.deep.equal(['async', 'disconnected', 'reconnected']);
  });

  it('refuses a target that skips CHAP when mutual CHAP is required', async () => {
    target = await startFakeTarget();
    const err = await Session.open({
      portal: { host: '127.0.0.1', port: target.port }, initiatorName: INITIATOR, targetName: TARGET,
      chap: { user: 'u', secret: 'initiator-secret' }, mutualChap: { user: 't', secret: 'target-secret-x' },
    }).then(() => undefined, (e: unknown) => e);
    expect(isIscsiError(err, 'MOTUS_E_ISCSI_AUTH'), String(err)).to.equal(true);
    expect((err as Error).message).to.include('mutual CHAP required');
  });
});
