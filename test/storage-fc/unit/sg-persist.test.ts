/**
 * SgPersistDevice's logic with a scripted runner in place of the sg_persist
 * binary (the real binary runs in the integration tier): the argv of each PR
 * command, the hex dumps sg3_utils prints (parsed by the SDK's SCSI layer),
 * exit statuses as the SDK's codes, and garbage output as a coded error.
 */
import { expect } from 'chai';
import { MotusError } from '@motus/sdk';
import { SgPersistDevice, exitCodeError, parseHexDump, type SgPersistRun } from '@motus/storage-fc';

/** sg3_utils' dStrHex layout with an address column and no ASCII (sg_persist -HH). */
function dump(bytes: number[]): string {
  const lines: string[] = [];
  for (let at = 0; at < bytes.length; at += 16) {
    const row = bytes.slice(at, at + 16).map((b) => b.toString(16).padStart(2, '0'));
    const hex = row.slice(0, 8).join(' ') + (row.length > 8 ? '  ' + row.slice(8).join(' ') : '');
    lines.push(` ${at.toString(16).padStart(2, '0')}     ${hex}`);
  }
  return lines.join('\n') + '\n';
}

function scripted(answers: Array<Partial<SgPersistRun>>): { runner: (args: string[]) => Promise<SgPersistRun>; calls: string[][] } {
  const calls: string[][] = [];
  return {
    calls,
    runner: async (args) => {
      calls.push(args);
      const a = answers.shift() ?? {};
      return { code: 0, signal: null, stdout: '', stderr: '', timedOut: false, ...a };
    },
  };
}

describe('storage-fc sg_persist', () => {
  it('parses sg3_utils hex dumps (offsets, the gap after byte 8, an ASCII column) and refuses garbage', () => {
    expect(parseHexDump(dump([0, 0, 0, 4, 0, 0, 0, 0]))).to.deep.equal(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0]));
    const long = Array.from({ length: 40 }, (_, i) => i * 5);
    expect(parseHexDump(dump(long))).to.deep.equal(Buffer.from(long));
    expect(parseHexDump(' 00     41 42 43 44 45 46 47 48  49 4a 4b 4c 4d 4e 4f 50    ABCDEFGHIJKLMNOP\n')).to.deep.equal(Buffer.from('ABCDEFGHIJKLMNOP'));
    expect(parseHexDump('  LIO-ORG   fcdisk  4.0\n')).to.equal(undefined);
    expect(parseHexDump(' 10     00 01\n')).to.equal(undefined);
    expect(parseHexDump(' 00     0g 01\n')).to.equal(undefined);
  });

  it('READ KEYS and READ RESERVATION: argv, and the dump decoded by the SDK parsers', async () => {
    const keys = [0, 0, 0, 7, 0, 0, 0, 16, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0, 0, 0, 0, 0, 0, 0x7e, 0x57];
    const reservation = [0, 0, 0, 7, 0, 0, 0, 16, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0, 0, 0, 0, 0, 0x05, 0, 0];
    const s = scripted([{ stdout: dump(keys) }, { stdout: dump(reservation) }]);
    const dev = new SgPersistDevice('/dev/sdc', { runner: s.runner });
    expect(await dev.readKeys()).to.deep.equal({ generation: 7, keys: [0x123456789abcdef0n, 0x7e57n] });
    const r = await dev.readReservation();
    expect(r.holder).to.deep.include({ key: 0x123456789abcdef0n, type: 'WRITE_EXCLUSIVE_REGISTRANTS_ONLY' });
    expect(s.calls).to.deep.equal([
      ['--in', '--read-keys', '--hex', '--hex', '--no-inquiry', '/dev/sdc'],
      ['--in', '--read-reservation', '--hex', '--hex', '--no-inquiry', '/dev/sdc'],
    ]);
  });

  it('PR OUT argv: keys in hex, the reservation type by number', async () => {
    const s = scripted([]);
    const dev = new SgPersistDevice('/dev/sdd', { runner: s.runner });
    await dev.registerAndIgnore(0xabcn);
    await dev.reserve(0xabcn, 'WRITE_EXCLUSIVE_REGISTRANTS_ONLY');
    await dev.release(0xabcn, 'WRITE_EXCLUSIVE_REGISTRANTS_ONLY');
    await dev.preempt(0xabcn, 0xdefn, 'EXCLUSIVE_ACCESS');
    await dev.unregister(0xabcn);
    expect(s.calls).to.deep.equal([
      ['--out', '--no-inquiry', '--register-ignore', '--param-sark=abc', '/dev/sdd'],
      ['--out', '--no-inquiry', '--reserve', '--param-rk=abc', '--prout-type=5', '/dev/sdd'],
      ['--out', '--no-inquiry', '--release', '--param-rk=abc', '--prout-type=5', '/dev/sdd'],
      ['--out', '--no-inquiry', '--preempt', '--param-rk=abc', '--param-sark=def', '--prout-type=3', '/dev/sdd'],
      ['--out', '--no-inquiry', '--register', '--param-rk=abc', '--param-sark=0', '/dev/sdd'],
    ]);
  });

  it('exit statuses become the SDK codes; SG_IO failures mean "not SCSI"; a missing binary says what to install', () => {
    const run = (code: number | null, extra: Partial<SgPersistRun> = {}): SgPersistRun => ({ code, signal: null, stdout: '', stderr: 'sg_persist: something\n', timedOut: false, ...extra });
    const code = (r: SgPersistRun) => exitCodeError(r, '/dev/sdc', 'PR OUT RESERVE')?.code;
    expect(code(run(0))).to.equal(undefined);
    expect(code(run(24))).to.equal('MOTUS_E_SCSI_RESERVATION_CONFLICT');
    expect(code(run(5))).to.equal('MOTUS_E_SCSI_ILLEGAL_REQUEST');
    expect(exitCodeError(run(9), '/dev/sdc', 'x')?.data.unsupported).to.equal(true);
    expect(code(run(6))).to.equal('MOTUS_E_SCSI_UNIT_ATTENTION');
    expect(code(run(2))).to.equal('MOTUS_E_SCSI_NOT_READY');
    expect(code(run(33))).to.equal('MOTUS_E_TIMEOUT');
    expect(code(run(15))).to.equal('MOTUS_E_FC_NOT_SCSI');
    // What sg_persist answers for a loop device: 50 + EINVAL.
    const loop = exitCodeError(run(72, { stderr: 'sg_persist: SCSI INQUIRY failed on /dev/loop0\ninquiry: pass-through os error: Invalid argument\n' }), '/dev/loop0', 'PR IN READ KEYS')!;
    expect(loop.code).to.equal('MOTUS_E_FC_NOT_SCSI');
    expect(loop.message).to.include('/dev/loop0').and.include('pass-through os error');
    expect(code(run(1))).to.equal('MOTUS_E_FC_SG_PERSIST');
    expect(code(run(null, { timedOut: true }))).to.equal('MOTUS_E_TIMEOUT');
    const missing = exitCodeError(run(null, { spawnError: 'ENOENT: sg_persist' }), '/dev/sdc', 'x')!;
    expect(missing.code).to.equal('MOTUS_E_FC_SG_PERSIST');
    expect(missing.message).to.include('sg3-utils');
  });

  it('a successful run that printed no dump is a coded bad response, not made-up keys', async () => {
    const s = scripted([{ stdout: 'PR generation=0x7, there are NO registered reservation keys\n' }]);
    const err = await new SgPersistDevice('/dev/sdc', { runner: s.runner }).readKeys().catch((e: unknown) => e);
    expect(err).to.be.instanceOf(MotusError);
    expect((err as MotusError).code).to.equal('MOTUS_E_SCSI_BAD_RESPONSE');
  });
});
