import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, statfsSync, statSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  Access,
  decodeCall,
  getPort,
  isNasError,
  MOUNT_PROG,
  MountClient,
  NfsClient,
  NFS_PROG,
  RpcClient,
  StableHow,
  UnstableWriter,
  type NfsConnectOptions,
} from '@motus/storage-nas';
import { startGanesha, libnfs, type GaneshaServer } from '../support/ganesha.js';
import { tempDir } from '../../support/index.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const errorOf = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e as Error & { code: string; data: Record<string, unknown> });

/** Deterministic content, so a mismatch shows where it starts. */
function pattern(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i + 4 <= size; i += 4) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    b.writeUInt32LE(x, i);
  }
  return b;
}

describe('storage-nas NFSv3 client against nfs-ganesha', function () {
  this.timeout(120000);
  let server: GaneshaServer;
  let client: NfsClient;
  const others: NfsClient[] = [];
  let scratch: { path: string; remove: () => void };

  const connect = (extra: Partial<NfsConnectOptions> = {}) =>
    NfsClient.connect({ host: server.host, export: server.exportPath, uid: 0, gid: 0, timeoutMs: 10000, ...extra }).then((c) => {
      others.push(c);
      return c;
    });

  before(async () => {
    server = await startGanesha();
    scratch = tempDir('nas-it');
    // No ports given: the client asks the portmapper, as it would in production.
    client = await NfsClient.connect({ host: server.host, export: server.exportPath, uid: 0, gid: 0, timeoutMs: 10000 });
  });

  after(async () => {
    for (const c of [client, ...others]) await c?.close().catch(() => undefined);
    await server?.stop();
    scratch?.remove();
  });

  describe('portmapper and MOUNT', () => {
    it('finds NFS v3 and MOUNT v3 through portmapper GETPORT', async () => {
      expect(await getPort(NFS_PROG, 3, { host: '127.0.0.1', timeoutMs: 5000 })).to.equal(server.nfsPort);
      expect(await getPort(MOUNT_PROG, 3, { host: '127.0.0.1', timeoutMs: 5000 })).to.equal(server.mountPort);
      const err = await errorOf(getPort(399999, 1, { host: '127.0.0.1', timeoutMs: 5000 }));
      expect(err?.code).to.equal('MOTUS_E_NFS_RPC_REJECTED');
      expect(err?.message).to.contain('not registered with the portmapper');
    });

    it('lists the export with EXPORT, answers NULL, and refuses an unknown export', async () => {
      const rpc = new RpcClient({ host: '127.0.0.1', port: server.mountPort, prog: MOUNT_PROG, vers: 3, auth: { flavor: 'none' }, timeoutMs: 5000, service: 'MOUNT' });
      try {
        const mount = new MountClient(rpc);
        await mount.null();
        const exports = await mount.exports();
        expect(exports.map((e) => e.dir)).to.include(server.exportPath);
      } finally {
        await rpc.close();
      }
      const err = await errorOf(NfsClient.connect({ host: server.host, export: '/no/such/export', port: server.nfsPort, mountPort: server.mountPort, uid: 0, gid: 0, timeoutMs: 5000 }));
      expect(err?.code).to.equal('MOTUS_E_NFS_MOUNT');
      expect(err?.message).to.contain('/no/such/export');
    });

    it('reports a wrong program version as a typed RPC rejection', async () => {
      const rpc = new RpcClient({ host: '127.0.0.1', port: server.nfsPort, prog: NFS_PROG, vers: 2, auth: { flavor: 'sys', uid: 0, gid: 0 }, timeoutMs: 5000, service: 'NFS' });
      try {
        const err = await errorOf(rpc.call(0, Buffer.alloc(0), { name: 'NULL' }));
        expect(err?.code).to.equal('MOTUS_E_NFS_RPC_REJECTED');
        expect(err?.message).to.match(/offers only versions \d–\d/);
      } finally {
        await rpc.close();
      }
    });
  });

  describe('NFSv3 procedures', () => {
    it('NULL and FSINFO; transfers honour rtmax/wtmax', async () => {
      await client.nfs.null();
      expect(client.info.rtmax).to.be.greaterThan(0);
      expect(client.info.wtmax).to.be.greaterThan(0);
      expect(client.readSize).to.be.at.most(client.info.rtmax);
      expect(client.writeSize).to.be.at.most(client.info.wtmax);
      // A client capped below the server's maximum never sends a bigger WRITE or asks for a bigger READ.
      const sizes: { proc: number; count: number }[] = [];
      const small = await connect({
        maxTransferSize: 64 * 1024,
        onRecord: (service, direction, record) => {
          if (service !== 'nfs' || direction !== 'call') return;
          const call = decodeCall(record);
          if (!call.ok) return;
          const { proc, args } = call.value;
          // WRITE and READ args: fh (4 + len padded), offset (8), count (4).
          const fhLen = args.readUInt32BE(0);
          const at = 4 + fhLen + ((4 - (fhLen % 4)) % 4) + 8;
          if (proc === 6 || proc === 7) sizes.push({ proc, count: args.readUInt32BE(at) });
        },
      });
      const data = pattern(300 * 1024, 3);
      await small.writeFile('rtmax.bin', data);
      expect(sha(await small.readFile('rtmax.bin'))).to.equal(sha(data));
      const writes = sizes.filter((s) => s.proc === 7);
      const reads = sizes.filter((s) => s.proc === 6);
      expect(writes.length).to.equal(5);
      expect(Math.max(...writes.map((s) => s.count))).to.equal(64 * 1024);
      expect(reads.length).to.be.at.least(5);
      expect(Math.max(...reads.map((s) => s.count))).to.be.at.most(64 * 1024);
    });

    it('GETATTR of the export root and of a file', async () => {
      const root = await client.stat('');
      expect(root.type).to.equal('directory');
      await client.writeFile('attr.txt', 'twelve bytes');
      const st = await client.stat('/attr.txt');
      expect(st).to.include({ type: 'file', size: 12, uid: 0, gid: 0, mode: 0o644 });
      expect(st.mtime.getTime()).to.be.closeTo(Date.now(), 60000);
    });

    it('SETATTR changes mode, size and mtime; a stale guard is refused', async () => {
      await client.writeFile('setattr.bin', pattern(1000, 1));
      const st = await client.setAttributes('setattr.bin', { mode: 0o600, size: 100, mtime: { seconds: 1_600_000_000, nseconds: 0 } });
      expect(st).to.include({ mode: 0o600, size: 100 });
      expect(st.mtime.getTime()).to.equal(1_600_000_000_000);
      const local = statSync(join(server.dir, 'setattr.bin'));
      expect(local.size).to.equal(100);
      expect(local.mode & 0o777).to.equal(0o600);
      const { fh } = await client.resolve('setattr.bin');
      const err = await errorOf(client.nfs.setattr(fh, { mode: 0o644 }, { seconds: 1, nseconds: 0 }, 'setattr.bin'));
      expect(err?.code).to.equal('MOTUS_E_NFS_ERROR');
      expect(err?.data.status).to.equal('NFS3ERR_NOT_SYNC');
    });

    it('LOOKUP of a missing name says "no such file or directory" and names the path', async () => {
      await client.mkdirp('lookup');
      const err = await errorOf(client.stat('lookup/missing.img'));
      expect(err?.code).to.equal('MOTUS_E_NFS_NOT_FOUND');
      expect(err?.message).to.equal('LOOKUP lookup/missing.img: no such file or directory (NFS3ERR_NOENT)');
      expect(await client.exists('lookup/missing.img')).to.equal(false);
      expect(await client.exists('lookup')).to.equal(true);
      const bad = await errorOf(client.stat('../etc/passwd'));
      expect(bad?.code).to.equal('MOTUS_E_INVALID_REQUEST');
    });

    it('ACCESS grants root everything on a file and denies another user a private file', async () => {
      await client.writeFile('private.txt', 'secret', { mode: 0o600 });
      const all = Access.READ | Access.MODIFY | Access.EXTEND | Access.DELETE | Access.LOOKUP | Access.EXECUTE;
      expect((await client.access('private.txt', Access.READ | Access.MODIFY)) & (Access.READ | Access.MODIFY)).to.equal(Access.READ | Access.MODIFY);
      const user = await connect({ uid: 1000, gid: 1000 });
      const granted = await user.access('private.txt', all);
      expect(granted & Access.READ).to.equal(0);
      expect(granted & Access.MODIFY).to.equal(0);
      const err = await errorOf(user.readFile('private.txt'));
      expect(err?.code).to.equal('MOTUS_E_NFS_ACCESS');
      expect(err?.message).to.contain('permission denied');
    });

    it('WRITE FILE_SYNC is durable at once; UNSTABLE + COMMIT returns the same verifier', async () => {
      await client.writeFile('stable.bin', '');
      const { fh } = await client.resolve('stable.bin');
      const sync = await client.nfs.write(fh, 0, Buffer.from('sync'), StableHow.FILE_SYNC);
      expect(sync.count).to.equal(4);
      expect(sync.committed).to.equal(StableHow.FILE_SYNC);
      const unstable = await client.nfs.write(fh, 4, Buffer.from('-unstable'), StableHow.UNSTABLE);
      expect(unstable.count).to.equal(9);
      expect(unstable.verifier.length).to.equal(8);
      const commit = await client.nfs.commit(fh, 0, 0);
      expect(commit.verifier.equals(unstable.verifier)).to.equal(true);
      expect(readFileSync(join(server.dir, 'stable.bin'), 'utf8')).to.equal('sync-unstable');
      const read = await client.nfs.read(fh, 4, 100);
      expect(read.data.toString()).to.equal('-unstable');
      expect(read.eof).to.equal(true);
    });

    it('CREATE: UNCHECKED truncates, GUARDED refuses an existing file, EXCLUSIVE is idempotent for its own verifier only', async () => {
      await client.mkdirp('create');
      const { fh: dir } = await client.resolve('create');
      await client.writeFile('create/f', 'old content');
      await client.nfs.create(dir, 'f', { mode: 'unchecked', attrs: { size: 0 } });
      expect((await client.stat('create/f')).size).to.equal(0);
      const guarded = await errorOf(client.nfs.create(dir, 'f', { mode: 'guarded', attrs: { mode: 0o644 } }));
      expect(guarded?.code).to.equal('MOTUS_E_NFS_EXISTS');
      expect(guarded?.message).to.equal('CREATE f: file already exists (NFS3ERR_EXIST)');
      const g2 = await client.nfs.create(dir, 'g', { mode: 'guarded', attrs: { mode: 0o640 } });
      expect(g2.fh).to.be.instanceOf(Buffer);
      const verifier = randomBytes(8);
      const first = await client.nfs.create(dir, 'x', { mode: 'exclusive', verifier });
      // A retransmitted exclusive CREATE (same verifier) succeeds with the same file.
      const again = await client.nfs.create(dir, 'x', { mode: 'exclusive', verifier });
      expect(again.fh?.equals(first.fh!)).to.equal(true);
      const other = await errorOf(client.nfs.create(dir, 'x', { mode: 'exclusive', verifier: randomBytes(8) }));
      expect(other?.code).to.equal('MOTUS_E_NFS_EXISTS');
    });

    it('createExclusive makes one lock file with content and mode; a second attempt fails', async () => {
      const st = await client.createExclusive('lockdir.lck', 'owner=host-a\n', 0o640);
      expect(st).to.include({ mode: 0o640, size: 13 });
      expect(readFileSync(join(server.dir, 'lockdir.lck'), 'utf8')).to.equal('owner=host-a\n');
      const racer = await connect();
      const results = await Promise.allSettled([racer.createExclusive('race.lck', 'b'), client.createExclusive('race.lck', 'a')]);
      expect(results.filter((r) => r.status === 'fulfilled')).to.have.length(1);
      const loser = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      expect(isNasError(loser.reason, 'MOTUS_E_NFS_EXISTS')).to.equal(true);
      const err = await errorOf(client.createExclusive('lockdir.lck', 'owner=host-b\n'));
      expect(err?.code).to.equal('MOTUS_E_NFS_EXISTS');
    });

    it('MKDIR (mkdirp), REMOVE, RMDIR (refused while not empty), RENAME', async () => {
      await client.mkdirp('tree/a/b/c');
      await client.mkdirp('tree/a/b/c');
      expect(statSync(join(server.dir, 'tree/a/b/c')).isDirectory()).to.equal(true);
      await client.writeFile('tree/a/b/c/file', 'x');
      const notDir = await errorOf(client.mkdirp('tree/a/b/c/file/d'));
      expect(notDir?.code).to.equal('MOTUS_E_NFS_EXISTS');
      const { fh: b } = await client.resolve('tree/a/b');
      const notEmpty = await errorOf(client.nfs.rmdir(b, 'c', 'tree/a/b/c'));
      expect(notEmpty?.code).to.equal('MOTUS_E_NFS_ERROR');
      expect(notEmpty?.message).to.equal('RMDIR tree/a/b/c: directory not empty (NFS3ERR_NOTEMPTY)');
      await client.rename('tree/a/b/c/file', 'tree/moved');
      expect(readFileSync(join(server.dir, 'tree/moved'), 'utf8')).to.equal('x');
      await client.writeFile('tree/target', 'old');
      await client.rename('tree/moved', 'tree/target');
      expect(readFileSync(join(server.dir, 'tree/target'), 'utf8')).to.equal('x');
      await client.remove('tree/target');
      expect(existsSync(join(server.dir, 'tree/target'))).to.equal(false);
      await client.remove('tree/a/b/c');
      await client.remove('tree', { recursive: true });
      expect(existsSync(join(server.dir, 'tree'))).to.equal(false);
      const gone = await errorOf(client.remove('tree'));
      expect(gone?.code).to.equal('MOTUS_E_NFS_NOT_FOUND');
    });

    it('READDIRPLUS pages through a directory of 300 entries with cookies and the cookie verifier', async () => {
      await client.mkdirp('many');
      const names = Array.from({ length: 300 }, (_, i) => `vm-${String(i).padStart(4, '0')}-${'x'.repeat(40)}`);
      for (let i = 0; i < names.length; i += 25) await Promise.all(names.slice(i, i + 25).map((n) => client.writeFile(`many/${n}`, n)));
      const listed = await client.list('many');
      expect(listed.map((e) => e.name).sort()).to.deep.equal([...names].sort());
      expect(listed.every((e) => e.type === 'file' && e.size === e.name.length)).to.equal(true);
      const { fh } = await client.resolve('many');
      let cookie = 0n;
      let verf: Buffer = Buffer.alloc(8);
      let pages = 0;
      let seen = 0;
      for (;;) {
        const page = await client.nfs.readdirplus(fh, cookie, verf, 1024, 4096);
        pages++;
        seen += page.entries.filter((e) => e.name !== '.' && e.name !== '..').length;
        if (page.entries.length > 0) cookie = page.entries[page.entries.length - 1]!.cookie;
        verf = page.cookieverf;
        if (page.eof) break;
      }
      expect(pages).to.be.greaterThan(5);
      expect(seen).to.equal(300);
    });

    it('FSSTAT reports the space of the file system behind the export', async () => {
      const st = await client.fsstat();
      const local = statfsSync(server.dir);
      expect(st.totalBytes).to.equal(local.blocks * local.bsize);
      expect(st.freeBytes).to.be.at.most(st.totalBytes);
      expect(st.availableBytes).to.be.at.most(st.freeBytes);
      expect(st.availableBytes).to.be.closeTo(local.bavail * local.bsize, 256 * 1024 * 1024);
    });
  });

  describe('path API, streams and the reference client (libnfs)', () => {
    it('8 MiB write and read with checksum; throughput against nfs-cp in the same run', async () => {
      const size = 8 * 1024 * 1024;
      const data = pattern(size, 8);
      const local = join(scratch.path, 'big.bin');
      writeFileSync(local, data);
      const mib = size / (1024 * 1024);
      const time = async (fn: () => unknown) => {
        const t = process.hrtime.bigint();
        await fn();
        return Number(process.hrtime.bigint() - t) / 1e9;
      };
      // One small round trip each first, so neither side pays for first-use costs inside the timing.
      await client.writeFile('warm.bin', data.subarray(0, 1024 * 1024));
      await client.readFile('warm.bin');
      libnfs('nfs-cp', [server.url('warm.bin'), join(scratch.path, 'warm.bin')]);
      const motusWrite = await time(() => client.writeFile('big-motus.bin', data));
      let back: Buffer = Buffer.alloc(0);
      const motusRead = await time(async () => (back = await client.readFile('big-motus.bin')));
      expect(sha(back)).to.equal(sha(data));
      expect(sha(readFileSync(join(server.dir, 'big-motus.bin')))).to.equal(sha(data));
      const cpWrite = await time(() => libnfs('nfs-cp', [local, server.url('big-libnfs.bin')]));
      const localBack = join(scratch.path, 'big-back.bin');
      const cpRead = await time(() => libnfs('nfs-cp', [server.url('big-libnfs.bin'), localBack]));
      expect(sha(readFileSync(localBack))).to.equal(sha(data));
      const rate = (s: number) => (mib / s).toFixed(1);
      console.log(
        `      8 MiB via ganesha on loopback: Motus write ${rate(motusWrite)} MiB/s, read ${rate(motusRead)} MiB/s; ` +
          `nfs-cp write ${rate(cpWrite)} MiB/s, read ${rate(cpRead)} MiB/s; ratio write ${(cpWrite / motusWrite).toFixed(2)}, read ${(cpRead / motusRead).toFixed(2)}`,
      );
    });

    it('a file written by Motus reads back identically with nfs-cp, and the other way round', async () => {
      const data = pattern(1_234_567, 5);
      await client.mkdirp('xcheck');
      await client.writeFile('xcheck/from-motus.bin', data);
      const out = join(scratch.path, 'from-motus.bin');
      libnfs('nfs-cp', [server.url('xcheck/from-motus.bin'), out]);
      expect(sha(readFileSync(out))).to.equal(sha(data));
      const src = join(scratch.path, 'from-libnfs.bin');
      const data2 = pattern(777_777, 6);
      writeFileSync(src, data2);
      libnfs('nfs-cp', [src, server.url('xcheck/from-libnfs.bin')]);
      expect(sha(await client.readFile('xcheck/from-libnfs.bin'))).to.equal(sha(data2));
      const ls = libnfs('nfs-ls', [server.url('xcheck')]);
      expect(ls).to.contain('from-motus.bin').and.to.contain('from-libnfs.bin');
      const names = (await client.list('xcheck')).map((e) => e.name).sort();
      expect(names).to.deep.equal(['from-libnfs.bin', 'from-motus.bin']);
      expect((await client.list('xcheck')).find((e) => e.name === 'from-libnfs.bin')?.size).to.equal(777_777);
      await client.writeFile('xcheck/cat.txt', 'twelve bytes');
      expect(libnfs('nfs-cat', [server.url('xcheck/cat.txt')])).to.equal('twelve bytes');
    });

    it('streams: createWriteStream with periodic commits, createReadStream with a byte range', async () => {
      const data = pattern(5 * 1024 * 1024 + 333, 9);
      const parts = (function* () {
        for (let i = 0; i < data.length; i += 100_000) yield data.subarray(i, i + 100_000);
      })();
      await pipeline(Readable.from(parts), client.createWriteStream('stream.bin', { commitEveryBytes: 1024 * 1024 }));
      expect(sha(readFileSync(join(server.dir, 'stream.bin')))).to.equal(sha(data));
      const chunks: Buffer[] = [];
      for await (const c of client.createReadStream('stream.bin', { start: 1000, end: 3_000_000 })) chunks.push(c as Buffer);
      expect(sha(Buffer.concat(chunks))).to.equal(sha(data.subarray(1000, 3_000_000)));
      const all: Buffer[] = [];
      for await (const c of client.createReadStream('stream.bin')) all.push(c as Buffer);
      expect(Buffer.concat(all).equals(data)).to.equal(true);
      await client.writeFile('empty.bin', '');
      const empty: Buffer[] = [];
      for await (const c of client.createReadStream('empty.bin')) empty.push(c as Buffer);
      expect(Buffer.concat(empty).length).to.equal(0);
    });

    it('list shows types and sizes like nfs-ls does', async () => {
      await client.mkdirp('listing/sub');
      await client.writeFile('listing/one', '1');
      const entries = await client.list('listing');
      expect(entries.map((e) => [e.name, e.type]).sort()).to.deep.equal([
        ['one', 'file'],
        ['sub', 'directory'],
      ]);
      const ls = libnfs('nfs-ls', [server.url('listing')]);
      expect(ls).to.match(/^d.*\bsub$/m);
      expect(ls).to.match(/^-.*\s1\s+one$/m);
    });
  });

  describe('server failures', () => {
    it('a server reboot between UNSTABLE writes and COMMIT changes the verifier; the writer rewrites what was lost', async () => {
      const data = pattern(3 * 1024 * 1024, 12);
      await client.writeFile('reboot.bin', '');
      const { fh } = await client.resolve('reboot.bin');
      const writer = new UnstableWriter(client.nfs, fh, 'reboot.bin', 4);
      const chunk = 256 * 1024;
      for (let o = 0; o < data.length / 2; o += chunk) await writer.write(o, data.subarray(o, o + chunk));
      await server.restart();
      for (let o = data.length / 2; o < data.length; o += chunk) await writer.write(o, data.subarray(o, o + chunk));
      await writer.commit();
      expect(writer.stats.rewrites).to.be.greaterThan(0);
      expect(sha(readFileSync(join(server.dir, 'reboot.bin')))).to.equal(sha(data));
      expect(sha(await client.readFile('reboot.bin'))).to.equal(sha(data));
    });

    it('ganesha killed mid-transfer and restarted: the client reconnects, retransmits and finishes', async () => {
      const data = pattern(48 * 1024 * 1024, 13);
      const c = await connect({ maxTransferSize: 256 * 1024, maxInFlight: 2, timeoutMs: 30000 });
      const writing = c.writeFile('crash.bin', data);
      await new Promise((r) => setTimeout(r, 150));
      await server.kill();
      await new Promise((r) => setTimeout(r, 500));
      await server.restart();
      await writing;
      expect(c.nfs.rpc.stats.connects).to.be.at.least(2);
      expect(sha(await c.readFile('crash.bin'))).to.equal(sha(data));
      const reading = c.readFile('crash.bin');
      await new Promise((r) => setTimeout(r, 50));
      await server.kill();
      await server.restart();
      expect(sha(await reading)).to.equal(sha(data));
    });

    it('with the server gone for good, calls fail with a clear timeout instead of hanging', async () => {
      await client.writeFile('gone.txt', 'still here');
      const c = await connect({ timeoutMs: 1500 });
      await server.kill();
      try {
        const t = Date.now();
        const err = await errorOf(c.stat('gone.txt'));
        expect(err?.code).to.equal('MOTUS_E_TIMEOUT');
        expect(err?.message).to.match(/NFS LOOKUP to 127\.0\.0\.1:\d+ got no reply within 1500 ms/);
        expect(Date.now() - t).to.be.lessThan(4000);
      } finally {
        await server.restart();
      }
      expect((await c.readFile('gone.txt')).toString()).to.equal('still here');
      rmSync(join(scratch.path, 'big.bin'), { force: true });
    });
  });
});
