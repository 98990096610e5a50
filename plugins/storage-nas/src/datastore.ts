/**
 * A NAS datastore: one NFS export (`nfs://server[:port]/export`) holding one
 * folder per VM with its disk images. Capacity comes from FSSTAT; a datastore that
 * cannot be reached is reported as not accessible rather than failing the listing
 * of every datastore.
 */
import type { DatastoreInfo } from '@motus/sdk';
import { nasError } from './errors.js';
import { Access } from './nfs3.js';
import { NfsClient, type NfsConnectOptions, type NfsStat } from './nfs-client.js';

export interface NfsUrl {
  host: string;
  export: string;
  port?: number;
  mountPort?: number;
}

export interface NasDatastoreConfig {
  name: string;
  /** nfs://host[:port]/export[?mountport=N] */
  url: string;
  uid: number;
  gid: number;
  timeoutMs: number;
  /** Portmapper port, for tests that move it. */
  portmapperPort?: number;
}

export interface NasDatastoreInfo extends DatastoreInfo {
  /** Why the datastore is not accessible, when it is not. */
  error?: string;
}

export interface VmDisk {
  name: string;
  /** Path relative to the export, e.g. "vm1/disk0.img". */
  path: string;
  sizeBytes: number;
}

/** Names the datastore keeps its own state under; never listed as VMs. */
const RESERVED_PREFIX = '.';
const MAX_NAME = 255;

function badUrl(url: string, why: string) {
  return nasError('MOTUS_E_INVALID_REQUEST', `datastore URL ${JSON.stringify(url)} ${why}; expected nfs://server[:port]/export[?nfsport=N&mountport=M]`, { url });
}

export function parseNfsUrl(url: string): NfsUrl {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw badUrl(url, 'is not a URL');
  }
  if (parsed.protocol !== 'nfs:') throw badUrl(url, 'does not start with nfs://');
  if (!parsed.hostname) throw badUrl(url, 'names no server');
  const exportPath = decodeURIComponent(parsed.pathname).replace(/\/+$/, '');
  if (!exportPath.startsWith('/')) throw badUrl(url, 'names no export');
  const out: NfsUrl = { host: parsed.hostname.replace(/^\[|\]$/g, ''), export: exportPath };
  if (parsed.port) out.port = Number(parsed.port);
  // libnfs spells the NFS port nfsport=; both forms name the same thing.
  const port = (name: string): number | undefined => {
    const value = parsed.searchParams.get(name);
    if (value === null) return undefined;
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw badUrl(url, `has an invalid ${name} ${JSON.stringify(value)}`);
    return n;
  };
  const nfsPort = port('nfsport');
  if (nfsPort !== undefined) {
    if (out.port !== undefined && out.port !== nfsPort) throw badUrl(url, `names two NFS ports (${out.port} and nfsport=${nfsPort})`);
    out.port = nfsPort;
  }
  const mountPort = port('mountport');
  if (mountPort !== undefined) out.mountPort = mountPort;
  return out;
}

/** A VM or disk name must be one path component that cannot escape or hide. */
function checkName(kind: string, name: string): void {
  if (name.length === 0 || name.length > MAX_NAME || name.includes('/') || name.includes('\0') || name.startsWith(RESERVED_PREFIX)) {
    throw nasError('MOTUS_E_INVALID_REQUEST', `${kind} name ${JSON.stringify(name)} is not valid: use 1–${MAX_NAME} characters, no "/", not starting with "."`, { [kind]: name });
  }
}

export class NasDatastore {
  private connecting: Promise<NfsClient> | undefined;
  readonly target: NfsUrl;

  constructor(readonly config: NasDatastoreConfig) {
    this.target = parseNfsUrl(config.url);
  }

  /** The connected client, made on first use and again after a failed attempt. */
  client(): Promise<NfsClient> {
    if (!this.connecting) {
      const opts: NfsConnectOptions = { host: this.target.host, export: this.target.export, uid: this.config.uid, gid: this.config.gid, timeoutMs: this.config.timeoutMs };
      if (this.target.port !== undefined) opts.port = this.target.port;
      if (this.target.mountPort !== undefined) opts.mountPort = this.target.mountPort;
      if (this.config.portmapperPort !== undefined) opts.portmapperPort = this.config.portmapperPort;
      this.connecting = NfsClient.connect(opts);
      this.connecting.catch(() => {
        this.connecting = undefined;
      });
    }
    return this.connecting;
  }

  /** Capacity and free space; `accessible: false` with the reason when the export cannot be reached or used. */
  async info(): Promise<NasDatastoreInfo> {
    const base = { name: this.config.name, kind: 'nas', url: this.config.url };
    try {
      const client = await this.client();
      const st = await client.fsstat();
      const granted = await client.access('', Access.READ | Access.LOOKUP | Access.MODIFY | Access.EXTEND);
      const writable = (granted & (Access.MODIFY | Access.EXTEND)) === (Access.MODIFY | Access.EXTEND);
      return {
        ...base,
        capacityBytes: st.totalBytes,
        // What this host may still use, which excludes space reserved for the server's root.
        freeBytes: st.availableBytes,
        accessible: writable,
        ...(writable ? {} : { error: `the export ${this.target.export} is not writable with uid ${this.config.uid}` }),
      };
    } catch (err) {
      return { ...base, capacityBytes: 0, freeBytes: 0, accessible: false, error: err instanceof Error ? err.message : String(err) };
    }
  }

  /** Names of the VM folders on the datastore. */
  async listVms(): Promise<string[]> {
    const client = await this.client();
    return (await client.list(''))
      .filter((e) => e.type === 'directory' && !e.name.startsWith(RESERVED_PREFIX))
      .map((e) => e.name)
      .sort();
  }

  /** Creates a VM's folder; fails with MOTUS_E_NFS_EXISTS if it is already there. */
  async createVmFolder(vm: string): Promise<void> {
    checkName('vm', vm);
    const client = await this.client();
    const { fh } = await client.resolve('');
    await client.nfs.mkdir(fh, vm, { mode: 0o755 }, vm);
  }

  /**
   * Creates a raw disk image of `sizeBytes` in the VM's folder, sparse (only its
   * size is set), refusing to replace an existing image.
   */
  async createDiskImage(vm: string, disk: string, sizeBytes: number): Promise<VmDisk> {
    checkName('vm', vm);
    checkName('disk', disk);
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) {
      throw nasError('MOTUS_E_INVALID_REQUEST', `disk size ${sizeBytes} is not a positive whole number of bytes`, { sizeBytes });
    }
    const client = await this.client();
    const { fh: dir } = await client.resolve(vm);
    const path = `${vm}/${disk}`;
    await client.nfs.create(dir, disk, { mode: 'guarded', attrs: { mode: 0o644, size: sizeBytes } }, path);
    const st = await client.stat(path);
    if (st.size !== sizeBytes) {
      // A server may ignore the size in CREATE's attributes; set it explicitly then.
      await client.setAttributes(path, { size: sizeBytes });
    }
    return { name: disk, path, sizeBytes };
  }

  /** The disk images in a VM's folder. */
  async listDisks(vm: string): Promise<VmDisk[]> {
    checkName('vm', vm);
    const client = await this.client();
    return (await client.list(vm))
      .filter((e: NfsStat & { name: string }) => e.type === 'file' && !e.name.startsWith(RESERVED_PREFIX))
      .map((e) => ({ name: e.name, path: `${vm}/${e.name}`, sizeBytes: e.size }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Whether the datastore answers and lets this host write; never throws. */
  async checkReachable(): Promise<{ reachable: boolean; latencyMs: number; error?: string }> {
    const started = performance.now();
    try {
      const client = await this.client();
      await client.nfs.null();
      const info = await this.info();
      const latencyMs = performance.now() - started;
      return info.accessible ? { reachable: true, latencyMs } : { reachable: false, latencyMs, error: info.error ?? 'not accessible' };
    } catch (err) {
      return { reachable: false, latencyMs: performance.now() - started, error: err instanceof Error ? err.message : String(err) };
    }
  }

  async close(): Promise<void> {
    const connecting = this.connecting;
    this.connecting = undefined;
    // A datastore whose connection never came up has nothing to close.
    const client = await connecting?.catch(() => undefined);
    await client?.close();
  }
}
