/** NFSv3 data types (RFC 1813 §2.5–2.6) and their XDR form. */
import type { XdrReader, XdrWriter } from './xdr.js';

export const NFS_PROG = 100003;
export const NFS_VERS = 3;
export const NFS3_FHSIZE = 64;
export const NFS3_WRITEVERFSIZE = 8;
export const NFS3_COOKIEVERFSIZE = 8;
export const NFS3_CREATEVERFSIZE = 8;
/** Longest file name we accept from a server; NFS servers on Linux allow 255 bytes. */
export const MAX_NAME = 1024;

export const FileType = { REG: 1, DIR: 2, BLK: 3, CHR: 4, LNK: 5, SOCK: 6, FIFO: 7 } as const;
export type FileTypeName = 'file' | 'directory' | 'block-device' | 'char-device' | 'symlink' | 'socket' | 'fifo';
const TYPE_NAMES: Record<number, FileTypeName> = { 1: 'file', 2: 'directory', 3: 'block-device', 4: 'char-device', 5: 'symlink', 6: 'socket', 7: 'fifo' };

export interface NfsTime {
  seconds: number;
  nseconds: number;
}

export interface Fattr3 {
  type: FileTypeName;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  used: number;
  rdev: [number, number];
  fsid: bigint;
  fileid: bigint;
  atime: NfsTime;
  mtime: NfsTime;
  ctime: NfsTime;
}

export interface WccAttr {
  size: number;
  mtime: NfsTime;
  ctime: NfsTime;
}

export interface WccData {
  before: WccAttr | undefined;
  after: Fattr3 | undefined;
}

export function readTime(r: XdrReader): NfsTime {
  return { seconds: r.uint32('seconds'), nseconds: r.uint32('nseconds') };
}

export function readFattr3(r: XdrReader): Fattr3 {
  const t = r.enumOf([1, 2, 3, 4, 5, 6, 7], 'ftype3');
  return {
    type: TYPE_NAMES[t]!,
    mode: r.uint32('mode'),
    nlink: r.uint32('nlink'),
    uid: r.uint32('uid'),
    gid: r.uint32('gid'),
    size: r.uint64Number('size'),
    used: r.uint64Number('used'),
    rdev: [r.uint32('specdata1'), r.uint32('specdata2')],
    fsid: r.uint64('fsid'),
    fileid: r.uint64('fileid'),
    atime: readTime(r),
    mtime: readTime(r),
    ctime: readTime(r),
  };
}

export function readPostOpAttr(r: XdrReader): Fattr3 | undefined {
  return r.optional(readFattr3, 'post_op_attr');
}

export function readWccData(r: XdrReader): WccData {
  const before = r.optional((x) => ({ size: x.uint64Number('size'), mtime: readTime(x), ctime: readTime(x) }), 'pre_op_attr');
  return { before, after: readPostOpAttr(r) };
}

export function readFileHandle(r: XdrReader): Buffer {
  return r.opaque(NFS3_FHSIZE, 'nfs_fh3');
}

export function readPostOpFh(r: XdrReader): Buffer | undefined {
  return r.optional(readFileHandle, 'post_op_fh3');
}

/** Attributes to set (sattr3); a field left out is not changed. */
export interface SetAttrs {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  /** 'server' sets the server's current time. */
  atime?: NfsTime | 'server';
  mtime?: NfsTime | 'server';
}

function writeSetTime(w: XdrWriter, t: NfsTime | 'server' | undefined): void {
  if (t === undefined) w.uint32(0);
  else if (t === 'server') w.uint32(1);
  else w.uint32(2).uint32(t.seconds).uint32(t.nseconds);
}

export function writeSattr3(w: XdrWriter, a: SetAttrs): void {
  for (const v of [a.mode, a.uid, a.gid]) {
    if (v === undefined) w.bool(false);
    else w.bool(true).uint32(v);
  }
  if (a.size === undefined) w.bool(false);
  else w.bool(true).uint64(a.size);
  writeSetTime(w, a.atime);
  writeSetTime(w, a.mtime);
}

/** NFSv3 status codes (RFC 1813 §2.6) with a phrase a person understands. */
export const NFS3_STATUS: Record<number, { name: string; meaning: string }> = {
  1: { name: 'NFS3ERR_PERM', meaning: 'operation not permitted (not the owner)' },
  2: { name: 'NFS3ERR_NOENT', meaning: 'no such file or directory' },
  5: { name: 'NFS3ERR_IO', meaning: 'I/O error on the server' },
  6: { name: 'NFS3ERR_NXIO', meaning: 'no such device or address' },
  13: { name: 'NFS3ERR_ACCES', meaning: 'permission denied' },
  17: { name: 'NFS3ERR_EXIST', meaning: 'file already exists' },
  18: { name: 'NFS3ERR_XDEV', meaning: 'cross-device link not allowed' },
  19: { name: 'NFS3ERR_NODEV', meaning: 'no such device' },
  20: { name: 'NFS3ERR_NOTDIR', meaning: 'not a directory' },
  21: { name: 'NFS3ERR_ISDIR', meaning: 'is a directory' },
  22: { name: 'NFS3ERR_INVAL', meaning: 'invalid argument' },
  27: { name: 'NFS3ERR_FBIG', meaning: 'file too large' },
  28: { name: 'NFS3ERR_NOSPC', meaning: 'no space left on the export' },
  30: { name: 'NFS3ERR_ROFS', meaning: 'the export is read-only' },
  31: { name: 'NFS3ERR_MLINK', meaning: 'too many hard links' },
  63: { name: 'NFS3ERR_NAMETOOLONG', meaning: 'file name too long' },
  66: { name: 'NFS3ERR_NOTEMPTY', meaning: 'directory not empty' },
  69: { name: 'NFS3ERR_DQUOT', meaning: 'disk quota exceeded' },
  70: { name: 'NFS3ERR_STALE', meaning: 'stale file handle (the file is gone)' },
  71: { name: 'NFS3ERR_REMOTE', meaning: 'too many levels of remote in path' },
  10001: { name: 'NFS3ERR_BADHANDLE', meaning: 'the server does not recognise the file handle' },
  10002: { name: 'NFS3ERR_NOT_SYNC', meaning: 'attribute update out of sync (guard check failed)' },
  10003: { name: 'NFS3ERR_BAD_COOKIE', meaning: 'directory listing cookie is stale' },
  10004: { name: 'NFS3ERR_NOTSUPP', meaning: 'operation not supported by the server' },
  10005: { name: 'NFS3ERR_TOOSMALL', meaning: 'buffer too small for the reply' },
  10006: { name: 'NFS3ERR_SERVERFAULT', meaning: 'the server failed in an unexpected way' },
  10007: { name: 'NFS3ERR_BADTYPE', meaning: 'object type not supported by the server' },
  10008: { name: 'NFS3ERR_JUKEBOX', meaning: 'the server is busy; try again later' },
};

export function nfsStatusName(status: number): string {
  return NFS3_STATUS[status]?.name ?? `NFS3 status ${status}`;
}
