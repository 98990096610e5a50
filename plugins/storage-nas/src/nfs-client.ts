/**
 * Path-level NFSv3 client: what the rest of Motus uses. Paths are relative to
 * the export's root ("vm1/disk.img", "/vm1" and "vm1/" mean the same); ".." is
 * refused so nothing can address outside the export.
 */
import { randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { nasError, isNasError } from './errors.js';
import { MOUNT_PROG, MOUNT_VERS, MountClient, type ExportEntry } from './mount.js';
import { Nfs3Client, StableHow, type FsInfo, type FsStat } from './nfs3.js';
import { NFS_PROG, NFS_VERS, type Fattr3, type FileTypeName, type SetAttrs } from './nfs3-types.js';
import { getPort } from './portmap.js';
import { RpcClient } from './rpc-client.js';
import { AUTH_NONE, AUTH_SYS, type RpcAuth } from './rpc-messages.js';
import { UnstableWriter } from './unstable-writer.js';

export interface NfsConnectOptions {
  host: string;
  /** The exported path, as the server's MOUNT service names it. */
  export: string;
  /** NFS port; asked of the portmapper when left out. */
  port?: number;
  /** MOUNT port; asked of the portmapper when left out. */
  mountPort?: number;
  /** Portmapper port, 111 unless a test moves it. */
  portmapperPort?: number;
  uid: number;
  gid: number;
  gids?: readonly number[];
  /** Machine name sent in AUTH_SYS credentials. */
  machineName?: string;
  /** Time each call may take, reconnections included. */
  timeoutMs: number;
  /** Upper bound on one READ or WRITE, below the server's rtmax/wtmax (default 1 MiB). */
  maxTransferSize?: number;
  /** READs or WRITEs of one file in flight at once (default 4). */
  maxInFlight?: number;
  /** Sees every RPC record (for traffic capture in tests). */
  onRecord?: (service: 'nfs' | 'mount', direction: 'call' | 'reply', record: Buffer) => void;
}

export interface NfsStat {
  type: FileTypeName;
  mode: number;
  size: number;
  used: number;
  uid: number;
  gid: number;
  nlink: number;
  fileid: bigint;
  atime: Date;
  mtime: Date;
  ctime: Date;
}

export interface NfsDirEntry extends NfsStat {
  name: string;
}

export interface WriteFileOptions {
  mode?: number;
}

export interface ReadStreamOptions {
  start?: number;
  /** Offset one past the last byte to read; to the end of the file when left out. */
  end?: number;
}

export interface WriteStreamOptions {
  mode?: number;
  /** Commit after this many uncommitted bytes, which bounds the data held for a rewrite (default 64 MiB). */
  commitEveryBytes?: number;
}

const DEFAULT_MAX_TRANSFER = 1024 * 1024;

/** min(server max, our cap), rounded down to the server's preferred multiple when that leaves something. */
function transferSize(serverMax: number, multiple: number, cap: number): number {
  const size = Math.min(serverMax > 0 ? serverMax : cap, cap);
  const rounded = multiple > 0 ? size - (size % multiple) : size;
  return Math.max(1, rounded > 0 ? rounded : size);
}

function toStat(a: Fattr3): NfsStat {
  const date = (t: { seconds: number; nseconds: number }) => new Date(t.seconds * 1000 + Math.floor(t.nseconds / 1e6));
  return {
    type: a.type,
    mode: a.mode & 0o7777,
    size: a.size,
    used: a.used,
    uid: a.uid,
    gid: a.gid,
    nlink: a.nlink,
    fileid: a.fileid,
    atime: date(a.atime),
    mtime: date(a.mtime),
    ctime: date(a.ctime),
  };
}

/** Splits a path into names, refusing ".." and empty-safe. */
export function splitPath(path: string): string[] {
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  for (const p of parts) {
    if (p === '..') throw nasError('MOTUS_E_INVALID_REQUEST', `path ${JSON.stringify(path)} uses "..", which could leave the export`, { path });
  }
  return parts;
}

export class NfsClient {
  private constructor(
    readonly options: NfsConnectOptions,
    readonly nfs: Nfs3Client,
    private readonly mount: MountClient,
    private readonly mountRpc: RpcClient,
    readonly rootFh: Buffer,
    readonly info: FsInfo,
  ) {}

  static async connect(options: NfsConnectOptions): Promise<NfsClient> {
    const { host, timeoutMs } = options;
    const pmap = { host, timeoutMs, ...(options.portmapperPort === undefined ? {} : { port: options.portmapperPort }) };
    const [nfsPort, mountPort] = await Promise.all([
      options.port ?? getPort(NFS_PROG, NFS_VERS, pmap),
      options.mountPort ?? getPort(MOUNT_PROG, MOUNT_VERS, pmap),
    ]);
    const auth: RpcAuth = { flavor: 'sys', uid: options.uid, gid: options.gid, gids: options.gids ?? [], machineName: options.machineName ?? 'motus' };
    const tap = options.onRecord;
    const mountRpc = new RpcClient({
      host, port: mountPort, prog: MOUNT_PROG, vers: MOUNT_VERS, auth, timeoutMs, service: 'MOUNT',
      ...(tap ? { onRecord: (d: 'call' | 'reply', r: Buffer) => tap('mount', d, r) } : {}),
    });
    const nfsRpc = new RpcClient({
      host, port: nfsPort, prog: NFS_PROG, vers: NFS_VERS, auth, timeoutMs, service: 'NFS',
      // Room for the largest READ reply (or READDIRPLUS page) plus its headers.
      maxRecordSize: (options.maxTransferSize ?? DEFAULT_MAX_TRANSFER) + 64 * 1024,
      ...(tap ? { onRecord: (d: 'call' | 'reply', r: Buffer) => tap('nfs', d, r) } : {}),
    });
    try {
      const mount = new MountClient(mountRpc);
      const { fileHandle, authFlavors } = await mount.mnt(options.export);
      // An export that lists flavors but neither AUTH_SYS nor AUTH_NONE wants Kerberos, which this client does not speak.
      if (authFlavors.length > 0 && !authFlavors.includes(AUTH_SYS) && !authFlavors.includes(AUTH_NONE)) {
        throw nasError('MOTUS_E_NFS_MOUNT', `export ${options.export} on ${host} accepts only security flavors ${authFlavors.join(', ')} (e.g. Kerberos); Motus uses AUTH_SYS`, {
          export: options.export,
          authFlavors,
        });
      }
      const nfs = new Nfs3Client(nfsRpc);
      const info = await nfs.fsinfo(fileHandle, options.export);
      return new NfsClient(options, nfs, mount, mountRpc, fileHandle, info);
    } catch (err) {
      await Promise.all([mountRpc.close(), nfsRpc.close()]);
      throw err;
    }
  }

  /** Largest READ this client sends: the server's rtmax, capped by maxTransferSize. */
  get readSize(): number {
    return transferSize(this.info.rtmax, this.info.rtmult, this.options.maxTransferSize ?? DEFAULT_MAX_TRANSFER);
  }

  /** Largest WRITE this client sends: the server's wtmax, capped by maxTransferSize. */
  get writeSize(): number {
    return transferSize(this.info.wtmax, this.info.wtmult, this.options.maxTransferSize ?? DEFAULT_MAX_TRANSFER);
  }

  private get maxInFlight(): number {
    return Math.max(1, this.options.maxInFlight ?? 4);
  }

  /** Unmounts and closes both connections. */
  async close(): Promise<void> {
    try {
      await this.mount.umnt(this.options.export);
    } catch {
      // UMNT is advisory bookkeeping on the server; a dead server must not stop us closing.
    } finally {
      await Promise.all([this.mountRpc.close(), this.nfs.rpc.close()]);
    }
  }

  /** The exports the server's MOUNT service lists. */
  exports(): Promise<ExportEntry[]> {
    return this.mount.exports();
  }

  /** The file handle of a path, and its attributes when the server sent them. */
  async resolve(path: string): Promise<{ fh: Buffer; attrs: Fattr3 | undefined }> {
    let fh = this.rootFh;
    let attrs: Fattr3 | undefined;
    const names = splitPath(path);
    for (let i = 0; i < names.length; i++) {
      const res = await this.nfs.lookup(fh, names[i]!, names.slice(0, i + 1).join('/'));
      fh = res.fh;
      attrs = res.attrs;
    }
    return { fh, attrs };
  }

  private async parentOf(path: string): Promise<{ dir: Buffer; name: string; display: string }> {
    const names = splitPath(path);
    const name = names.pop();
    if (name === undefined) throw nasError('MOTUS_E_INVALID_REQUEST', 'the export root itself cannot be created, removed or renamed', { path });
    const { fh } = await this.resolve(names.join('/'));
    return { dir: fh, name, display: [...names, name].join('/') };
  }

  async stat(path: string): Promise<NfsStat> {
    const { fh } = await this.resolve(path);
    return toStat(await this.nfs.getattr(fh, splitPath(path).join('/') || '/'));
  }

  async exists(path: string): Promise<boolean> {
    try {
      await this.resolve(path);
      return true;
    } catch (err) {
      if (isNasError(err, 'MOTUS_E_NFS_NOT_FOUND')) return false;
      throw err;
    }
  }

  /** Changes mode, owner, size or times. */
  async setAttributes(path: string, attrs: SetAttrs): Promise<NfsStat> {
    const { fh } = await this.resolve(path);
    const display = splitPath(path).join('/') || '/';
    const wcc = await this.nfs.setattr(fh, attrs, undefined, display);
    return toStat(wcc.after ?? (await this.nfs.getattr(fh, display)));
  }

  /** Which of the requested `Access` bits the server grants this client's credentials. */
  async access(path: string, mask: number): Promise<number> {
    const { fh } = await this.resolve(path);
    return (await this.nfs.access(fh, mask, splitPath(path).join('/') || '/')).granted;
  }

  async readFile(path: string): Promise<Buffer> {
    const file = await this.openForRead(path);
    // Copying each chunk into place as it arrives overlaps the copy with the wait
    // for the next READ, instead of one large join at the end.
    let target = Buffer.allocUnsafe(file.size);
    let length = 0;
    for await (const chunk of this.readChunks(file, 0, undefined)) {
      if (length + chunk.length > target.length) {
        const grown = Buffer.allocUnsafe(Math.max(length + chunk.length, target.length * 2));
        target.copy(grown, 0, 0, length);
        target = grown;
      }
      chunk.copy(target, length);
      length += chunk.length;
    }
    return target.subarray(0, length);
  }

  createReadStream(path: string, opts: ReadStreamOptions = {}): Readable {
    const chunks = async function* (client: NfsClient) {
      yield* client.readChunks(await client.openForRead(path), opts.start ?? 0, opts.end);
    };
    return Readable.from(chunks(this), { objectMode: false });
  }

  private async openForRead(path: string): Promise<{ fh: Buffer; size: number; display: string }> {
    const display = splitPath(path).join('/');
    const { fh } = await this.resolve(path);
    const attrs = await this.nfs.getattr(fh, display);
    if (attrs.type === 'directory') throw nasError('MOTUS_E_INVALID_REQUEST', `${display} is a directory, not a file`, { path: display });
    return { fh, size: attrs.size, display };
  }

  /**
   * Yields the file in order, reading up to maxInFlight chunks of rtmax ahead.
   * A short read is followed up at the offset where it stopped, and reading goes
   * on past the size seen at open until the server reports end of file.
   */
  private async *readChunks(file: { fh: Buffer; size: number; display: string }, start: number, end: number | undefined): AsyncGenerator<Buffer> {
    const { fh, display } = file;
    const size = Math.max(file.size, start);
    const limit = end ?? Number.MAX_SAFE_INTEGER;
    const step = this.readSize;
    const queue: { offset: number; length: number; result: Promise<{ data: Buffer; eof: boolean }> }[] = [];
    const readAt = async (offset: number, length: number) => {
      const res = await this.nfs.read(fh, offset, length, display);
      return { data: res.data, eof: res.eof };
    };
    let next = start;
    const fill = () => {
      // Read ahead only within the size known at open; past it, one read at a time finds eof.
      while (queue.length < this.maxInFlight && next < Math.min(size, limit)) {
        const length = Math.min(step, Math.min(size, limit) - next);
        queue.push({ offset: next, length, result: readAt(next, length) });
        next += length;
      }
    };
    // Unawaited reads still settle; keep their rejections from being reported as unhandled.
    const drainQueue = () => queue.forEach((q) => q.result.catch(() => undefined));
    try {
      fill();
      while (queue.length > 0) {
        const head = queue.shift()!;
        let { data, eof } = await head.result;
        let got = data.length;
        if (got > 0) yield data;
        let offset = head.offset + got;
        while (got < head.length && !eof) {
          ({ data, eof } = await readAt(offset, head.offset + head.length - offset));
          if (data.length === 0) break;
          got += data.length;
          offset += data.length;
          yield data;
        }
        if (eof && got < head.length) return;
        fill();
      }
      let offset = next;
      while (offset < limit) {
        const { data, eof } = await readAt(offset, Math.min(step, limit - offset));
        if (data.length > 0) yield data;
        offset += data.length;
        if (eof || data.length === 0) return;
      }
    } finally {
      drainQueue();
    }
  }

  /** Creates or truncates a file and returns its handle. */
  private async openForWrite(path: string, mode: number): Promise<{ fh: Buffer; display: string }> {
    const { dir, name, display } = await this.parentOf(path);
    const created = await this.nfs.create(dir, name, { mode: 'unchecked', attrs: { size: 0, mode } }, display);
    const fh = created.fh ?? (await this.nfs.lookup(dir, name, display)).fh;
    return { fh, display };
  }

  /** Writes the whole file (created or truncated): UNSTABLE WRITEs of wtmax, then COMMIT with verifier checks. */
  async writeFile(path: string, data: Buffer | Uint8Array | string, opts: WriteFileOptions = {}): Promise<void> {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const { fh, display } = await this.openForWrite(path, opts.mode ?? 0o644);
    const writer = new UnstableWriter(this.nfs, fh, display, this.maxInFlight);
    for (let offset = 0; offset < bytes.length; offset += this.writeSize) {
      await writer.write(offset, bytes.subarray(offset, offset + this.writeSize));
    }
    await writer.commit();
  }

  /**
   * A stream that writes a file (created or truncated) in wtmax chunks, commits
   * every `commitEveryBytes` and at the end; `finish` means the data is durable.
   */
  createWriteStream(path: string, opts: WriteStreamOptions = {}): Writable {
    const commitEvery = opts.commitEveryBytes ?? 64 * 1024 * 1024;
    let writer: UnstableWriter | undefined;
    let offset = 0;
    let sinceCommit = 0;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const wsize = this.writeSize;
    // Full chunks are cut from the written buffers without copying; only a chunk
    // spanning several small writes is gathered into a new buffer.
    const takeChunk = (n: number): Buffer => {
      const first = pending[0]!;
      pendingBytes -= n;
      if (first.length >= n) {
        if (first.length === n) pending.shift();
        else pending[0] = first.subarray(n);
        return first.subarray(0, n);
      }
      const out = Buffer.allocUnsafe(n);
      for (let filled = 0; filled < n; ) {
        const head = pending[0]!;
        const k = Math.min(head.length, n - filled);
        head.copy(out, filled, 0, k);
        filled += k;
        if (k === head.length) pending.shift();
        else pending[0] = head.subarray(k);
      }
      return out;
    };
    const sendFull = async (all: boolean) => {
      if (!writer) return;
      while (pendingBytes >= wsize || (all && pendingBytes > 0)) {
        const chunk = takeChunk(Math.min(wsize, pendingBytes));
        await writer.write(offset, chunk);
        offset += chunk.length;
        sinceCommit += chunk.length;
        if (sinceCommit >= commitEvery) {
          await writer.commit();
          sinceCommit = 0;
        }
      }
    };
    return new Writable({
      construct: (callback) => {
        this.openForWrite(path, opts.mode ?? 0o644).then(
          ({ fh, display }) => {
            writer = new UnstableWriter(this.nfs, fh, display, this.maxInFlight);
            callback();
          },
          (err: Error) => callback(err),
        );
      },
      write: (chunk: Buffer, _encoding, callback) => {
        // Held, not copied, until committed: as with any Writable, the caller must not reuse it.
        pending.push(chunk);
        pendingBytes += chunk.length;
        if (pendingBytes < wsize) {
          callback();
          return;
        }
        sendFull(false).then(() => callback(), (err: Error) => callback(err));
      },
      final: (callback) => {
        sendFull(true)
          .then(() => writer?.commit())
          .then(() => callback(), (err: Error) => callback(err));
      },
    });
  }

  /** Creates the directory and any missing parents; existing directories are fine. */
  async mkdirp(path: string, mode = 0o755): Promise<void> {
    let fh = this.rootFh;
    const names = splitPath(path);
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!;
      const display = names.slice(0, i + 1).join('/');
      let found: { fh: Buffer; attrs: Fattr3 | undefined } | undefined;
      try {
        found = await this.nfs.lookup(fh, name, display);
      } catch (err) {
        if (!isNasError(err, 'MOTUS_E_NFS_NOT_FOUND')) throw err;
      }
      if (!found) {
        try {
          const made = await this.nfs.mkdir(fh, name, { mode }, display);
          found = { fh: made.fh ?? (await this.nfs.lookup(fh, name, display)).fh, attrs: made.attrs };
        } catch (err) {
          // Another client made it between our LOOKUP and MKDIR.
          if (!isNasError(err, 'MOTUS_E_NFS_EXISTS')) throw err;
          found = await this.nfs.lookup(fh, name, display);
        }
      }
      const attrs = found.attrs ?? (await this.nfs.getattr(found.fh, display));
      if (attrs.type !== 'directory') {
        throw nasError('MOTUS_E_NFS_EXISTS', `mkdirp ${splitPath(path).join('/')}: ${display} exists and is not a directory`, { path: display });
      }
      fh = found.fh;
    }
  }

  /** The entries of a directory (without "." and ".."), paging through READDIRPLUS. */
  async list(path: string): Promise<NfsDirEntry[]> {
    const display = splitPath(path).join('/') || '/';
    const { fh } = await this.resolve(path);
    const out: NfsDirEntry[] = [];
    let cookie = 0n;
    let verf: Buffer = Buffer.alloc(8);
    const maxcount = Math.min(this.readSize, 64 * 1024);
    for (let page = 0; ; page++) {
      const res = await this.nfs.readdirplus(fh, cookie, verf, Math.max(this.info.dtpref, 4096), maxcount, display);
      for (const e of res.entries) {
        cookie = e.cookie;
        if (e.name === '.' || e.name === '..') continue;
        const attrs = e.attrs ?? (await this.nfs.getattr(e.fh ?? (await this.nfs.lookup(fh, e.name, `${display}/${e.name}`)).fh, `${display}/${e.name}`));
        out.push({ name: e.name, ...toStat(attrs) });
      }
      verf = res.cookieverf;
      if (res.eof) return out;
      if (res.entries.length === 0) {
        throw nasError('MOTUS_E_NFS_PROTOCOL', `READDIRPLUS ${display}: the server returned an empty page without end of directory`, { path: display, page });
      }
    }
  }

  /** Removes a file, or a directory (with `recursive`, its contents first). */
  async remove(path: string, opts: { recursive?: boolean } = {}): Promise<void> {
    const { dir, name, display } = await this.parentOf(path);
    const { fh, attrs } = await this.nfs.lookup(dir, name, display);
    const type = (attrs ?? (await this.nfs.getattr(fh, display))).type;
    if (type !== 'directory') {
      await this.nfs.remove(dir, name, display);
      return;
    }
    if (opts.recursive) {
      for (const entry of await this.list(display)) await this.remove(`${display}/${entry.name}`, opts);
    }
    await this.nfs.rmdir(dir, name, display);
  }

  /** Renames atomically on the server; an existing target file is replaced. */
  async rename(from: string, to: string): Promise<void> {
    const a = await this.parentOf(from);
    const b = await this.parentOf(to);
    await this.nfs.rename(a.dir, a.name, b.dir, b.name, `${a.display} → ${b.display}`);
  }

  /**
   * Creates a file that must not exist yet (EXCLUSIVE create with a random
   * verifier, so a retransmitted CREATE is recognised as ours), sets its mode and
   * writes `content` FILE_SYNC. Fails with MOTUS_E_NFS_EXISTS if it exists.
   */
  async createExclusive(path: string, content: Buffer | string = Buffer.alloc(0), mode = 0o644): Promise<NfsStat> {
    const { dir, name, display } = await this.parentOf(path);
    const created = await this.nfs.create(dir, name, { mode: 'exclusive', verifier: randomBytes(8) }, display);
    const fh = created.fh ?? (await this.nfs.lookup(dir, name, display)).fh;
    // The server keeps the verifier in the file's times; setting real attributes replaces it (RFC 1813 §3.3.8).
    await this.nfs.setattr(fh, { mode, atime: 'server', mtime: 'server' }, undefined, display);
    const bytes = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    for (let offset = 0; offset < bytes.length; ) {
      const res = await this.nfs.write(fh, offset, bytes.subarray(offset, offset + this.writeSize), StableHow.FILE_SYNC, display);
      if (res.count === 0) throw nasError('MOTUS_E_NFS_ERROR', `WRITE ${display}: the server accepted 0 bytes`, { path: display });
      offset += res.count;
    }
    return toStat(await this.nfs.getattr(fh, display));
  }

  /** Space and file counts of the file system behind the export. */
  async fsstat(path = ''): Promise<FsStat> {
    const { fh } = await this.resolve(path);
    return this.nfs.fsstat(fh, splitPath(path).join('/') || '/');
  }
}
