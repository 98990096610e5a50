/**
 * Starts a real nfs-ganesha (FSAL VFS, NFSv3) on 127.0.0.1 with free ports and a
 * temporary export, for tests; and rpcbind when none is running, since ganesha
 * registers its programs there. Missing packages fail with the install hint.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync, readdirSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { getPort, MOUNT_PROG, NFS_PROG } from '@motus/storage-nas';
import { freePort, requireCommand, tempDir, waitFor, sleep } from '../../support/index.js';

const INSTALL_HINT = 'run `bash scripts/install-system-deps.sh` (as root) to install the Debian packages the tests use';

export interface GaneshaServer {
  readonly host: string;
  readonly nfsPort: number;
  readonly mountPort: number;
  /** Export path as MOUNT knows it (ganesha uses the directory's path for NFSv3). */
  readonly exportPath: string;
  /** The exported directory on this machine, to check what the server stored. */
  readonly dir: string;
  readonly logFile: string;
  /** A libnfs URL (nfs-cp, nfs-ls, nfs-cat) for a path inside the export. */
  url(path?: string): string;
  /** Kills the server the hard way (SIGKILL), as a crash would. */
  kill(): Promise<void>;
  /** Starts the server again with the same ports, config and export. */
  restart(): Promise<void>;
  /**
   * Whether rpcbind still maps NFS and MOUNT v3 to this server's ports. QEMU's NFS
   * client finds the server through rpcbind only, and rpcbind keeps one entry per
   * program: another ganesha on the machine registers over it, and unregisters it
   * when it stops.
   */
  registered(): Promise<boolean>;
  /** Stops the server, removes the temporary folder, and stops rpcbind if it was started for it. */
  stop(): Promise<void>;
}

const children = new Set<ChildProcess>();
process.once('exit', () => {
  // Mocha may end the process without running after hooks; no server outlives the tests.
  for (const child of children) child.kill('SIGKILL');
});

let rpcbindChild: ChildProcess | undefined;
let rpcbindUsers = 0;

function portOpen(port: number, host = '127.0.0.1', timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(false);
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}

async function ensureRpcbind(): Promise<void> {
  rpcbindUsers++;
  if (await portOpen(111)) return;
  const rpcbind = requireCommand('rpcbind', 'rpcbind');
  // rpcbind -h 127.0.0.1 crashes (double free) in Debian 12's rpcbind 1.2.6, so it binds all interfaces.
  const child = spawn(rpcbind, ['-f', '-w'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  children.add(child);
  child.once('exit', () => children.delete(child));
  rpcbindChild = child;
  await waitFor(`rpcbind on port 111 (stderr: ${stderr})`, async () => ((await portOpen(111)) ? true : undefined), 10000);
}

async function releaseRpcbind(): Promise<void> {
  rpcbindUsers--;
  if (rpcbindUsers > 0 || !rpcbindChild) return;
  const child = rpcbindChild;
  rpcbindChild = undefined;
  await stopChild(child, 5000);
}

async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

function requireVfsFsal(): void {
  const dirs = ['/usr/lib/x86_64-linux-gnu/ganesha', '/usr/lib/aarch64-linux-gnu/ganesha', '/usr/lib64/ganesha', '/usr/lib/ganesha'];
  for (const d of dirs) {
    if (existsSync(d) && readdirSync(d).some((f) => f.startsWith('libfsalvfs'))) return;
  }
  throw new Error(`nfs-ganesha's VFS backend (Debian package nfs-ganesha-vfs) is not installed: ${INSTALL_HINT}`);
}

/** `address`: where it listens (127.0.0.1 by default; the fault matrix's bridge address for hosts in namespaces). */
export async function startGanesha(options: { address?: string } = {}): Promise<GaneshaServer> {
  const address = options.address ?? '127.0.0.1';
  const ganesha = requireCommand('ganesha.nfsd', 'nfs-ganesha');
  if (process.getuid?.() !== 0) {
    // FSAL VFS opens files by handle (open_by_handle_at), which needs CAP_DAC_READ_SEARCH.
    throw new Error('nfs-ganesha with the VFS backend must run as root: run the NAS integration tests as root');
  }
  requireVfsFsal();
  await ensureRpcbind();
  const tmp = tempDir('ganesha');
  const dir = join(tmp.path, 'export');
  const recovery = join(tmp.path, 'recovery');
  mkdirSync(dir, { mode: 0o777 });
  mkdirSync(recovery);
  const [nfsPort, mountPort, nlmPort, rquotaPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const conf = join(tmp.path, 'ganesha.conf');
  const logFile = join(tmp.path, 'ganesha.log');
  const pidFile = join(tmp.path, 'ganesha.pid');
  writeFileSync(
    conf,
    `NFS_CORE_PARAM {
  NFS_Port = ${nfsPort};
  MNT_Port = ${mountPort};
  NLM_Port = ${nlmPort};
  Rquota_Port = ${rquotaPort};
  Bind_addr = ${address};
  Protocols = 3;
  Enable_NLM = false;
  Enable_RQUOTA = false;
  Enable_UDP = false;
}
NFSV4 {
  RecoveryBackend = fs;
  RecoveryRoot = ${recovery};
  Graceless = true;
}
EXPORT {
  Export_Id = 77;
  Path = ${dir};
  Pseudo = /motus;
  FSAL { Name = VFS; }
  Squash = No_Root_Squash;
  Access_Type = RW;
  Protocols = 3;
  Transports = TCP;
}
`,
  );

  let child: ChildProcess | undefined;
  let launchedAt = 0;
  const registered = async (): Promise<boolean> => {
    const nfs = await getPort(NFS_PROG, 3, { host: '127.0.0.1', timeoutMs: 2000 }).catch(() => 0);
    const mnt = await getPort(MOUNT_PROG, 3, { host: '127.0.0.1', timeoutMs: 2000 }).catch(() => 0);
    return nfs === nfsPort && mnt === mountPort;
  };
  const launch = async () => {
    // ganesha derives its write verifier from its start time in whole seconds, so
    // two starts within one second would look like one boot to a client.
    const wait = launchedAt + 1100 - Date.now();
    if (wait > 0) await sleep(wait);
    launchedAt = Date.now();
    const c = spawn(ganesha, ['-F', '-f', conf, '-L', logFile, '-p', pidFile, '-N', 'NIV_EVENT'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    c.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    children.add(c);
    c.once('exit', () => children.delete(c));
    child = c;
    const tail = () => {
      const log = existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n') : '(no log)';
      return `stderr: ${stderr.trim()}\nlog tail:\n${log}`;
    };
    try {
      await waitFor(
        `ganesha.nfsd on ${address}:${nfsPort}`,
        async () => {
          if (c.exitCode !== null) throw new Error(`ganesha.nfsd exited with ${c.exitCode}\n${tail()}`);
          if (!(await portOpen(nfsPort, address)) || !(await portOpen(mountPort, address))) return undefined;
          // Registered with rpcbind too, so portmapper lookups in tests see this instance.
          return (await registered()) ? true : undefined;
        },
        20000,
        150,
      );
    } catch (err) {
      await stopChild(c, 2000);
      throw new Error(`${(err as Error).message}\n${tail()}`);
    }
  };

  try {
    await launch();
  } catch (err) {
    tmp.remove();
    await releaseRpcbind();
    throw err;
  }

  let stopped = false;
  return {
    host: address,
    nfsPort,
    mountPort,
    exportPath: dir,
    dir,
    logFile,
    url: (path = '') => `nfs://${address}${dir}${path ? `/${path.replace(/^\/+/, '')}` : ''}?nfsport=${nfsPort}&mountport=${mountPort}&version=3`,
    async kill() {
      const c = child;
      if (!c || c.exitCode !== null || c.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
      c.kill('SIGKILL');
      await exited;
    },
    async restart() {
      if (child) await stopChild(child, 5000);
      await launch();
    },
    registered,
    async stop() {
      if (stopped) return;
      stopped = true;
      if (child) await stopChild(child, 10000);
      tmp.remove();
      await releaseRpcbind();
    },
  };
}

/** Runs a libnfs-utils command (nfs-cp, nfs-ls, nfs-cat) with a timeout; fails with the install hint if missing. */
export function libnfs(command: 'nfs-cp' | 'nfs-ls' | 'nfs-cat', args: string[], timeoutMs = 60000): string {
  const path = requireCommand(command, 'libnfs-utils');
  return execFileSync(path, args, { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
}
