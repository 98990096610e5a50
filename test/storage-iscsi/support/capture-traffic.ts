/**
 * Records real tgt traffic for the replay unit test:
 *   npx tsc -b sdk plugins/storage-iscsi test/storage-iscsi && node test/dist/storage-iscsi/support/capture-traffic.js
 * writes test/storage-iscsi/fixtures/tgt-traffic.json: every frame of a CHAP login and
 * a few commands, as sent and received, plus the SCSI parameter data tgt returned.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { inquiry, readCapacity16 } from '@motus/sdk';
import { IscsiSession } from '@motus/storage-iscsi';
import { startTgt } from './tgt.js';

export interface TrafficFixture {
  comment: string;
  targetIqn: string;
  initiatorIqn: string;
  frames: Array<{ direction: 'out' | 'in'; hex: string }>;
  /** SCSI parameter data as tgt returned it, by command. */
  scsi: Record<string, string>;
  written: { lba: number; bytes: number; sha256: string };
}

const TARGET = 'iqn.2026-11.dev.motus.test:capture';
const INITIATOR = 'iqn.2026-11.dev.motus:capture';
const tgt = await startTgt();
try {
  await tgt.addTarget({ iqn: TARGET, lunsMiB: [64], chap: { user: 'motus-host', secret: 'host-secret-0123' } });
  const frames: TrafficFixture['frames'] = [];
  const s = await IscsiSession.login({
    portal: tgt.portal, targetIqn: TARGET, initiatorIqn: INITIATOR, chap: { user: 'motus-host', secret: 'host-secret-0123' }, keepaliveIntervalMs: 0,
    tap: (direction, frame) => frames.push({ direction, hex: frame.toString('hex') }),
  });
  const lun = s.lun(1);
  const scsi: Record<string, string> = {};
  const data = async (name: string, cmd: ReturnType<typeof inquiry>): Promise<void> => {
    scsi[name] = (await lun.command(cmd)).data.toString('hex');
  };
  await lun.testUnitReady();
  await data('inquiry', inquiry());
  await data('vpd00', inquiry(0x00));
  await data('vpd80', inquiry(0x80));
  await data('vpd83', inquiry(0x83, 1024));
  await data('readCapacity16', readCapacity16());
  await s.reportLuns();
  const payload = Buffer.alloc(32 * 1024);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 13) & 0xff;
  await lun.write(8, payload);
  await lun.read(8, payload.length / 512);
  await lun.registerAndIgnore(0x1234n);
  const keys = await lun.command({ name: 'PERSISTENT RESERVE IN (READ KEYS)', cdb: Buffer.from('5e000000000000200000', 'hex'), dataIn: 8192 });
  scsi['readKeys'] = keys.data.toString('hex');
  await lun.clear(0x1234n);
  await s.logout();
  const { createHash } = await import('node:crypto');
  const fixture: TrafficFixture = {
    comment: 'iSCSI frames between the Motus initiator and tgt 1.0.85 on loopback (CHAP login, INQUIRY/VPD, READ CAPACITY(16), REPORT LUNS, 32 KiB WRITE with immediate data and R2T, READ, PR, logout), captured by capture-traffic.ts',
    targetIqn: TARGET,
    initiatorIqn: INITIATOR,
    frames,
    scsi,
    written: { lba: 8, bytes: payload.length, sha256: createHash('sha256').update(payload).digest('hex') },
  };
  const target = fileURLToPath(new URL('../../../../test/storage-iscsi/fixtures/tgt-traffic.json', import.meta.url));
  writeFileSync(target, JSON.stringify(fixture, null, 1) + '\n');
  console.log(`wrote ${frames.length} frames to ${target}`);
} finally {
  await tgt.stop();
}
