/**
 * motusd without root: run as `nobody` (setpriv), it refuses to start with every
 * missing need named and how to give it (a state folder it cannot write, a port
 * below 1024), and with what it needs it runs a whole all-in-one site whose
 * guest's QEMU runs as that user too, saying at start that it runs without root
 * and which accelerator the machine leaves it.
 */
import { expect } from 'chai';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MotusClient, type VmSpec } from '@motus/sdk';
import { alive, guestKit, parseGuestSerial, qemuPidsOf, repoRoot, requireCommand, tempDir, waitFor } from '../../support/index.js';

const NOBODY = 65534;
const motusd = join(repoRoot, 'core', 'dist', 'bin', 'motusd.js');
const asNobody = (args: string[]) => ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', process.execPath, motusd, ...args];

function runToEnd(args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile('setpriv', asNobody(args), { timeout: 120_000 }, (err, _stdout, stderr) => {
      resolve({ code: err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0, stderr });
    });
  });
}

function uidOf(pid: number): number {
  return Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

describe('motusd without root (as nobody, through setpriv)', function () {
  this.timeout(1_200_000);
  const dir = tempDir('unprivileged');
  let daemon: ChildProcess | undefined;

  before(function () {
    requireCommand('setpriv', 'util-linux');
    requireCommand('qemu-system-x86_64', 'qemu-system-x86');
    if (process.getuid?.() !== 0) throw new Error('this test switches to user nobody with setpriv: run it as root (npm test does)');
    guestKit();
    // nobody must be able to enter the test's folder to reach the state folders in it.
    chmodSync(dir.path, 0o711);
  });

  after(async () => {
    if (daemon && daemon.exitCode === null && daemon.signalCode === null) {
      const exited = new Promise<void>((resolve) => daemon!.once('exit', () => resolve()));
      daemon.kill('SIGTERM');
      const timer = setTimeout(() => daemon!.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    }
    for (const pid of await qemuPidsOf('nobodyvm')) process.kill(pid, 'SIGKILL');
    dir.remove();
  });

  it('refuses a state folder it cannot write, naming the user, the folder and the fix (MOTUS_E_PRIVILEGES)', async () => {
    const rootOwned = join(dir.path, 'root-owned');
    mkdirSync(rootOwned, { mode: 0o755 });
    const { code, stderr } = await runToEnd(['--all-in-one', '--state', join(rootOwned, 'state')]);
    expect(code).to.equal(1);
    expect(stderr).to.include('MOTUS_E_PRIVILEGES').and.include('nobody').and.include(rootOwned).and.include('--state');
    expect(existsSync(join(rootOwned, 'state'))).to.equal(false);
    console.log(`      ${stderr.trim()}`);
  });

  it('refuses a port below 1024 without CAP_NET_BIND_SERVICE, saying so', async () => {
    const state = join(dir.path, 'low-port');
    mkdirSync(state, { mode: 0o700 });
    chownSync(state, NOBODY, NOBODY);
    const site = join(state, 'site.yaml');
    writeFileSync(site, 'site: low\nserver:\n  listen: 127.0.0.1:443\nhosts:\n  - name: host-a\n');
    chownSync(site, NOBODY, NOBODY);
    const { code, stderr } = await runToEnd(['server', '--state', state, '--site', site]);
    expect(code).to.equal(1);
    expect(stderr).to.include('MOTUS_E_PRIVILEGES').and.include('127.0.0.1:443').and.include('CAP_NET_BIND_SERVICE');
  });

  it('runs a whole site as nobody when the folder is its own: agents and the guest QEMU as nobody, saying it runs without root', async () => {
    const state = join(dir.path, 'state');
    mkdirSync(state, { mode: 0o700 });
    chownSync(state, NOBODY, NOBODY);
    let out = '';
    // The notices this test reads are info lines: npm test runs with MOTUS_LOG_LEVEL=error.
    daemon = spawn('setpriv', asNobody(['--all-in-one', '--state', state]), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MOTUS_LOG_LEVEL: 'info' } });
    daemon.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    daemon.stderr!.on('data', (c: Buffer) => (out += c.toString()));
    await waitFor('the site of nobody to be ready', () => {
      if (daemon!.exitCode !== null) throw new Error(`motusd exited with ${daemon!.exitCode}:\n${out}`);
      return existsSync(join(state, 'client.json')) ? true : undefined;
    }, 300_000, 250);
    // setpriv execs node: the child is motusd itself.
    expect(uidOf(daemon.pid!)).to.equal(NOBODY);
    const agentPids = [...out.matchAll(/started agent (\S+) \(pid (\d+)\)/g)].map((m) => Number(m[2]));
    expect(agentPids).to.have.length(2);
    for (const pid of agentPids) expect(uidOf(pid)).to.equal(NOBODY);
    const log = readFileSync(join(state, 'server', 'server.log'), 'utf8');
    expect(log).to.include('motusd runs without root').and.include('nobody');
    expect(log).not.to.include('runs as root');
    // The accelerator this machine leaves it is said, either way.
    expect(log).to.match(/no \/dev\/kvm|cannot open it|kvm/i);
    const client = new MotusClient(JSON.parse(readFileSync(join(state, 'client.json'), 'utf8')) as { url: string; token: string; ca: string });
    const kit = guestKit();
    const spec: VmSpec = { name: 'nobodyvm', memoryMiB: 128, vcpus: 1, boot: { kind: 'kernel', kernel: kit.kernel, initrd: kit.initrd, cmdline: kit.cmdline() } };
    const vm = await client.startVm(spec, 'host-a');
    await waitFor('heartbeats of the guest of nobody', () => (parseGuestSerial(readFileSync(vm.serialLog!, 'latin1')).heartbeats.length >= 3 ? true : undefined), 600_000, 250);
    const [qemu] = await qemuPidsOf('nobodyvm');
    expect(uidOf(qemu!), 'QEMU runs as nobody').to.equal(NOBODY);
    const host = (await client.hosts()).find((h) => h.name === 'host-a')!;
    console.log(`      site of nobody: server, 2 agents and QEMU (pid ${qemu}) as uid ${NOBODY}; accelerator ${host.hypervisor?.accelerator}`);
    await client.stopVm('nobodyvm');
    await waitFor('the guest to stop', async () => ((await qemuPidsOf('nobodyvm')).length === 0 ? true : undefined), 60_000);
    client.close();
    expect(alive(daemon.pid!)).to.equal(true);
  });
});
