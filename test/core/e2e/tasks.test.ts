import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { MotusClient, MotusError, type MigrationEvent, type SiteEvent, type TaskInfo, type VmInfo, type VmSpec } from '@motus/sdk';
import { guestKit, parseHeartbeats, requireCommand, tempDir, waitFor } from '../../support/index.js';
import { alive, qemuPidsOf, repoRoot, startSite, type TestSite } from '../../support/site.js';

const TERMINAL = ['completed', 'failed', 'cancelled'];

function spec(name: string, dirty?: { mbps: number; wsMiB: number }): VmSpec {
  const kit = guestKit();
  return {
    name,
    memoryMiB: 128,
    vcpus: 1,
    boot: { kind: 'kernel', kernel: kit.kernel, initrd: kit.initrd, cmdline: kit.cmdline(dirty ? { dirtyMBps: dirty.mbps, workingSetMiB: dirty.wsMiB } : {}) },
  };
}

async function settled(client: MotusClient, id: string, timeoutMs = 240_000): Promise<TaskInfo> {
  return waitFor(`task ${id} to end`, async () => {
    const task = await client.task(id);
    return TERMINAL.includes(task.state) ? task : undefined;
  }, timeoutMs, 200);
}

async function vmInfo(client: MotusClient, name: string): Promise<VmInfo> {
  const vm = (await client.vms()).find((v) => v.name === name);
  if (!vm) throw new Error(`VM ${name} is not in the inventory`);
  return vm;
}

/** Follows the site's events into an array until stopped. */
function record(client: MotusClient): { events: Array<SiteEvent & { stream: 'migration' }>; stop(): void } {
  const abort = new AbortController();
  const events: Array<SiteEvent & { stream: 'migration' }> = [];
  void (async () => {
    for await (const event of client.events(abort.signal)) if (event.stream === 'migration') events.push(event);
  })().catch(() => undefined);
  return { events, stop: () => abort.abort() };
}

describe('migration tasks with real guests (all-in-one site, QEMU)', function () {
  this.timeout(900_000);
  let site: TestSite;
  let olga: MotusClient;
  let vera: MotusClient;

  before(async () => {
    requireCommand('qemu-system-x86_64', 'qemu-system-x86');
    requireCommand('setpriv', 'util-linux');
    guestKit();
    site = await startSite(`
site: tasks
migration:
  maxBandwidthMiBps: 64
hosts:
  - name: host-a
    memoryMiB: 3072
    maxMigrations: 2
  - name: host-b
    memoryMiB: 3072
`);
    const { url, ca } = JSON.parse(readFileSync(join(site.stateDir, 'client.json'), 'utf8')) as { url: string; ca: string };
    await site.client.addUser('olga', 'operator');
    await site.client.addUser('vera', 'viewer');
    olga = new MotusClient({ url, ca, token: (await site.client.createToken('olga')).token });
    vera = new MotusClient({ url, ca, token: (await site.client.createToken('vera')).token });
  });

  after(async () => {
    await site?.stop();
  });

  it('runs ten migrations requested at once against a host limit of 2: never more than 2 on host-a, all complete', async () => {
    const names = Array.from({ length: 10 }, (_, i) => `ten${i}`);
    for (const name of names) await site.client.startVm(spec(name), 'host-a');
    const watch = record(site.client);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const requested = await Promise.all(names.map((vm) => olga.migrate({ vm, destination: 'host-b' })));
    expect(requested.filter((s) => s.state === 'queued').length).to.be.at.least(8);
    const tasks = await Promise.all(requested.map((s) => settled(olga, s.id)));
    watch.stop();
    expect(tasks.map((t) => t.state), JSON.stringify(tasks.map((t) => t.error))).to.deep.equal(Array(10).fill('completed'));
    let running = 0;
    let peak = 0;
    for (const event of watch.events) {
      if (event.type === 'requested') running += 1;
      if (event.type === 'completed' || event.type === 'rolled-back' || event.type === 'rejected') running -= 1;
      peak = Math.max(peak, running);
    }
    expect(peak, 'migrations running on host-a at once').to.equal(2);
    expect(watch.events.filter((e) => e.type === 'completed')).to.have.length(10);
    for (const name of names) {
      const vm = await vmInfo(site.client, name);
      expect([vm.host, vm.state]).to.deep.equal(['host-b', 'running']);
      expect(await qemuPidsOf(name)).to.deep.equal([vm.pid]);
    }
    const trail = await site.client.audit({ vm: 'ten0' });
    expect(trail.map((r) => r.action)).to.include.members(['migration.request', 'migration.validated', 'migration.switchover', 'migration.completed']);
    expect(trail.find((r) => r.action === 'migration.completed')!).to.include({ user: 'olga', source: 'host-a', destination: 'host-b' });
    expect(trail.find((r) => r.action === 'migration.completed')!.downtimeMs).to.be.greaterThan(0);
  });

  it('starts a high request queued behind normal ones first', async () => {
    // Two guests that dirty memory keep host-a's two slots busy for a few seconds.
    for (const name of ['blk0', 'blk1']) await site.client.startVm(spec(name, { mbps: 24, wsMiB: 96 }), 'host-b');
    for (const name of ['blk0', 'blk1']) {
      const vm = await vmInfo(site.client, name);
      await waitFor(`${name} to boot`, () => (parseHeartbeats(readFileSync(vm.serialLog!, 'utf8')).length >= 3 ? true : undefined), 90_000, 250);
    }
    const watch = record(site.client);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const blockers = [await olga.migrate({ vm: 'blk0', destination: 'host-a' }), await olga.migrate({ vm: 'blk1', destination: 'host-a' })];
    const normals = [await olga.migrate({ vm: 'ten2', destination: 'host-a' }), await olga.migrate({ vm: 'ten3', destination: 'host-a' })];
    const high = await olga.migrate({ vm: 'ten4', destination: 'host-a', priority: 'high' });
    expect([...normals, high].map((s) => s.state)).to.deep.equal(['queued', 'queued', 'queued']);
    const ended = await Promise.all([...blockers, ...normals, high].map((s) => settled(olga, s.id)));
    watch.stop();
    expect(ended.map((t) => t.state)).to.deep.equal(Array(5).fill('completed'));
    const starts = watch.events.filter((e) => e.type === 'requested').map((e) => (e as Extract<MigrationEvent, { type: 'requested' }>).vm);
    expect(starts.slice(2), 'the high task starts first once room frees').to.deep.equal(['ten4', 'ten2', 'ten3']);
  });

  it('runs a scheduled migration within a second of its time, attributed to its creator', async () => {
    const at = new Date(Date.now() + 3_000).toISOString();
    const schedule = await olga.createSchedule({ target: { vms: ['ten5'] }, destination: 'host-a', at });
    expect(schedule.owner).to.equal('olga');
    const task = await waitFor('the scheduled task', async () => (await site.client.tasks()).find((t) => t.scheduleId === schedule.id), 15_000, 50);
    expect(task.requestedBy).to.equal('olga');
    expect(Date.parse(task.startedAt ?? task.createdAt) - Date.parse(at)).to.be.within(0, 1_000);
    expect((await settled(olga, task.id)).state).to.equal('completed');
    expect((await vmInfo(site.client, 'ten5')).host).to.equal('host-a');
    const trail = await site.client.audit({ vm: 'ten5', since: at });
    expect(trail.find((r) => r.action === 'migration.completed')!.user).to.equal('olga');
    expect((await site.client.audit({ user: 'olga' })).some((r) => r.action === 'schedule.run' && r.detail?.schedule === schedule.id)).to.equal(true);
  });

  it('answers a viewer\'s migrate request with 403 and an audit record', async () => {
    try {
      await vera.migrate({ vm: 'ten6', destination: 'host-a' });
      expect.fail('a viewer migrated');
    } catch (err) {
      expect((err as MotusError).code).to.equal('MOTUS_E_FORBIDDEN');
    }
    const refused = (await site.client.audit({ user: 'vera' })).filter((r) => r.action === 'api.refused');
    expect(refused.at(-1)).to.include({ outcome: 'MOTUS_E_FORBIDDEN' });
    expect((await vmInfo(site.client, 'ten6')).host).to.equal('host-b');
  });

  it('leaves a cancelled running migration\'s VM on its source, still running', async () => {
    await site.client.startVm(spec('busy', { mbps: 60, wsMiB: 112 }), 'host-a');
    const onA = await vmInfo(site.client, 'busy');
    await waitFor('busy to boot', () => (parseHeartbeats(readFileSync(onA.serialLog!, 'utf8')).length >= 3 ? true : undefined), 90_000, 250);
    const summary = await olga.migrate({ vm: 'busy', destination: 'host-b' });
    let cancelled = false;
    const types: string[] = [];
    for await (const event of olga.migrationEvents(summary.id)) {
      types.push(event.type);
      if (event.type === 'progress' && !cancelled) {
        cancelled = true;
        expect((await olga.cancelTask(summary.id)).state).to.equal('running');
      }
    }
    expect(types.slice(-2)).to.deep.equal(['cancelled', 'rolled-back']);
    expect((await settled(olga, summary.id)).state).to.equal('cancelled');
    const after = await vmInfo(site.client, 'busy');
    expect([after.host, after.state]).to.deep.equal(['host-a', 'running']);
    expect(await qemuPidsOf('busy')).to.deep.equal([onA.pid]);
    const seq = parseHeartbeats(readFileSync(onA.serialLog!, 'utf8')).at(-1)!.seq;
    await waitFor('busy to keep beating on host-a', () => (parseHeartbeats(readFileSync(onA.serialLog!, 'utf8')).at(-1)!.seq >= seq + 3 ? true : undefined), 30_000, 250);
    const trail = await site.client.audit({ vm: 'busy' });
    expect(trail.map((r) => r.action)).to.include.members(['migration.cancel', 'migration.cancelled', 'migration.rolled-back']);
  });

  it('verifies the audit trail, and names the record once a row is changed or deleted in the database file', async () => {
    const ok = await site.cli('audit', 'verify');
    expect(ok.code, ok.stderr).to.equal(0);
    const db = new Database(join(site.stateDir, 'server', 'motus.db'));
    try {
      const original = db.prepare('SELECT user FROM audit WHERE seq = 5').get() as { user: string };
      db.prepare("UPDATE audit SET user = 'mallory' WHERE seq = 5").run();
      const edited = await site.cli('audit', 'verify');
      expect(edited.code).to.equal(1);
      expect(edited.stderr).to.include('MOTUS_E_AUDIT_TAMPERED').and.to.include('record 5 was edited');
      db.prepare('UPDATE audit SET user = ? WHERE seq = 5').run(original.user);
      expect((await site.cli('audit', 'verify')).code, 'the original row verifies again').to.equal(0);
      db.prepare('DELETE FROM audit WHERE seq = 9').run();
      const deleted = await site.cli('audit', 'verify', '--json');
      expect(deleted.code).to.equal(1);
      const error = (JSON.parse(deleted.stdout) as { error: { code: string; message: string; data: { record: number } } }).error;
      expect(error.code).to.equal('MOTUS_E_AUDIT_TAMPERED');
      expect(error.data.record).to.equal(9);
      expect(error.message).to.include('record 9 is missing');
    } finally {
      db.close();
    }
  });
});

describe('server restart with tasks queued and one running (motusd server + agents as separate processes, QEMU)', function () {
  this.timeout(600_000);
  const motusd = join(repoRoot, 'core', 'dist', 'bin', 'motusd.js');
  let dir: { path: string; remove(): void };
  const children = new Set<ChildProcess>();

  function start(args: string[], log: string): ChildProcess {
    const child = spawn(process.execPath, [motusd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
    child.on('exit', () => writeFileSync(join(dir.path, `${log}.out`), out));
    children.add(child);
    return child;
  }

  async function stopChild(child: ChildProcess): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    await exited;
    clearTimeout(timer);
  }

  async function startServer(statePath: string, sitePath: string): Promise<{ child: ChildProcess; client: MotusClient }> {
    rmSync(join(statePath, 'client.json'), { force: true });
    const child = start(['server', '--state', statePath, '--site', sitePath], 'server');
    const file = await waitFor('the server to write client.json', () => {
      if (child.exitCode !== null) throw new Error('motusd server exited');
      return existsSync(join(statePath, 'client.json')) ? (JSON.parse(readFileSync(join(statePath, 'client.json'), 'utf8')) as { url: string; token: string; ca: string }) : undefined;
    }, 60_000);
    return { child, client: new MotusClient(file) };
  }

  before(() => {
    requireCommand('qemu-system-x86_64', 'qemu-system-x86');
    guestKit();
    dir = tempDir('restart');
  });

  after(async () => {
    await Promise.all([...children].map(stopChild));
    dir?.remove();
  });

  it('keeps the queue and settles the running migration once the agents are back: never lost, never run twice', async () => {
    const sitePath = join(dir.path, 'site.yaml');
    writeFileSync(sitePath, 'site: restart\nmigration:\n  maxBandwidthMiBps: 8\nhosts:\n  - name: host-a\n    memoryMiB: 2048\n    maxMigrations: 1\n  - name: host-b\n    memoryMiB: 2048\n');
    const serverState = join(dir.path, 'server');
    let server = await startServer(serverState, sitePath);
    const agents: ChildProcess[] = [];
    for (const host of ['host-a', 'host-b']) {
      const state = join(dir.path, 'agents', host);
      mkdirSync(state, { recursive: true });
      const { url } = JSON.parse(readFileSync(join(serverState, 'client.json'), 'utf8')) as { url: string };
      agents.push(start(['agent', '--name', host, '--state', state, '--site', sitePath, '--server', url, '--agent-token-file', join(serverState, 'agent-token'), '--ca', join(serverState, 'ca.pem')], host));
    }
    await waitFor('both agents to register', async () => ((await server.client.hosts()).length === 2 ? true : undefined), 60_000, 200);
    const names = ['rs0', 'rs1', 'rs2'];
    // rs0 dirties memory, so its migration is still copying when the server dies.
    for (const name of names) await server.client.startVm(spec(name, name === 'rs0' ? { mbps: 4, wsMiB: 64 } : undefined), 'host-a');
    const rs0 = await vmInfo(server.client, 'rs0');
    await waitFor('rs0 to boot', () => (parseHeartbeats(readFileSync(rs0.serialLog!, 'utf8')).length >= 3 ? true : undefined), 90_000, 250);
    const requested: Awaited<ReturnType<MotusClient["migrate"]>>[] = [];
    for (const vm of names) requested.push(await server.client.migrate({ vm, destination: 'host-b' }));
    expect(requested.map((s) => s.state)).to.deep.equal(['running', 'queued', 'queued']);
    const running = requested[0]!;
    let copying = false;
    for await (const event of server.client.migrationEvents(running.id, AbortSignal.timeout(60_000))) {
      if (event.type === 'progress') {
        copying = true;
        break;
      }
    }
    expect(copying, 'the first migration reached pre-copy').to.equal(true);
    const qemuBefore = await Promise.all(names.map(qemuPidsOf));
    process.kill(server.child.pid!, 'SIGKILL');
    await waitFor('the server to die', () => (alive(server.child.pid!) ? undefined : true), 10_000);
    expect(agents.every((a) => alive(a.pid!)), 'agents outlive the server').to.equal(true);
    // Every guest still runs. rs0's source may already have cancelled its migration
    // (fencing rule S1: a source whose server stops following it settles through its
    // lease and resumes), which ends the destination's copy; nothing new is started.
    const qemuAfterKill = await Promise.all(names.map(qemuPidsOf));
    for (const [i, pids] of qemuAfterKill.entries()) expect(pids.length, `${names[i]} still runs`).to.be.at.least(1);
    expect(qemuAfterKill.flat().length).to.be.at.most(qemuBefore.flat().length);

    server = await startServer(serverState, sitePath);
    const afterRestart = await server.client.tasks();
    const queued = afterRestart.filter((t) => requested.slice(1).some((r) => r.id === t.id));
    expect(queued.map((t) => t.state).every((s) => s === 'queued' || s === 'running' || s === 'completed'), JSON.stringify(queued)).to.equal(true);
    expect(queued).to.have.length(2);
    const ended = await Promise.all(requested.map((r) => settled(server.client, r.id)));
    const first = ended[0]!;
    expect(['completed', 'failed']).to.include(first.state);
    expect(ended.slice(1).map((t) => t.state)).to.deep.equal(['completed', 'completed']);
    const events: MigrationEvent[] = [];
    for await (const event of server.client.migrationEvents(first.id)) events.push(event);
    expect(events.filter((e) => e.type === 'requested'), 'the running task was not started again').to.have.length(1);
    expect(events.at(-1)!.type).to.be.oneOf(['completed', 'rolled-back']);
    const reconciled = (await server.client.audit({ vm: 'rs0' })).filter((r) => r.action === 'migration.reconciled');
    expect(reconciled).to.have.length(1);
    expect((await server.client.audit({ vm: 'rs0' })).filter((r) => r.action === 'migration.validated')).to.have.length(1);
    for (const name of names) {
      const vm = await vmInfo(server.client, name);
      const pids = await qemuPidsOf(name);
      expect(pids, `${name} runs in exactly one QEMU`).to.have.length(1);
      expect(vm.state).to.equal('running');
      const expected = name === 'rs0' ? (first.state === 'completed' ? 'host-b' : 'host-a') : 'host-b';
      expect(vm.host, name).to.equal(expected);
    }
    expect((await server.client.verifyAudit()).ok).to.equal(true);
    await stopChild(server.child);
    await Promise.all(agents.map(stopChild));
    await waitFor('the guests to end', async () => ((await Promise.all(names.map(qemuPidsOf))).flat().length === 0 ? true : undefined), 30_000);
  });
});
