/**
 * Writes a file's data as UNSTABLE WRITEs with a bounded number in flight, then
 * COMMITs. The server's write verifier changes when it reboots, and a reboot loses
 * whatever was written unstable and not yet committed; so every chunk is held
 * until a COMMIT returns the same verifier the writes got, and rewritten
 * (FILE_SYNC, which needs no further commit) when the verifiers disagree.
 */
import { nasError } from './errors.js';
import { StableHow, type Nfs3Client } from './nfs3.js';

interface Held {
  offset: number;
  data: Buffer;
}

const MAX_REWRITE_ROUNDS = 5;

export class UnstableWriter {
  private held: Held[] = [];
  private verifier: Buffer | undefined;
  private verifierChanged = false;
  private readonly inFlight = new Set<Promise<void>>();
  private failure: unknown;
  /** Counters tests read: chunks rewritten after a verifier change, commits sent. */
  readonly stats = { rewrites: 0, commits: 0, writes: 0 };

  constructor(
    private readonly nfs: Nfs3Client,
    private readonly fh: Buffer,
    private readonly subject: string,
    private readonly maxInFlight: number,
  ) {}

  /** Queues one chunk (at most wtmax bytes); resolves once a slot in flight is free. */
  async write(offset: number, data: Buffer): Promise<void> {
    this.throwIfFailed();
    while (this.inFlight.size >= this.maxInFlight) await Promise.race(this.inFlight);
    this.throwIfFailed();
    const p = this.send(offset, data, StableHow.UNSTABLE)
      .catch((err: unknown) => {
        this.failure ??= err;
      })
      .finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  /** Waits for every write, commits, and rewrites what a server reboot lost. */
  async commit(): Promise<void> {
    await this.drain();
    for (let round = 0; ; round++) {
      if (this.held.length === 0) return;
      if (!this.verifierChanged) {
        this.stats.commits++;
        const { verifier } = await this.nfs.commit(this.fh, 0, 0, this.subject);
        if (this.verifier !== undefined && verifier.equals(this.verifier)) {
          this.held = [];
          this.verifier = undefined;
          return;
        }
      }
      if (round >= MAX_REWRITE_ROUNDS) {
        throw nasError('MOTUS_E_NFS_WRITE_VERIFIER', `${this.subject}: the server's write verifier kept changing (server rebooting?); ${this.held.length} chunks could not be committed`, {
          path: this.subject,
          chunks: this.held.length,
        });
      }
      const lost = this.held;
      this.held = [];
      this.verifier = undefined;
      this.verifierChanged = false;
      for (const chunk of lost) {
        this.throwIfFailed();
        while (this.inFlight.size >= this.maxInFlight) await Promise.race(this.inFlight);
        this.stats.rewrites++;
        const p = this.send(chunk.offset, chunk.data, StableHow.FILE_SYNC)
          .catch((err: unknown) => {
            this.failure ??= err;
          })
          .finally(() => this.inFlight.delete(p));
        this.inFlight.add(p);
      }
      await this.drain();
    }
  }

  private async drain(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
    this.throwIfFailed();
  }

  private throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure;
  }

  private async send(offset: number, data: Buffer, stable: StableHow): Promise<void> {
    let done = 0;
    // A server may write fewer bytes than asked; the rest goes in another WRITE.
    while (done < data.length) {
      const part = done === 0 ? data : data.subarray(done);
      this.stats.writes++;
      const res = await this.nfs.write(this.fh, offset + done, part, stable, this.subject);
      if (res.count === 0) throw nasError('MOTUS_E_NFS_ERROR', `WRITE ${this.subject}: the server accepted 0 bytes at offset ${offset + done}`, { path: this.subject });
      const written = part.subarray(0, Math.min(res.count, part.length));
      if (res.committed !== StableHow.FILE_SYNC) {
        if (this.verifier === undefined) this.verifier = res.verifier;
        else if (!this.verifier.equals(res.verifier)) this.verifierChanged = true;
        this.held.push({ offset: offset + done, data: written });
      }
      done += written.length;
    }
  }
}
