import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { IscsiSession } from '@motus/storage-iscsi';
import { requireCommand, tempDir } from '../../support/index.js';
import { writePcap } from '../support/pcap.js';
import { startTgt, type Tgt } from '../support/tgt.js';

function tshark(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('tshark', args, { timeout: 60000, encoding: 'utf8', maxBuffer: 64 << 20 }, (err, stdout, stderr) => (err ? reject(new Error(`tshark: ${stderr || err.message}`)) : resolve(stdout)));
  });
}

/** tshark's view of a capture: iSCSI PDUs by opcode name, and anything it calls malformed or an error. */
async function dissect(pcap: string): Promise<{ opcodes: string[]; problems: string }> {
  const fields = await tshark(['-r', pcap, '-o', 'tcp.check_checksum:FALSE', '-Y', 'iscsi', '-T', 'fields', '-e', 'iscsi.opcode']);
  const opcodes = fields.split('\n').filter(Boolean).flatMap((l) => l.split(','));
  const problems = await tshark(['-r', pcap, '-Y', '_ws.malformed || _ws.expert.severity >= "error"', '-T', 'fields', '-e', 'frame.number', '-e', '_ws.expert.message']);
  return { opcodes, problems: problems.trim() };
}

describe('tshark dissects the initiator traffic as well-formed iSCSI', function () {
  this.timeout(120000);
  let tgt: Tgt | undefined;
  const dir = tempDir('iscsi-pcap');

  before(() => {
    requireCommand('tshark', 'tshark');
  });

  after(async () => {
    await tgt?.stop();
    dir.remove();
  });

  it('the recorded tgt session (CHAP login, inquiries, R2T write, read, PR, logout)', async () => {
    const fixture = JSON.parse(readFileSync(fileURLToPath(new URL('../../../storage-iscsi/fixtures/tgt-traffic.json', import.meta.url)), 'utf8')) as { frames: Array<{ direction: 'out' | 'in'; hex: string }> };
    const pcap = join(dir.path, 'recorded.pcap');
    writePcap(pcap, fixture.frames.map((f) => ({ direction: f.direction, frame: Buffer.from(f.hex, 'hex') })));
    const { opcodes, problems } = await dissect(pcap);
    expect(problems).to.equal('');
    expect(opcodes.length).to.equal(fixture.frames.length);
  });

  it('notices a frame whose data segment length lies (so the checks above have teeth)', async () => {
    const fixture = JSON.parse(readFileSync(fileURLToPath(new URL('../../../storage-iscsi/fixtures/tgt-traffic.json', import.meta.url)), 'utf8')) as { frames: Array<{ direction: 'out' | 'in'; hex: string }> };
    const frames = fixture.frames.map((f) => ({ direction: f.direction, frame: Buffer.from(f.hex, 'hex') }));
    const victim = frames.find((f) => f.direction === 'in')!.frame;
    victim.writeUIntBE(victim.readUIntBE(5, 3) + 4000, 5, 3);
    const pcap = join(dir.path, 'broken.pcap');
    writePcap(pcap, frames);
    const { opcodes, problems } = await dissect(pcap);
    expect(problems !== '' || opcodes.length < frames.length).to.equal(true);
  });

  it('a live session with unsolicited data, R2Ts and 256 KiB Data-In PDUs', async () => {
    tgt = await startTgt();
    const iqn = 'iqn.2026-11.dev.motus.test:tshark';
    await tgt.addTarget({ iqn, lunsMiB: [16], params: { InitialR2T: 'No', MaxRecvDataSegmentLength: '65536' } });
    const frames: Array<{ direction: 'out' | 'in'; frame: Buffer }> = [];
    const s = await IscsiSession.login({ portal: tgt.portal, targetIqn: iqn, initiatorIqn: 'iqn.2026-11.dev.motus:tshark', keepaliveIntervalMs: 0, tap: (direction, frame) => frames.push({ direction, frame: Buffer.from(frame) }) });
    const lun = s.lun(1);
    await lun.capacity().catch(() => lun.capacity());
    await lun.write(0, Buffer.alloc(1 << 20, 0x42));
    await lun.read(0, 2048);
    await s.ping(2000);
    await s.logout();
    const pcap = join(dir.path, 'live.pcap');
    writePcap(pcap, frames);
    const { opcodes, problems } = await dissect(pcap);
    expect(problems).to.equal('');
    expect(opcodes.length).to.equal(frames.length);
    for (const op of ['0x01', '0x05', '0x25', '0x21', '0x31', '0x00', '0x20', '0x06', '0x26']) expect(opcodes, `opcode ${op}`).to.include(op);
  });
});
