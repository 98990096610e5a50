/** NFSv3 procedures (RFC 1813 §3.3) over an RPC session; statuses become MotusErrors. */
import type { MotusError } from '@motus/sdk';
import { nasError, type NasErrorCode } from './errors.js';
import {
  MAX_NAME,
  NFS3_COOKIEVERFSIZE,
  NFS3_CREATEVERFSIZE,
  NFS3_STATUS,
  NFS3_WRITEVERFSIZE,
  readFattr3,
  readFileHandle,
  readPostOpAttr,
  readPostOpFh,
  readTime,
  readWccData,
  writeSattr3,
  type Fattr3,
  type NfsTime,
  type SetAttrs,
  type WccData,
} from './nfs3-types.js';
import type { RpcClient } from './rpc-client.js';
import { decodeXdr, XdrWriter, type XdrReader, type XdrResult } from './xdr.js';

const PROC = {
  NULL: 0, GETATTR: 1, SETATTR: 2, LOOKUP: 3, ACCESS: 4, READ: 6, WRITE: 7, CREATE: 8, MKDIR: 9,
  REMOVE: 12, RMDIR: 13, RENAME: 14, READDIRPLUS: 17, FSSTAT: 18, FSINFO: 19, COMMIT: 21,
} as const;

export const StableHow = { UNSTABLE: 0, DATA_SYNC: 1, FILE_SYNC: 2 } as const;
export type StableHow = (typeof StableHow)[keyof typeof StableHow];

export const Access = { READ: 0x1, LOOKUP: 0x2, MODIFY: 0x4, EXTEND: 0x8, DELETE: 0x10, EXECUTE: 0x20 } as const;

const NFS3ERR_JUKEBOX = 10008;
const JUKEBOX_RETRIES = 10;

export interface LookupResult {
  fh: Buffer;
  attrs: Fattr3 | undefined;
  dirAttrs: Fattr3 | undefined;
}

export interface ReadResult {
  data: Buffer;
  eof: boolean;
  attrs: Fattr3 | undefined;
}

export interface WriteResult {
  count: number;
  committed: StableHow;
  verifier: Buffer;
  wcc: WccData;
}

export type CreateHow = { mode: 'unchecked' | 'guarded'; attrs?: SetAttrs } | { mode: 'exclusive'; verifier: Buffer };

export interface CreateResult {
  fh: Buffer | undefined;
  attrs: Fattr3 | undefined;
}

export interface DirEntryPlus {
  fileid: bigint;
  name: string;
  cookie: bigint;
  attrs: Fattr3 | undefined;
  fh: Buffer | undefined;
}

export interface ReaddirPlusResult {
  entries: DirEntryPlus[];
  cookieverf: Buffer;
  eof: boolean;
}

export interface FsStat {
  totalBytes: number;
  freeBytes: number;
  availableBytes: number;
  totalFiles: number;
  freeFiles: number;
  availableFiles: number;
  invarsec: number;
}

export interface FsInfo {
  rtmax: number;
  rtpref: number;
  rtmult: number;
  wtmax: number;
  wtpref: number;
  wtmult: number;
  dtpref: number;
  maxFileSize: bigint;
  timeDelta: NfsTime;
  properties: number;
}

const STATUS_CODES: Record<number, NasErrorCode> = {
  2: 'MOTUS_E_NFS_NOT_FOUND',
  17: 'MOTUS_E_NFS_EXISTS',
  1: 'MOTUS_E_NFS_ACCESS',
  13: 'MOTUS_E_NFS_ACCESS',
  30: 'MOTUS_E_NFS_ACCESS',
  27: 'MOTUS_E_NFS_NO_SPACE',
  28: 'MOTUS_E_NFS_NO_SPACE',
  69: 'MOTUS_E_NFS_NO_SPACE',
  70: 'MOTUS_E_NFS_STALE',
  10001: 'MOTUS_E_NFS_STALE',
};

/** The MotusError for an NFS status, e.g. NFS3ERR_NOENT → "LOOKUP vm1/disk.img: no such file or directory". */
export function nfsStatusError(status: number, procedure: string, subject: string | undefined): MotusError {
  const known = NFS3_STATUS[status];
  const statusName = known?.name ?? `NFS3 status ${status}`;
  const meaning = known?.meaning ?? `the server answered with unknown status ${status}`;
  const code = STATUS_CODES[status] ?? 'MOTUS_E_NFS_ERROR';
  const target = subject === undefined ? '' : ` ${subject}`;
  return nasError(code, `${procedure}${target}: ${meaning} (${statusName})`, { procedure, status: statusName, ...(subject === undefined ? {} : { path: subject }) });
}

function writeDirOpArgs(w: XdrWriter, dir: Buffer, name: string): XdrWriter {
  return w.opaque(dir).string(name);
}

/*
 * The OK bodies of each procedure's results, as pure decoders: the client uses
 * them, and tests run them over recorded and malformed replies.
 */

export function decodeLookupOk(r: XdrReader): LookupResult {
  return { fh: readFileHandle(r), attrs: readPostOpAttr(r), dirAttrs: readPostOpAttr(r) };
}

export function decodeAccessOk(r: XdrReader): { granted: number; attrs: Fattr3 | undefined } {
  const attrs = readPostOpAttr(r);
  return { attrs, granted: r.uint32('access') };
}

/** `maxCount` is what the READ asked for: a server must not send more. */
export function decodeReadOk(r: XdrReader, maxCount: number): ReadResult {
  const attrs = readPostOpAttr(r);
  const n = r.uint32('count');
  const eof = r.bool('eof');
  const data = r.opaqueView(maxCount, 'data');
  if (data.length !== n) r.fail('bad-value', `READ count ${n} disagrees with ${data.length} data bytes`);
  return { attrs, eof, data };
}

export function decodeWriteOk(r: XdrReader): WriteResult {
  return {
    wcc: readWccData(r),
    count: r.uint32('count'),
    committed: r.enumOf([0, 1, 2], 'stable_how') as StableHow,
    verifier: r.fixedOpaque(NFS3_WRITEVERFSIZE, 'writeverf3'),
  };
}

export function decodeCommitOk(r: XdrReader): { verifier: Buffer; wcc: WccData } {
  return { wcc: readWccData(r), verifier: r.fixedOpaque(NFS3_WRITEVERFSIZE, 'writeverf3') };
}

/** CREATE and MKDIR share their result shape. */
export function decodeCreateOk(r: XdrReader): CreateResult {
  const fh = readPostOpFh(r);
  const attrs = readPostOpAttr(r);
  readWccData(r);
  return { fh, attrs };
}

export function decodeRenameOk(r: XdrReader): void {
  readWccData(r);
  readWccData(r);
}

export function decodeReaddirPlusOk(r: XdrReader): ReaddirPlusResult {
  readPostOpAttr(r);
  const cookieverf = r.fixedOpaque(NFS3_COOKIEVERFSIZE, 'cookieverf3');
  const entries: DirEntryPlus[] = [];
  while (r.bool('entry follows')) {
    entries.push({
      fileid: r.uint64('fileid'),
      name: r.string(MAX_NAME, 'filename3'),
      cookie: r.uint64('cookie'),
      attrs: readPostOpAttr(r),
      fh: readPostOpFh(r),
    });
  }
  return { entries, cookieverf, eof: r.bool('eof') };
}

export function decodeFsstatOk(r: XdrReader): FsStat {
  readPostOpAttr(r);
  return {
    totalBytes: r.uint64Number('tbytes'),
    freeBytes: r.uint64Number('fbytes'),
    availableBytes: r.uint64Number('abytes'),
    totalFiles: r.uint64Number('tfiles'),
    freeFiles: r.uint64Number('ffiles'),
    availableFiles: r.uint64Number('afiles'),
    invarsec: r.uint32('invarsec'),
  };
}

export function decodeFsinfoOk(r: XdrReader): FsInfo {
  readPostOpAttr(r);
  return {
    rtmax: r.uint32('rtmax'),
    rtpref: r.uint32('rtpref'),
    rtmult: r.uint32('rtmult'),
    wtmax: r.uint32('wtmax'),
    wtpref: r.uint32('wtpref'),
    wtmult: r.uint32('wtmult'),
    dtpref: r.uint32('dtpref'),
    maxFileSize: r.uint64('maxfilesize'),
    timeDelta: readTime(r),
    properties: r.uint32('properties'),
  };
}

/** OK-body decoder of every procedure the client calls, by procedure number. */
export const NFS3_OK_DECODERS: Readonly<Record<number, (r: XdrReader) => unknown>> = {
  [PROC.GETATTR]: readFattr3,
  [PROC.SETATTR]: readWccData,
  [PROC.LOOKUP]: decodeLookupOk,
  [PROC.ACCESS]: decodeAccessOk,
  [PROC.READ]: (r) => decodeReadOk(r, 0xffffffff),
  [PROC.WRITE]: decodeWriteOk,
  [PROC.CREATE]: decodeCreateOk,
  [PROC.MKDIR]: decodeCreateOk,
  [PROC.REMOVE]: readWccData,
  [PROC.RMDIR]: readWccData,
  [PROC.RENAME]: decodeRenameOk,
  [PROC.READDIRPLUS]: decodeReaddirPlusOk,
  [PROC.FSSTAT]: decodeFsstatOk,
  [PROC.FSINFO]: decodeFsinfoOk,
  [PROC.COMMIT]: decodeCommitOk,
};

/**
 * Decodes a procedure's results: the status, then for NFS3_OK the body, which
 * must fill the results exactly. A failure body is not decoded: the status is
 * what callers act on.
 */
export function decodeNfs3Results<T>(results: Buffer, ok: (r: XdrReader) => T): XdrResult<{ status: number; value: T | undefined }> {
  const head = decodeXdr(results, (r) => r.uint32('nfsstat3'));
  if (!head.ok) return head;
  if (head.value !== 0) return { ok: true, value: { status: head.value, value: undefined } };
  const body = decodeXdr(
    results,
    (r) => {
      r.uint32('nfsstat3');
      return ok(r);
    },
    true,
  );
  return body.ok ? { ok: true, value: { status: 0, value: body.value } } : body;
}

export class Nfs3Client {
  constructor(readonly rpc: RpcClient) {}

  /** One procedure; JUKEBOX (server busy) is retried after a pause, as RFC 1813 asks. */
  private async call<T>(proc: number, name: string, args: Buffer | Buffer[], subject: string | undefined, ok: (r: XdrReader) => T): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const results = await this.rpc.call(proc, args, { name });
      const res = decodeNfs3Results(results, ok);
      if (!res.ok) {
        throw nasError('MOTUS_E_NFS_PROTOCOL', `NFS ${name} reply from ${this.rpc.endpoint} is malformed: ${res.error.message}`, { procedure: name, ...res.error });
      }
      const { status, value } = res.value;
      if (status === 0) return value as T;
      if (status === NFS3ERR_JUKEBOX && attempt < JUKEBOX_RETRIES) {
        await new Promise((resolve) => setTimeout(resolve, Math.min(100 * 2 ** attempt, 1000)));
        continue;
      }
      throw nfsStatusError(status, name, subject);
    }
  }

  async null(): Promise<void> {
    await this.rpc.call(PROC.NULL, Buffer.alloc(0), { name: 'NULL' });
  }

  getattr(fh: Buffer, subject?: string): Promise<Fattr3> {
    return this.call(PROC.GETATTR, 'GETATTR', new XdrWriter().opaque(fh).toBuffer(), subject, readFattr3);
  }

  /** With `guardCtime`, the server applies the change only if the ctime still matches. */
  setattr(fh: Buffer, attrs: SetAttrs, guardCtime?: NfsTime, subject?: string): Promise<WccData> {
    const w = new XdrWriter().opaque(fh);
    writeSattr3(w, attrs);
    if (guardCtime) w.bool(true).uint32(guardCtime.seconds).uint32(guardCtime.nseconds);
    else w.bool(false);
    return this.call(PROC.SETATTR, 'SETATTR', w.toBuffer(), subject, readWccData);
  }

  lookup(dir: Buffer, name: string, subject?: string): Promise<LookupResult> {
    return this.call(PROC.LOOKUP, 'LOOKUP', writeDirOpArgs(new XdrWriter(), dir, name).toBuffer(), subject ?? name, decodeLookupOk);
  }

  /** Which of the `mask` bits (see `Access`) the caller is granted. */
  access(fh: Buffer, mask: number, subject?: string): Promise<{ granted: number; attrs: Fattr3 | undefined }> {
    return this.call(PROC.ACCESS, 'ACCESS', new XdrWriter().opaque(fh).uint32(mask).toBuffer(), subject, decodeAccessOk);
  }

  read(fh: Buffer, offset: number, count: number, subject?: string): Promise<ReadResult> {
    return this.call(PROC.READ, 'READ', new XdrWriter().opaque(fh).uint64(offset).uint32(count).toBuffer(), subject, (r) => decodeReadOk(r, count));
  }

  write(fh: Buffer, offset: number, data: Buffer, stable: StableHow, subject?: string): Promise<WriteResult> {
    const args = new XdrWriter().opaque(fh).uint64(offset).uint32(data.length).uint32(stable).opaque(data).toChunks();
    return this.call(PROC.WRITE, 'WRITE', args, subject, decodeWriteOk);
  }

  /** Makes data written UNSTABLE durable; `count` 0 means to the end of the file. */
  commit(fh: Buffer, offset: number, count: number, subject?: string): Promise<{ verifier: Buffer; wcc: WccData }> {
    return this.call(PROC.COMMIT, 'COMMIT', new XdrWriter().opaque(fh).uint64(offset).uint32(count).toBuffer(), subject, decodeCommitOk);
  }

  create(dir: Buffer, name: string, how: CreateHow, subject?: string): Promise<CreateResult> {
    const w = writeDirOpArgs(new XdrWriter(), dir, name);
    if (how.mode === 'exclusive') {
      if (how.verifier.length !== NFS3_CREATEVERFSIZE) throw new RangeError('an exclusive create verifier is 8 bytes');
      w.uint32(2).fixedOpaque(how.verifier, NFS3_CREATEVERFSIZE);
    } else {
      w.uint32(how.mode === 'guarded' ? 1 : 0);
      writeSattr3(w, how.attrs ?? {});
    }
    return this.call(PROC.CREATE, 'CREATE', w.toBuffer(), subject ?? name, decodeCreateOk);
  }

  mkdir(dir: Buffer, name: string, attrs: SetAttrs, subject?: string): Promise<CreateResult> {
    const w = writeDirOpArgs(new XdrWriter(), dir, name);
    writeSattr3(w, attrs);
    return this.call(PROC.MKDIR, 'MKDIR', w.toBuffer(), subject ?? name, decodeCreateOk);
  }

  async remove(dir: Buffer, name: string, subject?: string): Promise<void> {
    await this.call(PROC.REMOVE, 'REMOVE', writeDirOpArgs(new XdrWriter(), dir, name).toBuffer(), subject ?? name, readWccData);
  }

  async rmdir(dir: Buffer, name: string, subject?: string): Promise<void> {
    await this.call(PROC.RMDIR, 'RMDIR', writeDirOpArgs(new XdrWriter(), dir, name).toBuffer(), subject ?? name, readWccData);
  }

  async rename(fromDir: Buffer, fromName: string, toDir: Buffer, toName: string, subject?: string): Promise<void> {
    const w = writeDirOpArgs(new XdrWriter(), fromDir, fromName);
    writeDirOpArgs(w, toDir, toName);
    await this.call(PROC.RENAME, 'RENAME', w.toBuffer(), subject ?? `${fromName} → ${toName}`, decodeRenameOk);
  }

  /**
   * One page of a directory. Start with cookie 0 and a zero verifier; pass back
   * the last entry's cookie and the returned verifier for the next page.
   */
  readdirplus(dir: Buffer, cookie: bigint, cookieverf: Buffer, dircount: number, maxcount: number, subject?: string): Promise<ReaddirPlusResult> {
    const args = new XdrWriter().opaque(dir).uint64(cookie).fixedOpaque(cookieverf, NFS3_COOKIEVERFSIZE).uint32(dircount).uint32(maxcount).toBuffer();
    return this.call(PROC.READDIRPLUS, 'READDIRPLUS', args, subject, decodeReaddirPlusOk);
  }

  fsstat(fh: Buffer, subject?: string): Promise<FsStat> {
    return this.call(PROC.FSSTAT, 'FSSTAT', new XdrWriter().opaque(fh).toBuffer(), subject, decodeFsstatOk);
  }

  fsinfo(fh: Buffer, subject?: string): Promise<FsInfo> {
    return this.call(PROC.FSINFO, 'FSINFO', new XdrWriter().opaque(fh).toBuffer(), subject, decodeFsinfoOk);
  }
}
export { PROC as NFS3_PROC };
