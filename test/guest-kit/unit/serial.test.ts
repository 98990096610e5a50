import { expect } from 'chai';
import { heartbeatBreaks, parseGuestSerial, parseHeartbeats, type Heartbeat } from '../../support/index.js';

const A = '9bedc4e0-abf9-43cb-8bae-c9e057335cab';
const B = 'a606ffa6-9072-4ed5-bdc1-06a5bfa6bb2a';

describe('guest kit serial parsing', function () {
  it('reads heartbeats from CRLF console output among kernel messages and junk', function () {
    const text = [
      '\x1bc\x1b[?7l SeaBIOS noise',
      '[    2.1] some kernel message',
      `MOTUS-READY boot=${A}`,
      `MOTUS-HB seq=1 uptime=2.93 boot=${A}`,
      '\xff\xfe garbage',
      `MOTUS-HB seq=2 uptime=3.11 boot=${A}`,
      '',
    ].join('\r\n');
    expect(parseHeartbeats(text)).to.deep.equal([
      { seq: 1, uptime: 2.93, boot: A },
      { seq: 2, uptime: 3.11, boot: A },
    ]);
    expect(parseGuestSerial(text).ready).to.deep.equal([A]);
  });

  it('skips the unfinished last line until its newline arrives', function () {
    const done = `MOTUS-HB seq=1 uptime=2.93 boot=${A}\r\n`;
    for (const partial of ['MOTUS-HB seq=1', 'MOTUS-HB seq=2 uptime=3.1', `MOTUS-HB seq=2 uptime=3.11 boot=${A.slice(0, 20)}`, `MOTUS-HB seq=2 uptime=3.11 boot=${A}`]) {
      expect(parseHeartbeats(done + partial), partial).to.have.length(1);
    }
    expect(parseGuestSerial('MOTUS-DIRTIER rate=20 ws=6').dirtier).to.deep.equal([]);
    expect(parseGuestSerial('MOTUS-DIRTIER rate=20 ws=64\r\n').dirtier).to.deep.equal([{ rateMBps: 20, workingSetMiB: 64 }]);
  });

  it('ignores a heartbeat torn by other output', function () {
    const text = `MOTUS-HB seq=1 uptime=2.9[ 3.0] oops\r\n3 boot=${A}\r\nMOTUS-HB seq=2 uptime=3.1 boot=${A} trailing junk\r\n`;
    expect(parseHeartbeats(text)).to.deep.equal([]);
  });

  it('reads a line cut at switchover once source and destination logs are joined', function () {
    const source = `MOTUS-HB seq=7 uptime=4.11 boot=${A}\r\nMOTUS-HB seq=8 upt`;
    const destination = `ime=4.31 boot=${A}\r\nMOTUS-HB seq=9 uptime=4.51 boot=${A}\r\n`;
    const beats = parseHeartbeats(source + destination);
    expect(beats.map((beat) => beat.seq)).to.deep.equal([7, 8, 9]);
    expect(heartbeatBreaks(beats)).to.deep.equal([]);
  });

  it('collects error lines', function () {
    expect(parseGuestSerial('MOTUS-ERROR workload=bogus reason=unknown-workload\r\n').errors).to.deep.equal(['workload=bogus reason=unknown-workload']);
  });

  it('names every break in continuity: reboot, seq reset or gap, uptime going back', function () {
    const beats: Heartbeat[] = [
      { seq: 1, uptime: 1.0, boot: A },
      { seq: 2, uptime: 1.2, boot: A },
      { seq: 4, uptime: 1.6, boot: A },
      { seq: 5, uptime: 1.5, boot: A },
      { seq: 1, uptime: 0.5, boot: B },
    ];
    expect(heartbeatBreaks(beats)).to.deep.equal([
      'seq went from 2 to 4',
      'uptime went back from 1.6 to 1.5 at seq 5',
      `boot id changed from ${A} to ${B} after seq 5 (the guest rebooted)`,
      'seq went from 5 to 1',
      'uptime went back from 1.5 to 0.5 at seq 1',
    ]);
    expect(heartbeatBreaks(beats.slice(0, 2))).to.deep.equal([]);
  });
});
