/**
 * File-based VM disk locks on NFSv3 without NLM, in the manner ESXi uses on NAS
 * datastores: a lock file per disk, created with an EXCLUSIVE CREATE, holding the
 * owner's host name, a random token and a heartbeat counter that the owner
 * rewrites (FILE_SYNC) every `heartbeatMs`.
 *
 * Liveness is judged by observation, never by comparing clocks: a contender that
 * finds a lock watches it for `leaseMs`; any change of counter, token or file id
 * means the owner is alive. A lock unchanged for that long is stale and may be
 * taken over: the contender checks it is still the same, removes it, creates its
 * own, then waits `settleMs` and checks the file is still its own. Two contenders
 * that both judged the same lock stale thus end with exactly one owner: the
 * second REMOVE + CREATE replaces the first, and the first sees that when it
 * checks. This relies on a contender not stalling for more than `settleMs`
 * between its last check and its CREATE (each step is bounded by the RPC timeout);
 * the default settle time is twice the client's call timeout plus a heartbeat.
 *
 * The owner checks its lock at each heartbeat. If the file is gone or names
 * someone else, or if it cannot refresh it for `leaseMs` (others may take it over
 * by then), the lock is lost: `lost` resolves and the holder must stop writing.
 *
 * Handover (migration switchover): removing the file and letting the destination
 * create it again would leave a moment where the name is free, so the destination
 * would have to settle. Instead the owner rewrites its own file in place, through
 * the handle it just checked, naming the destination as owner with a token both
 * sides were given beforehand (`handOver`). The destination adopts a file that
 * names it, the granting host and that token (`adopt`) and goes on refreshing it.
 * The file never disappears, so no contender can create one meanwhile; and the
 * grant is a change, so anyone watching for staleness starts over. A grant nobody
 * adopts stops changing and is taken over after the lease like any dead lock; so
 * the receiver must adopt well within the lease of the grant (the kernel calls it
 * right after the release, while both QEMUs are paused: milliseconds), the same
 * kind of bounded-delay assumption the settle time makes for takeovers.
 */
import { randomBytes } from 'node:crypto';
import { nasError, isNasError } from './errors.js';
import { StableHow } from './nfs3.js';
import type { NfsClient } from './nfs-client.js';

export interface LockOptions {
  /** This host's name, written into the lock. */
  host: string;
  /** How often the owner refreshes its lock. */
  heartbeatMs: number;
  /** How long a lock must stay unchanged before it counts as stale; several heartbeats. */
  leaseMs: number;
  /** Wait after a takeover before the lock counts as won (default: 2 × call timeout + heartbeat). */
  settleMs?: number;
  /** Told of each heartbeat: whether the refresh was written, and how long it took (metrics). */
  onRefresh?(ok: boolean, seconds: number): void;
}

export interface LockContent {
  owner: string;
  token: string;
  seq: number;
  /** Set while a lock is handed over: the host that granted it to `owner`. */
  grantedBy?: string;
}

export interface LockState extends LockContent {
  fileid: bigint;
  /** The handle the state was read through; writing through it can never touch a replacement file. */
  fh: Buffer;
}

/** Lock files have a fixed size so a refresh is one WRITE that never changes the length. */
const LOCK_FILE_SIZE = 256;

export function encodeLock(content: LockContent): Buffer {
  const json = JSON.stringify({ v: 1, owner: content.owner, token: content.token, seq: content.seq, ...(content.grantedBy === undefined ? {} : { grantedBy: content.grantedBy }) });
  if (Buffer.byteLength(json) > LOCK_FILE_SIZE - 1) throw nasError('MOTUS_E_INVALID_REQUEST', `host name ${JSON.stringify(content.owner)} is too long for a lock file`);
  return Buffer.from(json.padEnd(LOCK_FILE_SIZE - 1, ' ') + '\n');
}

/** Parses a lock file; anything else (a torn or foreign file) gives undefined. */
export function decodeLock(data: Buffer): LockContent | undefined {
  try {
    const v = JSON.parse(data.toString('utf8')) as Record<string, unknown>;
    if (v.v !== 1 || typeof v.owner !== 'string' || typeof v.token !== 'string' || typeof v.seq !== 'number') return undefined;
    if (v.grantedBy !== undefined && typeof v.grantedBy !== 'string') return undefined;
    return { owner: v.owner, token: v.token, seq: v.seq, ...(typeof v.grantedBy === 'string' ? { grantedBy: v.grantedBy } : {}) };
  } catch {
    return undefined;
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class HeldLock {
  private seq: number;
  private timer: NodeJS.Timeout | undefined;
  private released = false;
  private lastRefresh = performance.now();
  private lostReason: string | undefined;
  private resolveLost!: (reason: string) => void;
  /** Resolves with the reason when this host no longer holds the lock: stop writing then. */
  readonly lost: Promise<string>;

  constructor(
    private readonly client: NfsClient,
    readonly path: string,
    readonly token: string,
    readonly fileid: bigint,
    private readonly options: LockOptions,
    firstSeq = 0,
  ) {
    this.seq = firstSeq;
    this.lost = new Promise((resolve) => (this.resolveLost = resolve));
    this.schedule();
  }

  get held(): boolean {
    return !this.released && this.lostReason === undefined;
  }

  /** Throws MOTUS_E_NFS_LOCK_LOST unless the lock is still held. */
  assertHeld(): void {
    if (this.lostReason !== undefined) {
      throw nasError('MOTUS_E_NFS_LOCK_LOST', `lock ${this.path} is lost: ${this.lostReason}`, { path: this.path, host: this.options.host });
    }
    if (this.released) throw nasError('MOTUS_E_NFS_LOCK_LOST', `lock ${this.path} was released`, { path: this.path, host: this.options.host });
  }

  /** Removes the lock file if it is still ours, and stops the heartbeat. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    clearTimeout(this.timer);
    if (this.lostReason !== undefined) return;
    const state = await readLock(this.client, this.path).catch(() => undefined);
    if (state && state.token === this.token) await this.client.remove(this.path);
  }

  /**
   * Gives the lock to `to` without freeing the name: the file is rewritten in place
   * (FILE_SYNC, through the handle just checked) to name `to` as owner, this host
   * as grantor, and `token`, which the receiver must know to adopt it. Throws
   * MOTUS_E_NFS_LOCK_LOST if the lock is no longer this host's.
   */
  async handOver(to: string, token: string): Promise<void> {
    this.assertHeld();
    this.released = true;
    clearTimeout(this.timer);
    const state = await readLock(this.client, this.path);
    if (!state || state.token !== this.token || state.fileid !== this.fileid) {
      throw nasError('MOTUS_E_NFS_LOCK_LOST', `lock ${this.path} cannot be handed to ${to}: it is ${state ? `held by ${state.owner}` : 'gone'}`, { path: this.path, host: this.options.host, to });
    }
    await this.client.nfs.write(state.fh, 0, encodeLock({ owner: to, token, seq: 0, grantedBy: this.options.host }), StableHow.FILE_SYNC, this.path);
  }

  private schedule(): void {
    this.timer = setTimeout(() => void this.beat(), this.options.heartbeatMs);
  }

  private markLost(reason: string): void {
    if (this.lostReason !== undefined || this.released) return;
    this.lostReason = reason;
    clearTimeout(this.timer);
    this.resolveLost(reason);
  }

  private async beat(): Promise<void> {
    if (!this.held) return;
    const started = performance.now();
    const report = (ok: boolean) => this.options.onRefresh?.(ok, (performance.now() - started) / 1000);
    try {
      const state = await readLock(this.client, this.path);
      if (!this.held) return;
      if (!state) {
        report(false);
        return this.markLost('the lock file was removed');
      }
      if (state.token !== this.token || state.fileid !== this.fileid) {
        report(false);
        return this.markLost(`the lock now belongs to ${state.owner}`);
      }
      this.seq++;
      // Through the handle just checked: if another host replaced the file meanwhile, this
      // fails with a stale handle instead of overwriting its lock.
      await this.client.nfs.write(state.fh, 0, encodeLock({ owner: this.options.host, token: this.token, seq: this.seq }), StableHow.FILE_SYNC, this.path);
      this.lastRefresh = performance.now();
      report(true);
    } catch (err) {
      report(false);
      // Others count the lock stale after leaseMs without a change: past that, assume it is gone.
      if (performance.now() - this.lastRefresh >= this.options.leaseMs) {
        return this.markLost(`it could not be refreshed for ${this.options.leaseMs} ms (${err instanceof Error ? err.message : String(err)})`);
      }
    }
    if (this.held) this.schedule();
  }
}

/** The lock at `path`, or undefined if there is none. */
export async function readLock(client: NfsClient, path: string): Promise<LockState | undefined> {
  for (let attempt = 0; ; attempt++) {
    try {
      const { fh } = await client.resolve(path);
      const attrs = await client.nfs.getattr(fh, path);
      const { data } = await client.nfs.read(fh, 0, LOCK_FILE_SIZE, path);
      // A file being created or torn reads as a lock with no owner; it still blocks, and changes are watched.
      return { ...(decodeLock(data) ?? { owner: '(unreadable)', token: '', seq: -1 }), fileid: attrs.fileid, fh };
    } catch (err) {
      if (isNasError(err, 'MOTUS_E_NFS_NOT_FOUND')) return undefined;
      // Removed or replaced between LOOKUP and READ: look again.
      if (isNasError(err, 'MOTUS_E_NFS_STALE') && attempt < 3) continue;
      throw err;
    }
  }
}

const sameLock = (a: LockState, b: LockState) => a.fileid === b.fileid && a.token === b.token && a.seq === b.seq;

export class NfsLockManager {
  constructor(
    private readonly client: NfsClient,
    private readonly options: LockOptions,
  ) {
    if (options.leaseMs < 2 * options.heartbeatMs) {
      throw nasError('MOTUS_E_INVALID_REQUEST', `leaseMs (${options.leaseMs}) must be at least two heartbeats (${2 * options.heartbeatMs} ms)`, { ...options });
    }
  }

  private get settleMs(): number {
    return this.options.settleMs ?? 2 * this.client.options.timeoutMs + this.options.heartbeatMs;
  }

  /**
   * Takes the lock at `path`: creates it when there is none, or watches an
   * existing one for leaseMs and takes it over only if it did not change; then
   * waits settleMs and checks it is still ours. Fails with
   * MOTUS_E_NFS_LOCK_HELD (naming the owner) when a live host holds it or another
   * contender won.
   */
  async acquire(path: string): Promise<HeldLock> {
    const token = randomBytes(12).toString('hex');
    let fileid = await this.tryCreate(path, token);
    if (fileid === undefined) fileid = await this.takeOver(path, token);
    const lock = new HeldLock(this.client, path, token, fileid, this.options);
    // Even a lock created on an empty name may be removed by a contender that judged
    // an older lock stale just before: only a lock still ours after settling is won.
    await sleep(this.settleMs);
    const mine = await readLock(this.client, path);
    if (!mine || mine.token !== token || mine.fileid !== fileid) {
      await lock.release().catch(() => undefined);
      throw this.held(path, mine?.owner ?? '(unknown)');
    }
    lock.assertHeld();
    return lock;
  }

  /**
   * Takes a lock that `from` handed to this host with `token` (see handOver),
   * without waiting: the file is the grantor's, rewritten in place, so the name was
   * never free. Undefined when the file is not such a grant (none, another owner,
   * another token); the caller then takes the normal path.
   */
  async adopt(path: string, from: string, token: string): Promise<HeldLock | undefined> {
    const state = await readLock(this.client, path);
    if (!state || state.owner !== this.options.host || state.grantedBy !== from || state.token !== token) return undefined;
    await this.client.nfs.write(state.fh, 0, encodeLock({ owner: this.options.host, token, seq: 1 }), StableHow.FILE_SYNC, path);
    const lock = new HeldLock(this.client, path, token, state.fileid, this.options, 1);
    const mine = await readLock(this.client, path);
    if (!mine || mine.token !== token || mine.fileid !== state.fileid || mine.grantedBy !== undefined) {
      await lock.release().catch(() => undefined);
      return undefined;
    }
    return lock;
  }

  /**
   * Adopts the lock `from` is to hand to this host with `token`, waiting for the
   * grant while `from` still holds it alive: a rollback's give-back happens when the
   * grantor's copy stops, which may come a moment after the taker asks (its own
   * settling, rule S1, may ask first). Undefined — the caller takes the normal
   * path — when there is no lock, another host owns it, the grantor's lock stayed
   * unchanged for leaseMs (it died), or no grant came within `maxWaitMs`.
   */
  async adoptWhenGranted(path: string, from: string, token: string, maxWaitMs: number): Promise<HeldLock | undefined> {
    const deadline = performance.now() + maxWaitMs;
    let watched: LockState | undefined;
    let unchangedSince = performance.now();
    for (;;) {
      const lock = await this.adopt(path, from, token);
      if (lock) return lock;
      const state = await readLock(this.client, path);
      if (!state || state.owner !== from) return undefined;
      if (!watched || !sameLock(watched, state)) {
        watched = state;
        unchangedSince = performance.now();
      } else if (performance.now() - unchangedSince >= this.options.leaseMs) {
        return undefined;
      }
      if (performance.now() >= deadline) return undefined;
      await sleep(Math.max(10, Math.floor(this.options.heartbeatMs / 4)));
    }
  }

  /** Watches an existing lock for leaseMs; if it stayed the same, replaces it and returns the new file id. */
  private async takeOver(path: string, token: string): Promise<bigint> {
    const first = await readLock(this.client, path);
    if (first) {
      const deadline = performance.now() + this.options.leaseMs;
      const poll = Math.max(10, Math.floor(this.options.heartbeatMs / 2));
      while (performance.now() < deadline) {
        await sleep(Math.min(poll, Math.max(0, deadline - performance.now())));
        const now = await readLock(this.client, path);
        if (!now) break;
        if (!sameLock(first, now)) throw this.held(path, now.owner);
      }
      // Stale (or gone): check once more that it is the very lock we watched, then replace it.
      const last = await readLock(this.client, path);
      if (last && !sameLock(first, last)) throw this.held(path, last.owner);
      if (last) {
        try {
          await this.client.remove(path);
        } catch (err) {
          // Gone already, or replaced between our lookup and our REMOVE (a stale
          // handle): another contender got there first; the exclusive create decides.
          if (!isNasError(err, 'MOTUS_E_NFS_NOT_FOUND') && !isNasError(err, 'MOTUS_E_NFS_STALE')) throw err;
        }
      }
    }
    const fileid = await this.tryCreate(path, token);
    if (fileid === undefined) {
      const winner = await readLock(this.client, path);
      throw this.held(path, winner?.owner ?? '(unknown)');
    }
    return fileid;
  }

  private held(path: string, owner: string) {
    return nasError('MOTUS_E_NFS_LOCK_HELD', `lock ${path} is held by ${owner}, which is alive (or took it over first)`, { path, owner, host: this.options.host });
  }

  /** Creates the lock file; its file id, or undefined if a lock file exists. */
  private async tryCreate(path: string, token: string): Promise<bigint | undefined> {
    try {
      const st = await this.client.createExclusive(path, encodeLock({ owner: this.options.host, token, seq: 0 }), 0o644);
      return st.fileid;
    } catch (err) {
      if (isNasError(err, 'MOTUS_E_NFS_EXISTS')) return undefined;
      // Created, then removed before its content was written: a contender that judged
      // the previous lock stale replaced it by name. That contender won the race.
      if (isNasError(err, 'MOTUS_E_NFS_STALE')) return undefined;
      throw err;
    }
  }
}
