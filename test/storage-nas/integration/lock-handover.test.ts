/**
 * The lock handover of a switchover against a real nfs-ganesha: the owner
 * rewrites its file in place for the receiver, which adopts it without the
 * settle wait; anything that is not that exact grant falls back to the safe path.
 */
import { expect } from 'chai';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeLock, isNasError, NfsClient, NfsLockManager, type HeldLock } from '@motus/storage-nas';
import { startGanesha, type GaneshaServer } from '../support/ganesha.js';

const HEARTBEAT = 100;
const LEASE = 700;
const SETTLE = 1500;

describe('storage-nas lock handover against nfs-ganesha', function () {
  this.timeout(60000);
  let server: GaneshaServer;
  const clients: NfsClient[] = [];
  const locks: HeldLock[] = [];

  const manager = async (host: string) => {
    const c = await NfsClient.connect({ host: server.host, export: server.exportPath, port: server.nfsPort, mountPort: server.mountPort, uid: 0, gid: 0, timeoutMs: 2000 });
    clients.push(c);
    return new NfsLockManager(c, { host, heartbeatMs: HEARTBEAT, leaseMs: LEASE, settleMs: SETTLE });
  };
  const keep = (l: HeldLock) => (locks.push(l), l);
  const onServer = (name: string) => decodeLock(readFileSync(join(server.dir, name)));

  before(async () => {
    server = await startGanesha();
  });
  afterEach(async () => {
    for (const l of locks.splice(0)) await l.release().catch(() => undefined);
  });
  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await server?.stop();
  });

  it('hands a lock over in place and the receiver adopts it at once, keeping the same file', async () => {
    const a = await manager('host-a');
    const b = await manager('host-b');
    const lock = keep(await a.acquire('h1.lck'));
    const fileid = lock.fileid;
    const t = performance.now();
    await lock.handOver('host-b', 'tok-1');
    expect(onServer('h1.lck')).to.include({ owner: 'host-b', grantedBy: 'host-a', token: 'tok-1' });
    const adopted = keep((await b.adopt('h1.lck', 'host-a', 'tok-1'))!);
    const ms = performance.now() - t;
    expect(adopted.held).to.equal(true);
    expect(adopted.fileid, 'the name was never free: the same file').to.equal(fileid);
    expect(ms, 'no settle wait').to.be.lessThan(SETTLE / 2);
    console.log(`      handover + adoption in ${ms.toFixed(1)} ms`);
    const content = onServer('h1.lck')!;
    expect(content).to.include({ owner: 'host-b', token: 'tok-1' });
    expect(content.grantedBy).to.equal(undefined);
    expect(lock.held).to.equal(false);
    await new Promise((r) => setTimeout(r, 4 * HEARTBEAT));
    expect(onServer('h1.lck')!.seq, 'the receiver refreshes it').to.be.greaterThan(1);
  });

  it('adopts nothing but the exact grant: wrong token, wrong grantor, wrong receiver, no lock', async () => {
    const a = await manager('host-a');
    const b = await manager('host-b');
    const c = await manager('host-c');
    expect(await b.adopt('h2.lck', 'host-a', 'tok-2')).to.equal(undefined);
    const lock = keep(await a.acquire('h2.lck'));
    expect(await b.adopt('h2.lck', 'host-a', 'tok-2'), 'not granted yet').to.equal(undefined);
    await lock.handOver('host-b', 'tok-2');
    expect(await b.adopt('h2.lck', 'host-a', 'other-token')).to.equal(undefined);
    expect(await b.adopt('h2.lck', 'host-x', 'tok-2')).to.equal(undefined);
    expect(await c.adopt('h2.lck', 'host-a', 'tok-2')).to.equal(undefined);
    expect(onServer('h2.lck'), 'failed adoptions leave the grant as it was').to.include({ owner: 'host-b', grantedBy: 'host-a', token: 'tok-2', seq: 0 });
    keep((await b.adopt('h2.lck', 'host-a', 'tok-2'))!);
  });

  it('a grant nobody adopts turns stale and is taken over after the lease, like a dead lock', async () => {
    const a = await manager('host-a');
    const c = await manager('host-c');
    const lock = keep(await a.acquire('h3.lck'));
    await lock.handOver('host-b', 'tok-3');
    const t = performance.now();
    const taken = keep(await c.acquire('h3.lck'));
    const ms = performance.now() - t;
    expect(ms).to.be.at.least(LEASE);
    expect(onServer('h3.lck')).to.include({ owner: 'host-c', token: taken.token });
    const b = await manager('host-b');
    expect(await b.adopt('h3.lck', 'host-a', 'tok-3'), 'too late: the grant was taken over').to.equal(undefined);
  });

  it('refuses to hand over a lock that is no longer held', async () => {
    const a = await manager('host-a');
    const lock = await a.acquire('h4.lck');
    await lock.release();
    expect(existsSync(join(server.dir, 'h4.lck'))).to.equal(false);
    const err = await lock.handOver('host-b', 'tok-4').catch((e: unknown) => e);
    expect(isNasError(err, 'MOTUS_E_NFS_LOCK_LOST')).to.equal(true);
  });
});
