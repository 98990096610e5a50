import { expect } from 'chai';
import { createServer, type Server } from 'node:net';
import { decodeXdr, encodeRecord, encodeReply, isNasError, RpcClient, XdrWriter, AUTH_SYS, type RpcClientOptions } from '@motus/storage-nas';
import { startFakeRpcServer, type FakeCall, type FakeRpcServer } from '../support/fake-rpc-server.js';
import { freePort, sleep } from '../../support/index.js';

const u32 = (n: number) => new XdrWriter().uint32(n).toBuffer();
const readU32 = (b: Buffer) => {
  const r = decodeXdr(b, (x) => x.uint32());
  if (!r.ok) throw new Error(r.error.message);
  return r.value;
};

describe('storage-nas RPC session (fake server)', function () {
  this.timeout(20000);
  let server: FakeRpcServer | undefined;
  let client: RpcClient | undefined;

  afterEach(async () => {
    await client?.close();
    await server?.close();
    client = undefined;
    server = undefined;
  });

  function clientFor(port: number, extra: Partial<RpcClientOptions> = {}): RpcClient {
    client = new RpcClient({ host: '127.0.0.1', port, prog: 400000, vers: 1, auth: { flavor: 'sys', uid: 1000, gid: 100, gids: [4, 5] }, timeoutMs: 2000, service: 'TEST', ...extra });
    return client;
  }

  it('sends AUTH_SYS calls and matches 50 concurrent replies answered in reverse order', async () => {
    const held: FakeCall[] = [];
    server = await startFakeRpcServer((call, s) => {
      held.push(call);
      if (held.length === 50) for (const c of held.reverse()) s.reply(c, encodeReply(c.xid, { status: 'success', results: u32(readU32(c.args) * 2) }));
    });
    const c = clientFor(server.port);
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => c.call(1, u32(i)).then(readU32)));
    expect(results).to.deep.equal(Array.from({ length: 50 }, (_, i) => i * 2));
    expect(server.connections).to.equal(1);
    expect(server.calls[0]!.credFlavor).to.equal(AUTH_SYS);
    expect(new Set(server.calls.map((x) => x.xid)).size).to.equal(50);
  });

  it('times out one call without disturbing the others, and ignores its late reply', async () => {
    server = await startFakeRpcServer((call, s) => {
      const n = readU32(call.args);
      if (n === 1) setTimeout(() => s.reply(call, encodeReply(call.xid, { status: 'success', results: u32(1) })), 600);
      else s.reply(call, encodeReply(call.xid, { status: 'success', results: u32(n) }));
    });
    const c = clientFor(server.port);
    const slow = c.call(1, u32(1), { timeoutMs: 200, name: 'SLOW' });
    const fast = await c.call(1, u32(2));
    expect(readU32(fast)).to.equal(2);
    const err = await slow.then(() => undefined, (e: unknown) => e);
    expect(isNasError(err, 'MOTUS_E_TIMEOUT')).to.equal(true);
    expect((err as Error).message).to.match(/TEST SLOW to 127\.0\.0\.1:\d+ got no reply within 200 ms/);
    await sleep(700);
    expect(c.stats.strayReplies).to.equal(1);
    expect(readU32(await c.call(1, u32(3)))).to.equal(3);
  });

  it('reconnects after the server drops the connection and retransmits waiting calls with the same xid', async () => {
    server = await startFakeRpcServer((call, s) => {
      // The first connection swallows calls and is then cut; the second one answers.
      if (call.connection === 1) {
        if (s.calls.length === 3) setTimeout(() => s.dropAll(), 50);
        return;
      }
      s.reply(call, encodeReply(call.xid, { status: 'success', results: call.args }));
    });
    const c = clientFor(server.port, { timeoutMs: 5000 });
    const results = await Promise.all([1, 2, 3].map((n) => c.call(1, u32(n)).then(readU32)));
    expect(results).to.deep.equal([1, 2, 3]);
    expect(server.connections).to.equal(2);
    expect(c.stats.retransmissions).to.equal(3);
    const first = server.calls.filter((x) => x.connection === 1).map((x) => x.xid).sort();
    const second = server.calls.filter((x) => x.connection === 2).map((x) => x.xid).sort();
    expect(second).to.deep.equal(first);
  });

  it('keeps retrying while the server is down and finishes when it comes back', async () => {
    const port = await freePort();
    const c = clientFor(port, { timeoutMs: 5000, connectTimeoutMs: 500 });
    const call = c.call(1, u32(9));
    await sleep(400);
    let plain: Server | undefined;
    await new Promise<void>((resolve) => {
      plain = createServer((socket) => {
        socket.on('data', (chunk: Buffer) => {
          // One record per chunk is enough here: the call is tiny.
          const xid = chunk.readUInt32BE(4);
          socket.write(encodeRecord(encodeReply(xid, { status: 'success', results: u32(42) })));
        });
      }).listen(port, '127.0.0.1', resolve);
    });
    try {
      expect(readU32(await call)).to.equal(42);
      expect(c.stats.connects).to.equal(1);
    } finally {
      // server.close waits for open connections, so the client goes first.
      await c.close();
      await new Promise<void>((resolve) => plain!.close(() => resolve()));
    }
  });

  it('gives a clear timeout naming the connection error when nothing listens', async () => {
    const c = clientFor(await freePort(), { timeoutMs: 600 });
    const err = await c.call(0, Buffer.alloc(0), { name: 'NULL' }).then(() => undefined, (e: unknown) => e);
    expect(isNasError(err, 'MOTUS_E_TIMEOUT')).to.equal(true);
    expect((err as Error).message).to.contain('ECONNREFUSED');
  });

  it('turns denied and unaccepted replies into MOTUS_E_NFS_RPC_REJECTED with the reason', async () => {
    const bodies = [
      { status: 'prog-unavail' },
      { status: 'prog-mismatch', low: 2, high: 2 },
      { status: 'proc-unavail' },
      { status: 'garbage-args' },
      { status: 'system-err' },
      { status: 'rpc-mismatch', low: 3, high: 3 },
      { status: 'auth-error', authStat: 1 },
    ] as const;
    server = await startFakeRpcServer((call, s) => s.reply(call, encodeReply(call.xid, bodies[readU32(call.args)]!)));
    const c = clientFor(server.port);
    const messages: string[] = [];
    for (let i = 0; i < bodies.length; i++) {
      const err = await c.call(5, u32(i), { name: 'PING' }).then(() => undefined, (e: unknown) => e);
      expect(isNasError(err, 'MOTUS_E_NFS_RPC_REJECTED'), bodies[i]!.status).to.equal(true);
      messages.push((err as Error).message);
    }
    expect(messages[0]).to.contain('is not served on that port');
    expect(messages[1]).to.contain('offers only versions 2–2');
    expect(messages[2]).to.contain('does not implement PING');
    expect(messages[3]).to.contain('could not decode the arguments');
    expect(messages[6]).to.contain('AUTH_BADCRED');
  });

  it('fails just the call whose reply is malformed, and ignores replies with unknown xids', async () => {
    server = await startFakeRpcServer((call, s) => {
      const n = readU32(call.args);
      if (n === 0) {
        // xid, REPLY, then an accept state that does not exist.
        s.reply(call, new XdrWriter().uint32(call.xid).uint32(1).uint32(0).uint32(0).uint32(0).uint32(99).toBuffer());
      } else {
        s.reply(call, encodeReply((call.xid + 1000) >>> 0, { status: 'success', results: u32(0) }));
        s.reply(call, encodeReply(call.xid, { status: 'success', results: u32(n) }));
      }
    });
    const c = clientFor(server.port);
    const bad = await c.call(1, u32(0)).then(() => undefined, (e: unknown) => e);
    expect(isNasError(bad, 'MOTUS_E_NFS_PROTOCOL')).to.equal(true);
    expect(readU32(await c.call(1, u32(5)))).to.equal(5);
    expect(c.stats.strayReplies).to.equal(1);
  });

  it('fails waiting calls with MOTUS_E_NFS_PROTOCOL when the server announces an oversized record', async () => {
    server = await startFakeRpcServer((call) => call.socket.write(Buffer.from([0xff, 0xff, 0xff, 0xff])));
    const c = clientFor(server.port, { maxRecordSize: 4096 });
    const err = await c.call(1, u32(1)).then(() => undefined, (e: unknown) => e);
    expect(isNasError(err, 'MOTUS_E_NFS_PROTOCOL')).to.equal(true);
    expect((err as Error).message).to.contain('over the limit of 4096');
  });

  it('retransmits a call whose reply was cut off mid-record by a dropped connection', async () => {
    server = await startFakeRpcServer((call, s) => {
      const full = encodeRecord(encodeReply(call.xid, { status: 'success', results: u32(7) }));
      if (call.connection === 1) {
        call.socket.write(full.subarray(0, full.length - 3));
        setTimeout(() => s.dropAll(), 30);
      } else call.socket.write(full);
    });
    const c = clientFor(server.port, { timeoutMs: 5000 });
    expect(readU32(await c.call(1, Buffer.alloc(0)))).to.equal(7);
    expect(c.stats.retransmissions).to.equal(1);
  });

  it('rejects calls after close with MOTUS_E_NFS_DISCONNECTED, including those in flight', async () => {
    server = await startFakeRpcServer(() => undefined);
    const c = clientFor(server.port);
    const inFlight = c.call(1, Buffer.alloc(0)).then(() => undefined, (e: unknown) => e);
    await sleep(100);
    await c.close();
    const err = await inFlight;
    expect(isNasError(err, 'MOTUS_E_NFS_DISCONNECTED')).to.equal(true);
    const after = await c.call(1, Buffer.alloc(0)).then(() => undefined, (e: unknown) => e);
    expect(isNasError(after, 'MOTUS_E_NFS_DISCONNECTED')).to.equal(true);
  });

  it('close() during a connection attempt abandons it: no socket is left open', async () => {
    // A listener that never accepts quickly enough is hard to make; a server that
    // is slow to be reached is simulated by closing right after the first call starts connecting.
    server = await startFakeRpcServer(() => undefined);
    const c = clientFor(server.port);
    const call = c.call(1, Buffer.alloc(0)).then(() => undefined, (e: unknown) => e);
    await c.close();
    expect(isNasError(await call, 'MOTUS_E_NFS_DISCONNECTED')).to.equal(true);
    await sleep(100);
    expect(server.connections).to.be.at.most(1);
    expect(server.calls).to.have.length(0);
  });

  it('drops a connection on which nothing arrives before a call times out, and the next call uses a fresh one', async () => {
    server = await startFakeRpcServer((call, s) => {
      if (call.connection > 1) s.reply(call, encodeReply(call.xid, { status: 'success', results: u32(1) }));
    });
    const c = clientFor(server.port);
    const err = await c.call(1, Buffer.alloc(0), { timeoutMs: 300 }).then(() => undefined, (e: unknown) => e);
    expect(isNasError(err, 'MOTUS_E_TIMEOUT')).to.equal(true);
    expect(readU32(await c.call(1, Buffer.alloc(0)))).to.equal(1);
    expect(server.connections).to.equal(2);
  });
});
