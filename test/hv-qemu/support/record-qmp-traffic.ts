/**
 * Records real QMP traffic from QEMU into fixtures/qmp-traffic.json, as the raw
 * chunks the socket delivered (base64, chunk boundaries kept), for the codec's
 * unit tests. Run after a build:
 *   node test/dist/hv-qemu/support/record-qmp-traffic.js
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { requireCommand, sleep, tempDir, waitFor } from '../../support/system.js';

export interface RecordedConversation {
  /** What the recording did, in order. */
  sent: string[];
  /** Chunks as read from the socket, base64. */
  received: string[];
}

export interface QmpTrafficFixture {
  qemuVersion: string;
  recordedAt: string;
  source: RecordedConversation;
  destination: RecordedConversation;
}

class RawQmp {
  readonly conversation: RecordedConversation = { sent: [], received: [] };
  private text = '';
  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.conversation.received.push(chunk.toString('base64'));
      this.text += chunk.toString('utf8');
    });
  }

  static async open(path: string): Promise<RawQmp> {
    const socket = await waitFor(
      `QMP socket ${path}`,
      () =>
        new Promise<Socket | undefined>((resolve) => {
          const s = createConnection({ path });
          s.once('connect', () => resolve(s));
          s.once('error', () => resolve(undefined));
        }),
      10_000,
    );
    const raw = new RawQmp(socket);
    await raw.until('"QMP"');
    return raw;
  }

  async send(line: string, expect: string): Promise<void> {
    this.conversation.sent.push(line);
    this.socket.write(`${line}\r\n`);
    await this.until(expect);
  }

  async until(marker: string): Promise<void> {
    await waitFor(`QMP text ${marker}`, () => (this.text.includes(marker) ? true : undefined), 30_000, 20);
  }

  close(): void {
    this.socket.destroy();
  }
}

function qemu(qemuPath: string, dir: string, incoming: boolean): ChildProcess {
  const args = ['-nodefaults', '-no-user-config', '-display', 'none', '-machine', 'q35', '-accel', 'tcg', '-m', '64M', '-serial', 'none',
    '-qmp', `unix:${join(dir, 'qmp.sock')},server=on,wait=off`, ...(incoming ? ['-incoming', 'defer'] : [])];
  return spawn('setpriv', ['--pdeathsig', 'KILL', '--', qemuPath, ...args], { stdio: 'ignore' });
}

export async function recordQmpTraffic(): Promise<QmpTrafficFixture> {
  const qemuPath = requireCommand('qemu-system-x86_64', 'qemu-system-x86');
  const srcDir = tempDir('qmp-rec-src');
  const dstDir = tempDir('qmp-rec-dst');
  const procs = [qemu(qemuPath, srcDir.path, false), qemu(qemuPath, dstDir.path, true)];
  try {
    const src = await RawQmp.open(join(srcDir.path, 'qmp.sock'));
    const dst = await RawQmp.open(join(dstDir.path, 'qmp.sock'));
    await src.send('{"execute":"qmp_capabilities","id":"rec-1"}', '"rec-1"');
    await dst.send('{"execute":"qmp_capabilities","id":"rec-1"}', '"rec-1"');
    await src.send('{"execute":"query-version","id":"rec-2"}', '"rec-2"');
    await src.send('{"execute":"query-status","id":"rec-3"}', '"rec-3"');
    await src.send('{"execute":"query-cpus-fast","id":42}', '42}');
    await src.send('{"execute":"no-such-command","id":"rec-4"}', '"rec-4"');
    await src.send('{"execute":"migrate-incoming","arguments":{"uri":"tcp:127.0.0.1:0"},"id":"rec-5"}', '"rec-5"');
    await src.send('{"execute":"stop","id":"rec-6"}', '"STOP"');
    await src.send('{"execute":"cont","id":"rec-7"}', '"RESUME"');
    await src.send('{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"events","state":true}]},"id":"rec-8"}', '"rec-8"');
    await dst.send('{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"events","state":true}]},"id":"rec-2"}', '"rec-2"');
    await dst.send('{"execute":"migrate-incoming","arguments":{"uri":"tcp:127.0.0.1:0"},"id":"rec-3"}', '"rec-3"');
    await dst.send('{"execute":"query-migrate","id":"rec-4"}', '"rec-4"');
    const dstText = Buffer.concat(dst.conversation.received.map((c) => Buffer.from(c, 'base64'))).toString('utf8');
    const port = /"port": "(\d+)"/.exec(dstText)?.[1];
    if (!port) throw new Error(`no port in the destination's query-migrate: ${dstText}`);
    await src.send('{"execute":"migrate-set-parameters","arguments":{"max-bandwidth":1073741824},"id":"rec-9"}', '"rec-9"');
    await src.send(`{"execute":"migrate","arguments":{"uri":"tcp:127.0.0.1:${port}"},"id":"rec-10"}`, '"rec-10"');
    await src.send('{"execute":"query-migrate","id":"rec-11"}', '"rec-11"');
    await src.until('"status": "completed"');
    await dst.until('"status": "completed"');
    await src.send('{"execute":"query-migrate","id":"rec-12"}', '"rec-12"');
    await src.send('{"execute":"query-status","id":"rec-13"}', '"rec-13"');
    await dst.send('{"execute":"query-status","id":"rec-5"}', '"rec-5"');
    await src.send('{"execute":"quit","id":"rec-14"}', '"SHUTDOWN"');
    await dst.send('{"execute":"quit","id":"rec-6"}', '"SHUTDOWN"');
    await sleep(200);
    src.close();
    dst.close();
    const greeting = JSON.parse(Buffer.from(src.conversation.received[0] ?? '', 'base64').toString('utf8').split('\n')[0] ?? '{}') as {
      QMP?: { version?: { qemu?: { major: number; minor: number; micro: number } } };
    };
    const v = greeting.QMP?.version?.qemu;
    return {
      qemuVersion: v ? `${v.major}.${v.minor}.${v.micro}` : 'unknown',
      recordedAt: new Date().toISOString(),
      source: src.conversation,
      destination: dst.conversation,
    };
  } finally {
    for (const p of procs) p.kill('SIGKILL');
    srcDir.remove();
    dstDir.remove();
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const fixture = await recordQmpTraffic();
  const out = fileURLToPath(new URL('../../../hv-qemu/fixtures/qmp-traffic.json', import.meta.url));
  writeFileSync(out, `${JSON.stringify(fixture, null, 2)}\n`);
  console.log(`wrote ${out}: ${fixture.source.received.length + fixture.destination.received.length} chunks from QEMU ${fixture.qemuVersion}`);
}
