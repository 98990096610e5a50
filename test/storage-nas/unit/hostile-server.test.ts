import { expect } from 'chai';
import { MotusError } from '@motus/sdk';
import { encodeReply, isNasError, MountClient, Nfs3Client, NfsClient, RpcClient, StableHow, XdrWriter } from '@motus/storage-nas';
import { startFakeRpcServer, type FakeRpcServer } from '../support/fake-rpc-server.js';
import { prng, randomBytes } from '../../support/index.js';

/**
 * A server that answers NFS and MOUNT calls with accepted replies whose results
 * are garbage, cut short or lying about lengths: every call must end in a
 * MotusError (or a value, when the garbage happens to be well formed), never in
 * another kind of exception, a crash or a hang.
 */
describe('storage-nas client against a hostile server', function () {
  this.timeout(30000);
  let server: FakeRpcServer | undefined;
  const clients: RpcClient[] = [];

  afterEach(async () => {
    for (const c of clients.splice(0)) await c.close();
    await server?.close();
    server = undefined;
  });

  const rpcTo = (port: number, prog = 100003, vers = 3) => {
    const c = new RpcClient({ host: '127.0.0.1', port, prog, vers, auth: { flavor: 'sys', uid: 0, gid: 0 }, timeoutMs: 1000, service: 'NFS' });
    clients.push(c);
    return c;
  };

  for (const seed of [21, 22, 23]) {
    it(`every NFS procedure fed 40 garbage results each (seed ${seed}) fails with a MotusError or decodes`, async () => {
      const next = prng(seed);
      server = await startFakeRpcServer((call, s) => {
        const len = Math.floor(next() * 160);
        const body = randomBytes(next, len - (len % 4));
        // Status 0 most of the time, so the decoders of the OK bodies get exercised.
        if (body.length >= 4 && next() < 0.8) body.writeUInt32BE(0, 0);
        for (let i = 4; i + 4 <= body.length; i += 4) if (next() < 0.4) body.writeUInt32BE(Math.floor(next() * 3), i);
        s.reply(call, encodeReply(call.xid, { status: 'success', results: body }));
      });
      const nfs = new Nfs3Client(rpcTo(server.port));
      const fh = Buffer.alloc(16, 1);
      const ops: (() => Promise<unknown>)[] = [
        () => nfs.getattr(fh),
        () => nfs.setattr(fh, { mode: 0o644 }),
        () => nfs.lookup(fh, 'x'),
        () => nfs.access(fh, 0x3f),
        () => nfs.read(fh, 0, 64),
        () => nfs.write(fh, 0, Buffer.alloc(8), StableHow.UNSTABLE),
        () => nfs.commit(fh, 0, 0),
        () => nfs.create(fh, 'x', { mode: 'guarded', attrs: {} }),
        () => nfs.mkdir(fh, 'x', {}),
        () => nfs.remove(fh, 'x'),
        () => nfs.rmdir(fh, 'x'),
        () => nfs.rename(fh, 'a', fh, 'b'),
        () => nfs.readdirplus(fh, 0n, Buffer.alloc(8), 4096, 8192),
        () => nfs.fsstat(fh),
        () => nfs.fsinfo(fh),
      ];
      let failures = 0;
      for (let round = 0; round < 40; round++) {
        for (const op of ops) {
          try {
            await op();
          } catch (err) {
            expect(err).to.be.instanceOf(MotusError);
            // JUKEBOX garbage would be retried; anything else surfaces as a coded error, never a timeout.
            expect((err as MotusError).code).to.not.equal('MOTUS_E_TIMEOUT');
            failures++;
          }
        }
      }
      expect(failures).to.be.greaterThan(300);
    });
  }

  it('a READ reply whose data is longer than asked, or whose count disagrees, is a protocol error', async () => {
    const replies = [
      // status OK, no attrs, count 8, eof, 8 bytes — but only 4 were asked for.
      new XdrWriter().uint32(0).bool(false).uint32(8).bool(true).opaque(Buffer.alloc(8)).toBuffer(),
      // count says 100, data has 4 bytes.
      new XdrWriter().uint32(0).bool(false).uint32(100).bool(true).opaque(Buffer.alloc(4)).toBuffer(),
      // data length runs past the end of the record.
      new XdrWriter().uint32(0).bool(false).uint32(4).bool(true).uint32(4000).toBuffer(),
    ];
    let i = 0;
    server = await startFakeRpcServer((call, s) => s.reply(call, encodeReply(call.xid, { status: 'success', results: replies[i++ % replies.length]! })));
    const nfs = new Nfs3Client(rpcTo(server.port));
    for (let n = 0; n < replies.length; n++) {
      const err = await nfs.read(Buffer.alloc(8), 0, 4, 'disk.img').then(() => undefined, (e: unknown) => e);
      expect(isNasError(err, 'MOTUS_E_NFS_PROTOCOL'), `reply ${n}`).to.equal(true);
      expect((err as Error).message).to.match(/^NFS READ reply from 127\.0\.0\.1:\d+ is malformed: /);
    }
  });

  it('MOUNT replies that lie (a 1000-byte file handle, an endless export list) are refused', async () => {
    const huge = new XdrWriter().uint32(0).opaque(Buffer.alloc(1000)).uint32(0).toBuffer();
    const endless = new XdrWriter();
    for (let i = 0; i < 100; i++) endless.bool(true).string(`/e${i}`).bool(false);
    server = await startFakeRpcServer((call, s) => s.reply(call, encodeReply(call.xid, { status: 'success', results: call.proc === 1 ? huge : endless.toBuffer() })));
    const mount = new MountClient(rpcTo(server.port, 100005, 3));
    const mnt = await mount.mnt('/x').then(() => undefined, (e: unknown) => e);
    expect(isNasError(mnt, 'MOTUS_E_NFS_PROTOCOL')).to.equal(true);
    expect((mnt as Error).message).to.contain('fhandle3 length 1000 exceeds the limit of 64');
    const exp = await mount.exports().then(() => undefined, (e: unknown) => e);
    expect(isNasError(exp, 'MOTUS_E_NFS_PROTOCOL')).to.equal(true);
  });

  it('a server that never answers gives NfsClient.connect a timeout, not a hang', async () => {
    server = await startFakeRpcServer(() => undefined);
    const t = Date.now();
    const err = await NfsClient.connect({ host: '127.0.0.1', export: '/x', port: server.port, mountPort: server.port, uid: 0, gid: 0, timeoutMs: 500 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isNasError(err, 'MOTUS_E_TIMEOUT')).to.equal(true);
    expect((err as Error).message).to.contain('MOUNT MNT');
    expect(Date.now() - t).to.be.lessThan(3000);
  });

  it('refuses an export that offers only Kerberos flavors, naming them', async () => {
    // MNT OK, a 16-byte handle, flavors [390003, 390004] (RPCSEC_GSS krb5, krb5i).
    const mnt = new XdrWriter().uint32(0).opaque(Buffer.alloc(16, 3)).uint32(2).uint32(390003).uint32(390004).toBuffer();
    server = await startFakeRpcServer((call, s) => s.reply(call, encodeReply(call.xid, { status: 'success', results: call.proc === 1 ? mnt : Buffer.alloc(0) })));
    const err = await NfsClient.connect({ host: '127.0.0.1', export: '/secure', port: server.port, mountPort: server.port, uid: 0, gid: 0, timeoutMs: 1000 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isNasError(err, 'MOTUS_E_NFS_MOUNT')).to.equal(true);
    expect((err as Error).message).to.contain('accepts only security flavors 390003, 390004');
  });
});
