/** MOUNT v3 (RFC 1813 appendix I): MNT, UMNT, EXPORT. */
import { nasError } from './errors.js';
import type { RpcClient } from './rpc-client.js';
import { decodeXdr, XdrWriter, type XdrReader } from './xdr.js';

export const MOUNT_PROG = 100005;
export const MOUNT_VERS = 3;
const MOUNTPROC3_NULL = 0;
const MOUNTPROC3_MNT = 1;
const MOUNTPROC3_UMNT = 3;
const MOUNTPROC3_EXPORT = 5;
const MNTPATHLEN = 1024;
const MNTNAMLEN = 255;
const FHSIZE3 = 64;

const MOUNT_STATUS: Record<number, string> = {
  1: 'MNT3ERR_PERM: not owner',
  2: 'MNT3ERR_NOENT: no such export',
  5: 'MNT3ERR_IO: I/O error on the server',
  13: 'MNT3ERR_ACCES: permission denied (is this host allowed by the export?)',
  20: 'MNT3ERR_NOTDIR: not a directory',
  22: 'MNT3ERR_INVAL: invalid argument',
  63: 'MNT3ERR_NAMETOOLONG: export path too long',
  10004: 'MNT3ERR_NOTSUPP: operation not supported',
  10006: 'MNT3ERR_SERVERFAULT: server fault',
};

export interface MountResult {
  fileHandle: Buffer;
  authFlavors: number[];
}

export interface ExportEntry {
  dir: string;
  groups: string[];
}

function decodeList<T>(r: XdrReader, item: (r: XdrReader) => T, limit: number, what: string): T[] {
  const out: T[] = [];
  while (r.bool(`${what} follows`)) {
    if (out.length >= limit) r.fail('too-long', `${what} list is longer than ${limit}`);
    out.push(item(r));
  }
  return out;
}

export class MountClient {
  constructor(private readonly rpc: RpcClient) {}

  async null(): Promise<void> {
    await this.rpc.call(MOUNTPROC3_NULL, Buffer.alloc(0), { name: 'NULL' });
  }

  async mnt(path: string): Promise<MountResult> {
    const results = await this.rpc.call(MOUNTPROC3_MNT, new XdrWriter().string(path).toBuffer(), { name: 'MNT' });
    const res = decodeXdr(results, (r) => {
      const status = r.uint32('mountstat3');
      if (status !== 0) return { status };
      const fileHandle = r.opaque(FHSIZE3, 'fhandle3');
      const authFlavors = r.array(64, (x) => x.uint32('auth flavor'), 'auth_flavors');
      return { status, fileHandle, authFlavors };
    });
    if (!res.ok) throw nasError('MOTUS_E_NFS_PROTOCOL', `MOUNT MNT reply for ${path} is malformed: ${res.error.message}`, { ...res.error });
    const v = res.value;
    if (v.status !== 0 || !v.fileHandle || !v.authFlavors) {
      const meaning = MOUNT_STATUS[v.status] ?? `mount status ${v.status}`;
      throw nasError('MOTUS_E_NFS_MOUNT', `the server refused to mount ${path}: ${meaning}`, { export: path, mountStatus: v.status });
    }
    return { fileHandle: v.fileHandle, authFlavors: v.authFlavors };
  }

  async umnt(path: string): Promise<void> {
    await this.rpc.call(MOUNTPROC3_UMNT, new XdrWriter().string(path).toBuffer(), { name: 'UMNT' });
  }

  async exports(): Promise<ExportEntry[]> {
    const results = await this.rpc.call(MOUNTPROC3_EXPORT, Buffer.alloc(0), { name: 'EXPORT' });
    const res = decodeXdr(
      results,
      (r) =>
        decodeList(
          r,
          (x) => ({ dir: x.string(MNTPATHLEN, 'ex_dir'), groups: decodeList(x, (y) => y.string(MNTNAMLEN, 'group name'), 4096, 'groups') }),
          65536,
          'exports',
        ),
      true,
    );
    if (!res.ok) throw nasError('MOTUS_E_NFS_PROTOCOL', `MOUNT EXPORT reply is malformed: ${res.error.message}`, { ...res.error });
    return res.value;
  }
}
