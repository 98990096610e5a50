/**
 * Why Motus does not hold a Write Exclusive – Registrants Only reservation while
 * the VM runs (README, "Ownership"): against the real tgt, registrations belong to
 * the I_T nexus (the session) that made them, not to the initiator name. A second
 * session under the very initiator name the host registered — which is what QEMU's
 * libiscsi opens, with `-iscsi initiator-name` set to the host's name — is not a
 * registrant: its writes get RESERVATION CONFLICT, and so do QEMU's own (qemu-io
 * through the same iscsi:// driver). tgt also refuses SPEC_I_PT, the one way to
 * register another nexus from ours. If tgt ever changes, this test fails and the
 * lease can become a held reservation.
 */
import { execFile } from 'node:child_process';
import { expect } from 'chai';
import { IscsiSession } from '@motus/storage-iscsi';
import { MotusError } from '@motus/sdk';
import { requireCommand } from '../../support/index.js';
import { startTgt, type Tgt } from '../support/tgt.js';

const TARGET = 'iqn.2026-11.dev.motus.test:nexus';
const HOST = 'iqn.2026-11.dev.motus:host-a';
const KEY = 0x5eed_0001n;
const WERO = 'WRITE_EXCLUSIVE_REGISTRANTS_ONLY' as const;

function qemuIo(portal: string, initiator: string, command: string): Promise<{ code: number; output: string }> {
  const opts = `driver=iscsi,transport=tcp,portal=${portal},target=${TARGET},lun=1,initiator-name=${initiator}`;
  return new Promise((resolve) => {
    execFile('qemu-io', ['--image-opts', opts, '-c', command], { timeout: 30_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, output: `${stdout}${stderr}` });
    });
  });
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => 'ok',
    (e: unknown) => (e instanceof MotusError ? e.code : String(e)),
  );
}

describe('tgt: persistent reservation registrants are I_T nexuses, not initiator names (evidence for the lease design)', function () {
  this.timeout(120_000);
  let tgt: Tgt;
  let holder: IscsiSession;
  let twin: IscsiSession;

  before(async () => {
    requireCommand('qemu-io', 'qemu-utils');
    tgt = await startTgt();
    await tgt.addTarget({ iqn: TARGET, lunsMiB: [8] });
    holder = await IscsiSession.login({ portal: tgt.portal, targetIqn: TARGET, initiatorIqn: HOST, commandTimeoutMs: 10_000 });
    twin = await IscsiSession.login({ portal: tgt.portal, targetIqn: TARGET, initiatorIqn: HOST, commandTimeoutMs: 10_000 });
    await holder.lun(1).registerAndIgnore(KEY);
    await holder.lun(1).reserve(KEY, WERO);
  });

  after(async () => {
    await holder?.lun(1).release(KEY, WERO).catch(() => undefined);
    await holder?.lun(1).clear(KEY).catch(() => undefined);
    await holder?.logout().catch(() => undefined);
    await twin?.logout().catch(() => undefined);
    await tgt?.stop();
  });

  it('lets the registered session write and refuses a second session of the same initiator name until that session registers too', async () => {
    const block = Buffer.alloc(512, 0xa5);
    expect(await codeOf(holder.lun(1).write(0, block))).to.equal('ok');
    expect(await codeOf(twin.lun(1).read(0, 1))).to.equal('ok');
    expect(await codeOf(twin.lun(1).write(0, block)), 'same initiator name, other nexus').to.equal('MOTUS_E_SCSI_RESERVATION_CONFLICT');
    await twin.lun(1).registerAndIgnore(KEY);
    expect(await codeOf(twin.lun(1).write(0, block)), 'registered on its own nexus').to.equal('ok');
    await twin.lun(1).unregister(KEY);
    expect(await codeOf(twin.lun(1).write(0, block))).to.equal('MOTUS_E_SCSI_RESERVATION_CONFLICT');
  });

  it("refuses QEMU's own writes through its iscsi driver under the host's initiator name, while reads go on", async () => {
    const write = await qemuIo(tgt.portal, HOST, 'write -P 0x55 0 4096');
    expect(write.code, write.output).to.not.equal(0);
    expect(write.output).to.match(/write failed|WRITE10\/16 failed/);
    const read = await qemuIo(tgt.portal, HOST, 'read 0 4096');
    expect(read.code, read.output).to.equal(0);
    // Without the reservation the same QEMU write passes: the refusal is the reservation's.
    await holder.lun(1).release(KEY, WERO);
    const free = await qemuIo(tgt.portal, HOST, 'write -P 0x55 0 4096');
    expect(free.code, free.output).to.equal(0);
    await holder.lun(1).reserve(KEY, WERO);
  });
});
