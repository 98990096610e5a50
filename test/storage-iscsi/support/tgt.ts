/**
 * A real tgt iSCSI target for tests: tgtd in the foreground on 127.0.0.1 and a free
 * port, with its own control port (so several instances and a system tgtd never
 * collide), file-backed LUNs in a temporary folder, set up with tgtadm.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { openSync, closeSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { freePort, requireCommand, sleep, tempDir } from '../../support/index.js';

export interface TgtTargetSpec {
  iqn: string;
  /** Sizes of the LUNs 1, 2, … in MiB. */
  lunsMiB: number[];
  /** Incoming CHAP account: what the initiator must present. */
  chap?: { user: string; secret: string };
  /** Outgoing CHAP account: what the target presents for mutual CHAP. */
  mutualChap?: { user: string; secret: string };
  /** iSCSI parameters of the target, e.g. { MaxRecvDataSegmentLength: '262144', InitialR2T: 'No' }. */
  params?: Record<string, string>;
  /** Initiator addresses allowed; ALL by default. */
  acl?: string;
}

export interface TgtTarget {
  iqn: string;
  tid: number;
  luns: Array<{ lun: number; path: string; bytes: number }>;
}

export interface Tgt {
  readonly port: number;
  readonly controlPort: number;
  readonly portal: string;
  readonly dir: string;
  addTarget(spec: TgtTargetSpec): Promise<TgtTarget>;
  tgtadm(args: string[]): Promise<string>;
  /** SIGKILL, as a crash: the backing files stay. */
  kill(): Promise<void>;
  /**
   * The same crash, signalled before this returns: for a caller that must not
   * wait (an initiator's frame tap, between two frames). `kill()` afterwards
   * waits for the exit.
   */
  killNow(): void;
  /** Starts tgtd again on the same ports with the same targets and files. */
  restart(): Promise<void>;
  /** Kills tgtd and removes its files. */
  stop(): Promise<void>;
  log(): string;
}

function run(cmd: string, args: string[], timeoutMs = 10000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${stderr || err.message}`));
      else resolve(stdout);
    });
  });
}

function portOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(500, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/**
 * `address`: where the portal listens, 127.0.0.1 unless a fault test gives the
 * link-local address its host namespaces reach (test/faults/support/netns.ts).
 */
export async function startTgt(options: { address?: string } = {}): Promise<Tgt> {
  const address = options.address ?? '127.0.0.1';
  const tgtd = requireCommand('tgtd', 'tgt');
  const tgtadmPath = requireCommand('tgtadm', 'tgt');
  const dir = tempDir('tgt');
  const port = await freePort();
  // The control "port" names a unix socket /var/run/tgtd/socket.N, not a TCP port.
  const controlPort = 1000 + Math.floor(Math.random() * 31000);
  const specs: TgtTargetSpec[] = [];
  const targets: TgtTarget[] = [];
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const logPath = join(dir.path, 'tgtd.log');
  const tgtadm = (args: string[]): Promise<string> => run(tgtadmPath, ['-C', String(controlPort), ...args]);

  const launch = async (): Promise<void> => {
    const fd = openSync(logPath, 'a');
    const c = spawn(tgtd, ['-f', '--iscsi', `portal=${address}:${port}`, '-C', String(controlPort)], { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    child = c;
    exited = new Promise((resolve) => c.once('exit', () => resolve()));
    const deadline = Date.now() + 10000;
    for (;;) {
      if (c.exitCode !== null) throw new Error(`tgtd exited with ${c.exitCode}: ${readFileSync(logPath, 'utf8')}`);
      const ready = await tgtadm(['--mode', 'sys', '--op', 'show']).then(() => true, () => false);
      if (ready && (await portOpen(address, port))) return;
      if (Date.now() > deadline) throw new Error(`tgtd did not start within 10 s: ${readFileSync(logPath, 'utf8')}`);
      await sleep(50);
    }
  };

  const configure = async (spec: TgtTargetSpec, tid: number): Promise<void> => {
    const t = ['--lld', 'iscsi'];
    await tgtadm([...t, '--mode', 'target', '--op', 'new', '--tid', String(tid), '--targetname', spec.iqn]);
    const target = targets.find((x) => x.tid === tid)!;
    for (const lun of target.luns) {
      await tgtadm([...t, '--mode', 'logicalunit', '--op', 'new', '--tid', String(tid), '--lun', String(lun.lun), '--backing-store', lun.path]);
    }
    for (const [name, value] of Object.entries(spec.params ?? {})) {
      await tgtadm([...t, '--mode', 'target', '--op', 'update', '--tid', String(tid), '--name', name, '--value', value]);
    }
    if (spec.chap) {
      await tgtadm([...t, '--mode', 'account', '--op', 'new', '--user', spec.chap.user, '--password', spec.chap.secret]).catch(() => undefined);
      await tgtadm([...t, '--mode', 'account', '--op', 'bind', '--tid', String(tid), '--user', spec.chap.user]);
    }
    if (spec.mutualChap) {
      await tgtadm([...t, '--mode', 'account', '--op', 'new', '--user', spec.mutualChap.user, '--password', spec.mutualChap.secret]).catch(() => undefined);
      await tgtadm([...t, '--mode', 'account', '--op', 'bind', '--tid', String(tid), '--user', spec.mutualChap.user, '--outgoing']);
    }
    await tgtadm([...t, '--mode', 'target', '--op', 'bind', '--tid', String(tid), '--initiator-address', spec.acl ?? 'ALL']);
  };

  const cleanupSockets = (): void => {
    for (const f of [`/var/run/tgtd/socket.${controlPort}`, `/var/run/tgtd/socket.${controlPort}.lock`]) rmSync(f, { force: true });
  };

  /** Whether a running tgtd was sent the signal. */
  const killNow = (): boolean => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return false;
    // tgtd ignores SIGTERM while it has targets; SIGKILL is the only sure stop.
    c.kill('SIGKILL');
    return true;
  };

  const kill = async (): Promise<void> => {
    if (!killNow()) return;
    await Promise.race([exited, sleep(5000)]);
    cleanupSockets();
  };

  // A test process that dies without running its after() hooks must not leave tgtd behind.
  const onExit = (): void => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    cleanupSockets();
    dir.remove();
  };
  process.on('exit', onExit);
  await launch();
  return {
    port, controlPort, portal: `${address}:${port}`, dir: dir.path,
    async addTarget(spec) {
      const tid = specs.length + 1;
      const luns = spec.lunsMiB.map((mib, i) => {
        const path = join(dir.path, `t${tid}-lun${i + 1}.img`);
        writeFileSync(path, '');
        truncateSync(path, mib * 1024 * 1024);
        return { lun: i + 1, path, bytes: mib * 1024 * 1024 };
      });
      const target = { iqn: spec.iqn, tid, luns };
      specs.push(spec);
      targets.push(target);
      await configure(spec, tid);
      return target;
    },
    tgtadm,
    kill,
    killNow: () => void killNow(),
    async restart() {
      await kill();
      await launch();
      for (const [i, spec] of specs.entries()) await configure(spec, i + 1);
    },
    async stop() {
      await kill();
      process.off('exit', onExit);
      dir.remove();
    },
    log: () => {
      try {
        return readFileSync(logPath, 'utf8');
      } catch {
        return '';
      }
    },
  };
}
