import { expect } from 'chai';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { decodeLock, encodeLock, isNasError, NfsClient, NfsLockManager, type HeldLock, type LockOptions } from '@motus/storage-nas';
import { startGanesha, type GaneshaServer } from '../support/ganesha.js';

const HEARTBEAT = 100;
const LEASE = 700;
const SETTLE = 400;

describe('storage-nas VM disk locks against nfs-ganesha', function () {
  this.timeout(60000);
  let server: GaneshaServer;
  const clients: NfsClient[] = [];
  const locks: HeldLock[] = [];

  const hostClient = async (timeoutMs = 2000) => {
    const c = await NfsClient.connect({ host: server.host, export: server.exportPath, port: server.nfsPort, mountPort: server.mountPort, uid: 0, gid: 0, timeoutMs });
    clients.push(c);
    return c;
  };
  const manager = async (host: string, extra: Partial<LockOptions> = {}, timeoutMs?: number) =>
    new NfsLockManager(await hostClient(timeoutMs), { host, heartbeatMs: HEARTBEAT, leaseMs: LEASE, settleMs: SETTLE, ...extra });
  const keep = (l: HeldLock) => {
    locks.push(l);
    return l;
  };
  const onServer = (name: string) => join(server.dir, name);

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

  it('takes a free lock at once, names the owner in the file, refreshes it, and removes it on release', async () => {
    const a = await manager('host-a');
    const t = Date.now();
    const lock = keep(await a.acquire('disk-1.lck'));
    expect(Date.now() - t).to.be.lessThan(SETTLE + 1000);
    const first = decodeLock(readFileSync(onServer('disk-1.lck')));
    expect(first).to.include({ owner: 'host-a', token: lock.token });
    await new Promise((r) => setTimeout(r, 4 * HEARTBEAT));
    expect(decodeLock(readFileSync(onServer('disk-1.lck')))!.seq).to.be.greaterThan(first!.seq);
    expect(lock.held).to.equal(true);
    await lock.release();
    expect(existsSync(onServer('disk-1.lck'))).to.equal(false);
    expect(() => lock.assertHeld()).to.throw(/released/);
  });

  it('refuses a lock held by a live host, naming it, without waiting a whole lease', async () => {
    const a = await manager('host-a');
    const b = await manager('host-b');
    keep(await a.acquire('disk-2.lck'));
    const t = Date.now();
    const err = await b.acquire('disk-2.lck').then(() => undefined, (e: unknown) => e);
    expect(isNasError(err, 'MOTUS_E_NFS_LOCK_HELD')).to.equal(true);
    expect((err as Error).message).to.contain('held by host-a');
    expect(Date.now() - t).to.be.lessThan(LEASE);
    expect(decodeLock(readFileSync(onServer('disk-2.lck')))!.owner).to.equal('host-a');
  });

  it('two hosts racing for a free lock: exactly one wins', async () => {
    const [a, b, c] = [await manager('host-a'), await manager('host-b'), await manager('host-c')];
    const results = await Promise.allSettled([a.acquire('disk-3.lck'), b.acquire('disk-3.lck'), c.acquire('disk-3.lck')]);
    const won = results.filter((r): r is PromiseFulfilledResult<HeldLock> => r.status === 'fulfilled');
    expect(won).to.have.length(1);
    keep(won[0]!.value);
    for (const r of results) if (r.status === 'rejected') expect(isNasError(r.reason, 'MOTUS_E_NFS_LOCK_HELD')).to.equal(true);
    const owner = decodeLock(readFileSync(onServer('disk-3.lck')))!;
    expect(owner.token).to.equal(won[0]!.value.token);
  });

  it('takes over a lock whose owner died, after the lease and not before', async () => {
    writeFileSync(onServer('disk-4.lck'), encodeLock({ owner: 'dead-host', token: 'feedface', seq: 41 }));
    const b = await manager('host-b');
    const t = Date.now();
    const lock = keep(await b.acquire('disk-4.lck'));
    const elapsed = Date.now() - t;
    expect(elapsed).to.be.at.least(LEASE);
    expect(elapsed).to.be.lessThan(LEASE + SETTLE + 2000);
    expect(decodeLock(readFileSync(onServer('disk-4.lck')))).to.include({ owner: 'host-b', token: lock.token });
  });

  it('two hosts racing for one stale lock: exactly one takes it over', async () => {
    writeFileSync(onServer('disk-5.lck'), encodeLock({ owner: 'dead-host', token: 'deadbeef', seq: 7 }));
    const [b, c] = [await manager('host-b'), await manager('host-c')];
    const results = await Promise.allSettled([b.acquire('disk-5.lck'), c.acquire('disk-5.lck')]);
    const won = results.filter((r): r is PromiseFulfilledResult<HeldLock> => r.status === 'fulfilled');
    expect(won, JSON.stringify(results.map((r) => (r.status === 'rejected' ? String(r.reason) : 'won')))).to.have.length(1);
    keep(won[0]!.value);
    const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(isNasError(lost.reason, 'MOTUS_E_NFS_LOCK_HELD'), String(lost.reason)).to.equal(true);
    expect(decodeLock(readFileSync(onServer('disk-5.lck')))!.token).to.equal(won[0]!.value.token);
  });

  it('a holder whose lock file another host removed learns it at the next heartbeat and must stop', async () => {
    const a = await manager('host-a');
    const lock = keep(await a.acquire('disk-6.lck'));
    // Through NFS, as another host would: ganesha does not see changes made behind its back at once.
    await (await hostClient()).remove('disk-6.lck');
    const reason = await Promise.race([lock.lost, new Promise((r) => setTimeout(() => r('not noticed'), 5 * HEARTBEAT))]);
    expect(reason).to.equal('the lock file was removed');
    expect(lock.held).to.equal(false);
    expect(() => lock.assertHeld()).to.throw(/lost: the lock file was removed/);
    try {
      lock.assertHeld();
    } catch (err) {
      expect(isNasError(err, 'MOTUS_E_NFS_LOCK_LOST')).to.equal(true);
    }
  });

  it('a holder cut off from the server for longer than the lease counts its lock as lost', async () => {
    const a = await manager('host-a', {}, 250);
    const lock = keep(await a.acquire('disk-7.lck'));
    await server.kill();
    try {
      const reason = await Promise.race([lock.lost, new Promise<string>((r) => setTimeout(() => r('not noticed'), LEASE + 2000))]);
      expect(reason).to.match(/could not be refreshed for 700 ms/);
    } finally {
      await server.restart();
    }
  });

  it('refuses a lease shorter than two heartbeats', async () => {
    const c = await hostClient();
    expect(() => new NfsLockManager(c, { host: 'h', heartbeatMs: 500, leaseMs: 600 })).to.throw(/at least two heartbeats/);
  });
});
