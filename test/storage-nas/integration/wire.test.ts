import { expect } from 'chai';
import { spawn, execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { NFS_PROG, NfsClient, RpcClient } from '@motus/storage-nas';
import { startGanesha, type GaneshaServer } from '../support/ganesha.js';
import { requireCommand, tempDir, waitFor } from '../../support/index.js';

/**
 * Captures the client's traffic with tshark and lets Wireshark's RPC, MOUNT and
 * NFS dissectors judge it: no malformed frame, no dissector error, and every
 * procedure the client sent is recognised.
 */
describe('storage-nas wire format checked by tshark', function () {
  this.timeout(90000);
  let server: GaneshaServer;
  const scratch = tempDir('nas-wire');

  before(async () => {
    requireCommand('tshark', 'tshark');
    server = await startGanesha();
  });

  after(async () => {
    await server?.stop();
    scratch.remove();
  });

  it('every RPC record the client sends and receives dissects cleanly as ONC RPC / MOUNT / NFSv3', async () => {
    const tshark = requireCommand('tshark', 'tshark');
    const pcap = join(scratch.path, 'nfs.pcapng');
    const filter = `tcp port ${server.nfsPort} or tcp port ${server.mountPort}`;
    // -P -l print a line per packet while writing the file: that is how we know the capture is live.
    const capture = spawn(tshark, ['-i', 'lo', '-f', filter, '-w', pcap, '-P', '-l'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let seen = 0;
    capture.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    capture.stdout?.on('data', (d: Buffer) => (seen += d.toString().split('\n').length - 1));
    const exited = new Promise<void>((resolve) => capture.once('exit', () => resolve()));
    try {
      // "Capturing on" can come before the filter is in place; probe until a packet shows up.
      const probe = new RpcClient({ host: server.host, port: server.nfsPort, prog: NFS_PROG, vers: 3, auth: { flavor: 'none' }, timeoutMs: 2000 });
      try {
        await waitFor(
          'tshark to see traffic',
          async () => {
            if (capture.exitCode !== null) throw new Error(`tshark exited: ${stderr}`);
            if (seen > 0) return true;
            await probe.call(0, Buffer.alloc(0));
            return undefined;
          },
          30000,
          200,
        );
      } finally {
        await probe.close();
      }
      const client = await NfsClient.connect({ host: server.host, export: server.exportPath, port: server.nfsPort, mountPort: server.mountPort, uid: 0, gid: 0, timeoutMs: 10000, maxTransferSize: 64 * 1024 });
      try {
        await client.nfs.null();
        await client.mkdirp('wire/dir');
        await client.writeFile('wire/dir/data.bin', Buffer.alloc(200 * 1024, 0x5a));
        await client.readFile('wire/dir/data.bin');
        await client.createExclusive('wire/dir/lock', 'owner');
        await client.setAttributes('wire/dir/lock', { mode: 0o600 });
        await client.access('wire/dir/lock', 0x1f);
        await client.list('wire/dir');
        await client.rename('wire/dir/lock', 'wire/lock2');
        await client.fsstat();
        await client.exists('wire/missing');
        await client.exports();
        await client.remove('wire', { recursive: true });
      } finally {
        await client.close();
      }
      // Let the last frames reach the capture before stopping it.
      await new Promise((r) => setTimeout(r, 500));
    } finally {
      capture.kill('SIGINT');
      await exited;
    }
    const decodeAs = ['-d', `tcp.port==${server.nfsPort},rpc`, '-d', `tcp.port==${server.mountPort},rpc`];
    const read = (display: string, fields: string[]) =>
      execFileSync(tshark, ['-r', pcap, ...decodeAs, '-Y', display, '-T', 'fields', ...fields.flatMap((f) => ['-e', f])], {
        encoding: 'utf8',
        timeout: 60000,
        maxBuffer: 64 * 1024 * 1024,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    /** One row per RPC message: a frame may carry several, listed comma-separated per field. */
    const rows = (display: string, fields: string[]) =>
      read(display, fields)
        .split('\n')
        .filter((l) => l.trim() !== '')
        .flatMap((line) => {
          const columns = line.split('\t').map((c) => c.split(','));
          return columns[0]!.map((_, i) => columns.map((c) => c[i] ?? ''));
        });
    const bad = read('_ws.malformed || _ws.expert.severity >= "error"', ['frame.number', '_ws.expert.message']).trim();
    expect(bad, `frames tshark finds malformed:\n${bad}`).to.equal('');
    const calls = rows('rpc.msgtyp == 0', ['rpc.xid', 'rpc.program', 'rpc.procedure']);
    const replies = rows('rpc.msgtyp == 1', ['rpc.xid']);
    const nfsProcs = new Set(calls.filter((c) => c[1] === '100003').map((c) => Number(c[2])));
    for (const p of [0, 1, 2, 3, 4, 6, 7, 8, 9, 12, 13, 14, 17, 18, 19, 21]) expect(nfsProcs.has(p), `NFS procedure ${p} on the wire`).to.equal(true);
    const mountProcs = new Set(calls.filter((c) => c[1] === '100005').map((c) => Number(c[2])));
    expect([...mountProcs].sort()).to.deep.equal([1, 3, 5]);
    // Every call was answered, and nothing was answered twice.
    expect(calls.length).to.be.greaterThan(40);
    expect(new Set(replies.map((r) => r[0])).size).to.equal(replies.length);
    expect([...new Set(replies.map((r) => r[0]))].sort()).to.deep.equal([...new Set(calls.map((c) => c[0]))].sort());
  });
});
