import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { discover, IscsiSession, isIscsiError, type IscsiLoginOptions } from '@motus/storage-iscsi';
import { isScsiError } from '@motus/sdk';
import { requireCommand, sleep, tempDir } from '../../support/index.js';
import { startTgt, type Tgt } from '../support/tgt.js';

const PLAIN = 'iqn.2026-11.dev.motus.test:plain';
const CHAP = 'iqn.2026-11.dev.motus.test:chap';
const MUTUAL = 'iqn.2026-11.dev.motus.test:mutual';
const UNSOLICITED = 'iqn.2026-11.dev.motus.test:unsolicited';
const HOST_A = 'iqn.2026-11.dev.motus:host-a';
const HOST_B = 'iqn.2026-11.dev.motus:host-b';
const INIT_CHAP = { user: 'motus-host', secret: 'host-secret-0123' };
const TARGET_CHAP = { user: 'motus-target', secret: 'target-secret-4567' };

function run(cmd: string, args: string[], timeoutMs = 30000, lenient = false): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, encoding: 'utf8', maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err && !lenient) reject(new Error(`${cmd} ${args.join(' ')}: ${stderr || err.message}`));
      else resolve(stdout);
    });
  });
}

function pattern(bytes: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(bytes);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < bytes; i += 4) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    b.writeUInt32LE(x, i);
  }
  return b;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('iSCSI initiator against a real tgt target', function () {
  this.timeout(120000);
  let tgt: Tgt;
  let plainLun1: string;
  const opened: IscsiSession[] = [];
  const open = async (o: Partial<IscsiLoginOptions> & { targetIqn: string }): Promise<IscsiSession> => {
    const s = await IscsiSession.login({ portal: tgt.portal, initiatorIqn: HOST_A, keepaliveIntervalMs: 0, ...o });
    opened.push(s);
    return s;
  };
  const url = (iqn: string, lun: number): string => `iscsi://127.0.0.1:${tgt.port}/${iqn}/${lun}`;

  before(async () => {
    for (const c of ['iscsi-inq', 'iscsi-ls', 'iscsi-readcapacity16', 'iscsi-perf']) requireCommand(c, 'libiscsi-bin');
    requireCommand('qemu-img', 'qemu-utils');
    tgt = await startTgt();
    // tgt offers no digests unless told to.
    const plain = await tgt.addTarget({ iqn: PLAIN, lunsMiB: [64, 16], params: { HeaderDigest: 'CRC32C,None', DataDigest: 'CRC32C,None' } });
    plainLun1 = plain.luns[0]!.path;
    await tgt.addTarget({ iqn: CHAP, lunsMiB: [8], chap: INIT_CHAP });
    await tgt.addTarget({ iqn: MUTUAL, lunsMiB: [8], chap: INIT_CHAP, mutualChap: TARGET_CHAP });
    await tgt.addTarget({
      iqn: UNSOLICITED, lunsMiB: [32],
      params: { InitialR2T: 'No', ImmediateData: 'Yes', MaxRecvDataSegmentLength: '65536', FirstBurstLength: '131072', MaxBurstLength: '262144' },
    });
  });

  afterEach(async () => {
    while (opened.length > 0) await opened.pop()!.logout();
  });

  after(async () => {
    for (const s of opened) s.transport.destroy();
    await tgt?.stop();
  });

  it('discovers every target with SendTargets, as iscsi-ls does', async () => {
    const targets = await discover(tgt.portal, { initiatorIqn: HOST_A });
    expect(targets.map((t) => t.name).sort()).to.deep.equal([CHAP, MUTUAL, PLAIN, UNSOLICITED].sort());
    for (const t of targets) expect(t.portals).to.deep.include({ host: '127.0.0.1', port: tgt.port, tpgt: 1 });
    const ls = await run('iscsi-ls', [`iscsi://127.0.0.1:${tgt.port}`]);
    for (const t of targets) expect(ls).to.include(`Target:${t.name} Portal:127.0.0.1:${tgt.port},1`);
  });

  it('logs in without CHAP and reads identity and capacity that agree with libiscsi', async () => {
    const s = await open({ targetIqn: PLAIN });
    expect(s.params.errorRecoveryLevel).to.equal(0);
    const lun = s.lun(1);
    const inq = await lun.inquiry();
    expect(inq.peripheralDeviceType).to.equal(0);
    const ref = await run('iscsi-inq', [url(PLAIN, 1)]);
    expect(ref).to.include(`Vendor:${inq.vendor}`);
    expect(ref).to.include(`Product:${inq.product}`);
    expect(ref).to.include(`Revision:${inq.revision}`);
    const pages = await lun.vpdPages();
    expect(pages).to.include.members([0x00, 0x80, 0x83]);
    const serial = await lun.serialNumber();
    expect(await run('iscsi-inq', ['-e', '1', '-c', '128', url(PLAIN, 1)])).to.include(serial);
    const id = await lun.deviceIdentification();
    expect(id.naa).to.match(/^naa\.[0-9a-f]{16,32}$/);
    const t10 = id.designators.find((d) => d.kind === 't10');
    expect(await run('iscsi-inq', ['-e', '1', '-c', '131', url(PLAIN, 1)])).to.include(`Designator:[${t10!.id}]`);
    const cap = await lun.capacity();
    expect(cap.bytes).to.equal(64n * 1024n * 1024n);
    const rc = await run('iscsi-readcapacity16', [url(PLAIN, 1)]);
    expect(rc).to.include(`RETURNED LOGICAL BLOCK ADDRESS:${cap.lastLba}`);
    expect(rc).to.include(`LOGICAL BLOCK LENGTH IN BYTES:${cap.blockSize}`);
    const luns = await s.reportLuns();
    expect(luns.map((l) => l.lun)).to.deep.equal([0, 1, 2]);
    // iscsi-ls -s logs in to every target, the CHAP ones included, so it carries CHAP credentials.
    const lsl = await run('iscsi-ls', ['-s', `iscsi://${INIT_CHAP.user}%${INIT_CHAP.secret}@127.0.0.1:${tgt.port}`], 30000, true);
    expect(lsl).to.match(/Lun:1\s+Type:DIRECT_ACCESS \(Size:63M\)/);
    expect(lsl).to.match(/Lun:2\s+Type:DIRECT_ACCESS \(Size:15M\)/);
    await lun.testUnitReady();
    await lun.sync();
  });

  it('logs in with CHAP, and refuses a wrong secret, an unknown user, missing credentials or an unknown target with a clear error', async () => {
    const s = await open({ targetIqn: CHAP, chap: INIT_CHAP });
    await s.lun(1).testUnitReady();
    const wrong = await IscsiSession.login({ portal: tgt.portal, targetIqn: CHAP, initiatorIqn: HOST_A, chap: { ...INIT_CHAP, secret: 'not-the-secret' }, reconnectTimeoutMs: 0 }).then(() => undefined, (e: unknown) => e);
    expect(isIscsiError(wrong, 'MOTUS_E_ISCSI_AUTH'), String(wrong)).to.equal(true);
    expect((wrong as Error).message).to.match(/authentication failed.*check the CHAP user and secret/);
    const none = await IscsiSession.login({ portal: tgt.portal, targetIqn: CHAP, initiatorIqn: HOST_A }).then(() => undefined, (e: unknown) => e);
    expect(isIscsiError(none, 'MOTUS_E_ISCSI_AUTH'), String(none)).to.equal(true);
    expect((none as Error).message).to.include('the target requires CHAP and no CHAP credentials were given');
    const unknownUser = await IscsiSession.login({ portal: tgt.portal, targetIqn: CHAP, initiatorIqn: HOST_A, chap: { ...INIT_CHAP, user: 'someone-else' }, reconnectTimeoutMs: 0 }).then(() => undefined, (e: unknown) => e);
    expect(isIscsiError(unknownUser, 'MOTUS_E_ISCSI_AUTH'), String(unknownUser)).to.equal(true);
    const missing = await IscsiSession.login({ portal: tgt.portal, targetIqn: 'iqn.2026-11.dev.motus.test:absent', initiatorIqn: HOST_A }).then(() => undefined, (e: unknown) => e);
    expect(isIscsiError(missing, 'MOTUS_E_ISCSI_LOGIN'), String(missing)).to.equal(true);
    expect((missing as Error).message).to.include('the target does not exist');
  });

  it('logs in with mutual CHAP and rejects a target that does not know its secret', async () => {
    const s = await open({ targetIqn: MUTUAL, chap: INIT_CHAP, mutualChap: TARGET_CHAP });
    await s.lun(1).testUnitReady();
    const bad = await IscsiSession.login({ portal: tgt.portal, targetIqn: MUTUAL, initiatorIqn: HOST_A, chap: INIT_CHAP, mutualChap: { ...TARGET_CHAP, secret: 'what-we-expect-99' } }).then(() => undefined, (e: unknown) => e);
    expect(isIscsiError(bad, 'MOTUS_E_ISCSI_AUTH'), String(bad)).to.equal(true);
    expect((bad as Error).message).to.include('wrong secret');
  });

  it('runs with CRC32C header and data digests', async () => {
    const s = await open({ targetIqn: PLAIN, digests: true });
    expect(s.params.headerDigest).to.equal('CRC32C');
    expect(s.params.dataDigest).to.equal('CRC32C');
    const data = pattern(1 << 20, 11);
    await s.lun(2).write(2048, data);
    expect(sha(await s.lun(2).read(2048, data.length / 512))).to.equal(sha(data));
  });

  it('writes and reads back 8 MiB across MaxBurstLength boundaries (R2T), matching libiscsi and the backing file', async () => {
    const s = await open({ targetIqn: PLAIN });
    const lun = s.lun(1);
    expect(s.params.initialR2T).to.equal(true);
    const data = pattern(8 << 20, 5);
    // Start one block in, so commands straddle burst boundaries rather than align with them.
    const lba = 1;
    let t = process.hrtime.bigint();
    await lun.write(lba, data);
    const writeMs = Number(process.hrtime.bigint() - t) / 1e6;
    t = process.hrtime.bigint();
    const back = await lun.read(lba, data.length / 512);
    const readMs = Number(process.hrtime.bigint() - t) / 1e6;
    expect(sha(back)).to.equal(sha(data));
    await lun.sync();
    console.log(`      8 MiB through tgt: write ${(8 / (writeMs / 1000)).toFixed(1)} MiB/s, read ${(8 / (readMs / 1000)).toFixed(1)} MiB/s`);
    expect(sha(readFileSync(plainLun1).subarray(512, 512 + data.length))).to.equal(sha(data));
    const dir = tempDir('iscsi-ref');
    try {
      const out = join(dir.path, 'lun.raw');
      await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', url(PLAIN, 1), out]);
      expect(sha(readFileSync(out).subarray(512, 512 + data.length))).to.equal(sha(data));
    } finally {
      dir.remove();
    }
  });

  it('reads what libiscsi wrote', async () => {
    await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0xa5 4M 1M', url(PLAIN, 2)]);
    const s = await open({ targetIqn: PLAIN });
    const back = await s.lun(2).read((4 << 20) / 512, (1 << 20) / 512);
    expect(back.equals(Buffer.alloc(1 << 20, 0xa5))).to.equal(true);
  });

  it('sends immediate and unsolicited data when the target allows (InitialR2T=No)', async () => {
    const frames: Buffer[] = [];
    const s = await open({ targetIqn: UNSOLICITED, tap: (dir, f) => dir === 'out' && frames.push(Buffer.from(f.subarray(0, 48))) });
    expect(s.params.initialR2T).to.equal(false);
    expect(s.params.immediateData).to.equal(true);
    expect(s.params.firstBurstLength).to.equal(131072);
    expect(s.params.maxXmitDataSegmentLength).to.equal(65536);
    const data = pattern(8 << 20, 9);
    await s.lun(1).write(0, data);
    expect(sha(await s.lun(1).read(0, data.length / 512))).to.equal(sha(data));
    const commands = frames.filter((f) => (f[0]! & 0x3f) === 0x01 && (f[1]! & 0x20) !== 0);
    const unsolicited = frames.filter((f) => (f[0]! & 0x3f) === 0x05 && f.readUInt32BE(20) === 0xffffffff);
    const solicited = frames.filter((f) => (f[0]! & 0x3f) === 0x05 && f.readUInt32BE(20) !== 0xffffffff);
    expect(commands.length).to.equal(8);
    for (const c of commands) expect(c.readUIntBE(5, 3), 'immediate data in each WRITE').to.equal(65536);
    expect(unsolicited.length).to.equal(8);
    expect(solicited.length).to.be.greaterThan(0);
  });

  it('passes a persistent reservation between two hosts: register, reserve, conflict, preempt, release', async () => {
    const a = (await open({ targetIqn: PLAIN, initiatorIqn: HOST_A })).lun(2);
    const b = (await open({ targetIqn: PLAIN, initiatorIqn: HOST_B })).lun(2);
    const keyA = 0xa11cen;
    const keyB = 0xb0bn;
    await a.registerAndIgnore(keyA);
    await b.registerAndIgnore(keyB);
    expect((await a.readKeys()).keys.sort()).to.deep.equal([keyA, keyB].sort());
    await a.reserve(keyA, 'WRITE_EXCLUSIVE_REGISTRANTS_ONLY');
    const held = await b.readReservation();
    expect(held.holder).to.deep.include({ key: keyA, type: 'WRITE_EXCLUSIVE_REGISTRANTS_ONLY' });
    // Registrants may write under WE-RO; unregistering B makes it an outsider.
    await b.write(0, Buffer.alloc(512, 1));
    await b.unregister(keyB);
    const conflict = await b.write(0, Buffer.alloc(512, 2)).then(() => undefined, (e: unknown) => e);
    expect(isScsiError(conflict, 'MOTUS_E_SCSI_RESERVATION_CONFLICT'), String(conflict)).to.equal(true);
    expect((conflict as Error).message).to.include('RESERVATION CONFLICT');
    // B takes over as at a switchover: register, preempt A, hold the reservation.
    await b.registerAndIgnore(keyB);
    await b.preempt(keyB, keyA, 'WRITE_EXCLUSIVE_REGISTRANTS_ONLY');
    expect((await b.readReservation()).holder).to.deep.include({ key: keyB });
    expect((await b.readKeys()).keys).to.deep.equal([keyB]);
    const fenced = await a.write(0, Buffer.alloc(512, 3)).then(() => undefined, (e: unknown) => e);
    expect(isScsiError(fenced, 'MOTUS_E_SCSI_RESERVATION_CONFLICT'), String(fenced)).to.equal(true);
    await b.write(0, Buffer.alloc(512, 4));
    await b.release(keyB, 'WRITE_EXCLUSIVE_REGISTRANTS_ONLY');
    expect((await b.readReservation()).holder).to.equal(undefined);
    await b.reserve(keyB, 'EXCLUSIVE_ACCESS');
    const denied = await a.read(0, 1).then(() => undefined, (e: unknown) => e);
    expect(isScsiError(denied, 'MOTUS_E_SCSI_RESERVATION_CONFLICT'), String(denied)).to.equal(true);
    await b.clear(keyB);
    expect((await a.readKeys()).keys).to.deep.equal([]);
    expect((await a.read(0, 1)).equals(Buffer.alloc(512, 4))).to.equal(true);
  });

  it('after a reconnection on tgt, takes its reservation back by registering again and preempting its old I_T nexus', async () => {
    const s = await open({ targetIqn: PLAIN, initiatorIqn: HOST_A, reconnectTimeoutMs: 10000, reconnectDelayMs: 50 });
    const lun = s.lun(2);
    const key = 0x5eedn;
    await lun.registerAndIgnore(key);
    await lun.reserve(key, 'WRITE_EXCLUSIVE_REGISTRANTS_ONLY');
    const reconnected = new Promise<void>((resolve) => s.events$.subscribe({ next: (e) => e.type === 'reconnected' && resolve(), error: () => undefined }));
    s.transport.dropConnection();
    await reconnected;
    // tgt ties registrations to the session, not to initiator name + ISID: the new session is a stranger.
    expect((await lun.readReservation()).holder).to.deep.include({ key });
    const stranger = await lun.write(64, Buffer.alloc(512, 0x77)).then(() => undefined, (e: unknown) => e);
    expect(isScsiError(stranger, 'MOTUS_E_SCSI_RESERVATION_CONFLICT'), String(stranger)).to.equal(true);
    await lun.registerAndIgnore(key);
    await lun.preempt(key, key, 'WRITE_EXCLUSIVE_REGISTRANTS_ONLY');
    expect((await lun.readReservation()).holder).to.deep.include({ key, type: 'WRITE_EXCLUSIVE_REGISTRANTS_ONLY' });
    await lun.write(64, Buffer.alloc(512, 0x77));
    expect((await lun.read(64, 1)).equals(Buffer.alloc(512, 0x77))).to.equal(true);
    await lun.clear(key);
  });

  it('handles COMPARE AND WRITE as "not supported" when tgt refuses it, or as a real atomic test-and-set', async () => {
    const lun = (await open({ targetIqn: PLAIN })).lun(2);
    await lun.write(100, Buffer.alloc(512, 0x11));
    const r = await lun.compareAndWrite(100, Buffer.alloc(512, 0x11), Buffer.alloc(512, 0x22)).then(() => undefined, (e: unknown) => e);
    if (r === undefined) {
      expect((await lun.read(100, 1)).equals(Buffer.alloc(512, 0x22))).to.equal(true);
      const mis = await lun.compareAndWrite(100, Buffer.alloc(512, 0x11), Buffer.alloc(512, 0x33)).then(() => undefined, (e: unknown) => e);
      expect(isScsiError(mis, 'MOTUS_E_SCSI_MISCOMPARE'), String(mis)).to.equal(true);
    } else {
      expect(isScsiError(r, 'MOTUS_E_SCSI_ILLEGAL_REQUEST'), String(r)).to.equal(true);
      expect((r as { data: Record<string, unknown> }).data['unsupported']).to.equal(true);
    }
  });

  it('keeps the session alive with NOP-Out pings and answers between commands', async () => {
    let pings = 0;
    const s = await open({ targetIqn: PLAIN, keepaliveIntervalMs: 200, keepaliveTimeoutMs: 2000, tap: (dir, f) => { if (dir === 'out' && (f[0]! & 0x3f) === 0x00) pings++; } });
    await sleep(1200);
    expect(pings).to.be.greaterThan(1);
    expect(await s.ping(2000)).to.be.lessThan(2000);
    await s.lun(1).testUnitReady();
  });

  it('survives tgtd being killed mid-I/O and restarted: logs in again and retries the outstanding writes', async () => {
    let firstWriteDone: () => void = () => undefined;
    const oneDone = new Promise<void>((resolve) => (firstWriteDone = resolve));
    let armed = false;
    const s = await open({
      targetIqn: PLAIN, reconnectTimeoutMs: 20000, reconnectDelayMs: 200, commandTimeoutMs: 30000, lun: { maxTransferBytes: 256 * 1024 },
      // Kill at the first completed WRITE, while the others are in flight: the signal goes
      // out from the tap itself, so a fast target cannot finish the whole write first.
      tap: (dir, f) => {
        if (!armed || dir !== 'in' || (f[0]! & 0x3f) !== 0x21) return;
        armed = false;
        tgt.killNow();
        firstWriteDone();
      },
    });
    const lun = s.lun(1);
    await lun.capacity();
    // More than tgt asks for at once (32 MiB of R2T bursts), so most of it is still to send at the kill.
    const data = pattern(40 << 20, 21);
    armed = true;
    const writing = lun.write(0, data);
    await oneDone;
    await tgt.kill();
    await sleep(500);
    await tgt.restart();
    await writing;
    expect(s.transport.reconnects).to.be.greaterThan(0);
    expect(sha(await lun.read(0, data.length / 512))).to.equal(sha(data));
  });

  it('fails outstanding commands with a clear error when the target stays down', async () => {
    const s = await open({ targetIqn: PLAIN, reconnectTimeoutMs: 1500, reconnectDelayMs: 100 });
    const lun = s.lun(1);
    await lun.capacity();
    const reading = lun.read(0, 16384).then(() => undefined, (e: unknown) => e);
    await tgt.kill();
    const err = await reading;
    await tgt.restart();
    expect(isIscsiError(err, 'MOTUS_E_ISCSI_DISCONNECTED') || isIscsiError(err, 'MOTUS_E_TIMEOUT'), String(err)).to.equal(true);
    expect((err as Error).message).to.match(/could not log in again within 1500 ms|did not complete/);
  });
});
