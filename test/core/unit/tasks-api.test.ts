import { expect } from 'chai';
import { MotusClient, MotusError, type MigrationEvent, type TaskInfo } from '@motus/sdk';
import { createEmbeddedPlatform, createLogger, createServerApi, runCli, type EmbeddedPlatform } from '@motus/core';
import { tempDir, waitFor } from '../../support/index.js';
import { createFakeWorld, fakeHypervisorPlugin, fakeSpec, type FakeWorld } from '../support/fake-hypervisor.js';
import { Capture } from '../support/capture.js';

async function expectCode(promise: Promise<unknown>, code: string, message?: RegExp): Promise<MotusError> {
  try {
    await promise;
  } catch (err) {
    expect(err, String(err)).to.be.instanceOf(MotusError);
    expect((err as MotusError).code, (err as Error).message).to.equal(code);
    if (message) expect((err as Error).message).to.match(message);
    return err as MotusError;
  }
  expect.fail(`expected ${code}`);
}

const TERMINAL = ['completed', 'failed', 'cancelled'];

describe('tasks, limits, priorities, schedules, audit and roles through the API (fake hypervisor)', function () {
  this.timeout(60_000);
  let world: FakeWorld;
  let platform: EmbeddedPlatform;
  let dir: { path: string; remove(): void };
  let api: ReturnType<typeof createServerApi>;
  let url: string;
  let admin: MotusClient;
  let operator: MotusClient;
  let viewer: MotusClient;
  let operatorToken: string;
  let viewerToken: string;
  const events: MigrationEvent[] = [];

  before(async () => {
    dir = tempDir('tasks-api');
    world = createFakeWorld();
    platform = await createEmbeddedPlatform({
      site: {
        hosts: [
          { name: 'host-a', memoryMiB: 4096, maxMigrations: 2 },
          { name: 'host-b', memoryMiB: 4096 },
          { name: 'host-c', memoryMiB: 512 },
        ],
        plugins: [],
        tasks: { highPriorityBurst: 4 },
      },
      stateDir: dir.path,
      extraPlugins: [{ definition: fakeHypervisorPlugin(world) }],
      heartbeatMs: 100,
    });
    platform.migrations$.subscribe((e) => events.push(e));
    api = createServerApi(platform.server, { apiToken: 'admin-token', agentToken: 'agent-token', logger: createLogger({}, { write: () => undefined }) });
    url = await api.listen('127.0.0.1:0');
    admin = new MotusClient({ url, token: 'admin-token' });
    await admin.addUser('olga', 'operator');
    await admin.addUser('vera', 'viewer');
    operatorToken = (await admin.createToken('olga', 'tests')).token;
    viewerToken = (await admin.createToken('vera')).token;
    operator = new MotusClient({ url, token: operatorToken });
    viewer = new MotusClient({ url, token: viewerToken });
  });

  after(async () => {
    await api.close();
    await platform.stop();
    dir.remove();
  });

  async function cli(token: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const stdout = new Capture();
    const stderr = new Capture();
    const code = await runCli(args, { stdout, stderr, env: { MOTUS_URL: url, MOTUS_TOKEN: token } });
    return { code, stdout: stdout.text, stderr: stderr.text };
  }

  async function settled(client: MotusClient, id: string): Promise<TaskInfo> {
    return waitFor(`task ${id} to end`, async () => {
      const task = await client.task(id);
      return TERMINAL.includes(task.state) ? task : undefined;
    }, 20_000, 20);
  }

  async function startVms(prefix: string, count: number, host: string, memoryMiB = 64): Promise<string[]> {
    const names = Array.from({ length: count }, (_, i) => `${prefix}${i}`);
    for (const name of names) await admin.startVm(fakeSpec(name, memoryMiB), host);
    return names;
  }

  it('refuses a viewer\'s migrate request with 403 and records it in the audit trail; no token is 401, also recorded', async () => {
    await startVms('ro', 1, 'host-b');
    expect((await viewer.hosts()).map((h) => h.name)).to.deep.equal(['host-a', 'host-b', 'host-c']);
    const err = await expectCode(viewer.migrate({ vm: 'ro0', destination: 'host-a' }), 'MOTUS_E_FORBIDDEN', /vera is viewer; POST \/v1\/migrations needs operator/);
    expect(err.data).to.include({ user: 'vera', role: 'viewer', needed: 'operator' });
    const raw = await fetch(`${url}/v1/migrations`, { method: 'POST', headers: { authorization: `Bearer ${viewerToken}` }, body: JSON.stringify({ vm: 'ro0', destination: 'host-a' }) });
    expect(raw.status).to.equal(403);
    await expectCode(operator.users(), 'MOTUS_E_FORBIDDEN');
    await expectCode(operator.createToken('olga'), 'MOTUS_E_FORBIDDEN');
    const anonymous = await fetch(`${url}/v1/tasks`, { headers: { authorization: 'Bearer nope' } });
    expect(anonymous.status).to.equal(401);
    const viaCli = await cli(viewerToken, 'migrate', 'ro0', '--to', 'host-a');
    expect(viaCli.code, viaCli.stderr).to.equal(6);
    expect(viaCli.stderr).to.include('MOTUS_E_FORBIDDEN');
    const refused = await admin.audit({ user: 'vera' });
    expect(refused.filter((r) => r.action === 'api.refused' && r.outcome === 'MOTUS_E_FORBIDDEN').length).to.be.at.least(2);
    expect(refused[0]!.detail).to.include({ method: 'POST', path: '/v1/migrations' });
    const anon = await admin.audit({ user: 'anonymous' });
    expect(anon.some((r) => r.outcome === 'MOTUS_E_UNAUTHORIZED' && r.detail?.path === '/v1/tasks')).to.equal(true);
    expect((await admin.vms()).find((v) => v.name === 'ro0')!.host).to.equal('host-b');
    expect(await admin.whoami()).to.include({ user: 'admin', role: 'admin' });
  });

  it('validates every body against its schema and answers 400 naming the field', async () => {
    const post = (path: string, body: unknown, token = operatorToken) =>
      fetch(`${url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: JSON.stringify(body) });
    const cases: Array<[string, unknown, string, string?]> = [
      ['/v1/tasks', { vm: 'ro0', destination: 'host-a', priority: 'urgent' }, 'priority'],
      ['/v1/tasks', { vm: 'ro0' }, 'destination'],
      ['/v1/migrations', { vm: 'ro0', destination: 'host-a', colour: 'red' }, 'colour'],
      ['/v1/schedules', { target: { vms: [] }, destination: 'host-a', at: '2099-01-01T00:00:00Z' }, 'target'],
      ['/v1/schedules', { target: { vms: ['ro0'] }, destination: 'host-a', cron: '61 * * * *' }, 'cron'],
      ['/v1/schedules', { target: { vms: ['ro0'] }, destination: 'host-a', at: '2001-01-01T00:00:00Z' }, 'at: 2001-01-01T00:00:00.000Z is in the past'],
      ['/v1/schedules', { target: { vms: ['ro0'] }, destination: 'host-a', at: 'tomorrow' }, 'at:'],
      ['/v1/schedules', { target: { vms: ['ro0'] }, destination: 'host-a' }, 'exactly one of at'],
      ['/v1/users', { name: 'x', role: 'root' }, 'role', 'admin-token'],
      ['/v1/users', { name: 'Bad Name', role: 'viewer' }, 'name', 'admin-token'],
      ['/v1/tokens', { user: 'olga', label: 5 }, 'label', 'admin-token'],
      ['/v1/tasks/m-nope/cancel', { force: true }, 'force'],
      ['/v1/tokens/t-nope/revoke', { now: 1 }, 'now', 'admin-token'],
    ];
    for (const [path, body, field, token] of cases) {
      const response = await post(path, body, token);
      const answer = (await response.json()) as { error: { code: string; message: string } };
      expect(response.status, `${path} ${JSON.stringify(body)}: ${answer.error?.message}`).to.equal(400);
      expect(answer.error.code).to.equal('MOTUS_E_INVALID_REQUEST');
      expect(answer.error.message, path).to.include(field);
    }
    const unknownVm = await post('/v1/schedules', { target: { vms: ['ro0', 'ghost'] }, destination: 'host-a', cron: '0 * * * *' });
    expect(unknownVm.status).to.equal(404);
    expect(((await unknownVm.json()) as { error: { message: string } }).error.message).to.include('target.vms.1: no VM named ghost');
    expect(await admin.schedules()).to.deep.equal([]);
    expect((await admin.audit({ user: 'olga' })).filter((r) => r.action === 'api.refused').length).to.be.at.least(8);
  });

  it('runs ten migrations requested at once under a host limit of 2: never more than 2 at a time, all complete', async () => {
    world.rounds = 15;
    const vms = await startVms('lim', 10, 'host-a');
    const before = events.length;
    const submitted = await Promise.all(vms.map((vm) => operator.migrate({ vm, destination: 'host-b' })));
    expect(submitted.filter((s) => s.state === 'running')).to.have.length(2);
    expect(submitted.filter((s) => s.state === 'queued')).to.have.length(8);
    const queued = (await operator.tasks()).filter((t) => t.state === 'queued');
    expect(queued).to.have.length(8);
    expect(queued.every((t) => t.waitingFor === 'host:host-a' || t.waitingFor === undefined)).to.equal(true);
    const done = await Promise.all(submitted.map((s) => settled(operator, s.id)));
    expect(done.map((t) => t.state)).to.deep.equal(Array(10).fill('completed'));
    expect(done.every((t) => t.requestedBy === 'olga')).to.equal(true);
    let running = 0;
    let peak = 0;
    for (const event of events.slice(before)) {
      if (event.type === 'requested') running += 1;
      if (event.type === 'completed' || event.type === 'rolled-back' || event.type === 'rejected') running -= 1;
      peak = Math.max(peak, running);
    }
    expect(peak).to.equal(2);
    expect((await admin.vms()).filter((v) => v.name.startsWith('lim') && v.host === 'host-b')).to.have.length(10);
  });

  it('starts a high request queued behind normal ones first', async () => {
    world.rounds = 30;
    const vms = await startVms('pri', 5, 'host-a');
    const before = events.length;
    const blockers = [await operator.migrate({ vm: 'pri0', destination: 'host-b' }), await operator.migrate({ vm: 'pri1', destination: 'host-b' })];
    const normals = [await operator.migrate({ vm: 'pri2', destination: 'host-b' }), await operator.migrate({ vm: 'pri3', destination: 'host-b' })];
    const high = await operator.migrate({ vm: 'pri4', destination: 'host-b', priority: 'high' });
    expect([...normals, high].map((s) => s.state)).to.deep.equal(['queued', 'queued', 'queued']);
    await Promise.all([...blockers, ...normals, high].map((s) => settled(operator, s.id)));
    const starts = events.slice(before).filter((e) => e.type === 'requested').map((e) => (e as Extract<MigrationEvent, { type: 'requested' }>).vm);
    expect(starts.slice(0, 2).sort()).to.deep.equal(['pri0', 'pri1']);
    expect(starts.slice(2)).to.deep.equal(['pri4', 'pri2', 'pri3']);
    expect(vms).to.have.length(5);
  });

  it('does not start a high migration whose memory reservation fails, and says so', async () => {
    await admin.startVm(fakeSpec('big', 400), 'host-c');
    await startVms('res', 1, 'host-b', 256);
    await waitFor('host-c memory to show the VM', async () => ((await admin.hosts()).find((h) => h.name === 'host-c')!.memoryUsedMiB >= 400 ? true : undefined), 5_000);
    const err = await expectCode(operator.migrate({ vm: 'res0', destination: 'host-c', priority: 'high' }), 'MOTUS_E_RESERVATION_FAILED', /cannot reserve 256 MiB on host-c/);
    expect(err.data).to.include({ host: 'host-c', neededMiB: 256 });
    const task = (await admin.tasks()).find((t) => t.vm === 'res0')!;
    expect([task.state, task.error?.code]).to.deep.equal(['failed', 'MOTUS_E_RESERVATION_FAILED']);
    expect(task.startedAt).to.be.a('string');
    expect((await admin.vms()).find((v) => v.name === 'res0')!.host).to.equal('host-b');
    const trail = await admin.audit({ vm: 'res0' });
    expect(trail.map((r) => [r.action, r.outcome])).to.deep.include(['migration.rejected', 'MOTUS_E_RESERVATION_FAILED']);
    await admin.stopVm('big');
  });

  it('cancels a queued task (it never starts) and a running one (the VM stays on the source)', async () => {
    world.rounds = 1000;
    await startVms('can', 3, 'host-a');
    const a = await operator.migrate({ vm: 'can0', destination: 'host-b' });
    const b = await operator.migrate({ vm: 'can1', destination: 'host-b' });
    const queued = await operator.migrate({ vm: 'can2', destination: 'host-b' });
    expect(queued.state).to.equal('queued');
    const cancelQueued = await cli(operatorToken, 'migrate', 'cancel', queued.id);
    expect(cancelQueued.code, cancelQueued.stderr).to.equal(0);
    expect(cancelQueued.stdout).to.include('never started');
    const stream: MigrationEvent[] = [];
    for await (const event of operator.migrationEvents(queued.id)) stream.push(event);
    expect(stream.map((e) => e.type)).to.deep.equal(['requested', 'cancelled', 'rejected']);
    await waitFor('can0 to be in pre-copy', () => (events.some((e) => e.migrationId === a.id && e.type === 'progress') ? true : undefined), 5_000, 20);
    const cancelRunning = await cli(operatorToken, 'migrate', 'cancel', a.id);
    expect(cancelRunning.code, cancelRunning.stderr).to.equal(0);
    const ended = await settled(operator, a.id);
    expect(ended.state).to.equal('cancelled');
    expect((await admin.migration(a.id)).state).to.equal('cancelled');
    const vm = (await admin.vms()).find((v) => v.name === 'can0')!;
    expect([vm.host, vm.state]).to.deep.equal(['host-a', 'running']);
    expect(await platform.agents.get('host-a')!.runState('can0')).to.equal('running');
    expect(await platform.agents.get('host-b')!.runState('can0')).to.equal('absent');
    expect((await cli(operatorToken, 'migrate', 'cancel', a.id)).code).to.equal(2);
    expect((await cli(operatorToken, 'migrate', 'cancel', 'm-nope')).code).to.equal(3);
    await operator.cancelTask(b.id);
    expect((await settled(operator, b.id)).state).to.equal('cancelled');
    const trail = await admin.audit({ vm: 'can0' });
    expect(trail.map((r) => r.action)).to.include.members(['migration.request', 'migration.validated', 'migration.cancel', 'migration.cancelled', 'migration.rolled-back']);
    expect(trail.find((r) => r.action === 'migration.cancelled')!.user).to.equal('olga');
    world.rounds = 5;
  });

  it('runs a scheduled migration on time with its creator\'s identity, and refuses it once the creator lost the right', async () => {
    await startVms('sch', 2, 'host-a');
    const at = new Date(Date.now() + 1_500).toISOString();
    const created = await cli(operatorToken, 'migrate', 'sch0', '--to', 'host-b', '--at', at, '--json');
    expect(created.code, created.stderr).to.equal(0);
    const schedule = JSON.parse(created.stdout) as { id: string; owner: string; nextRunAt: string };
    expect(schedule.owner).to.equal('olga');
    expect(schedule.nextRunAt).to.equal(at);
    const task = await waitFor('the scheduled task', async () => (await admin.tasks()).find((t) => t.vm === 'sch0'), 10_000, 20);
    expect(task.requestedBy).to.equal('olga');
    expect(task.scheduleId).to.equal(schedule.id);
    expect(Date.parse(task.createdAt) - Date.parse(at)).to.be.within(0, 1_000);
    expect((await settled(admin, task.id)).state).to.equal('completed');
    const after = await admin.schedule(schedule.id);
    expect([after.enabled, after.lastOutcome]).to.deep.equal([false, 'queued 1 task(s)']);

    await admin.addUser('temp', 'operator');
    const temp = new MotusClient({ url, token: (await admin.createToken('temp')).token });
    const theirs = await temp.createSchedule({ target: { pattern: 'sch1*' }, destination: 'host-b', at: new Date(Date.now() + 800).toISOString() });
    await expectCode(operator.deleteSchedule(theirs.id), 'MOTUS_E_FORBIDDEN', /belongs to temp/);
    await admin.removeUser('temp');
    const refused = await waitFor('the refused run', async () => (await admin.audit({ user: 'temp' })).find((r) => r.action === 'schedule.run'), 10_000, 50);
    expect(refused.outcome).to.equal('refused');
    expect(refused.detail!.reason).to.include('no longer exists');
    expect((await admin.tasks()).some((t) => t.vm === 'sch1')).to.equal(false);

    const cron = await operator.createSchedule({ target: { vms: ['sch1'] }, destination: 'host-b', cron: '0 3 * * mon-fri' });
    const edited = await cli(operatorToken, 'schedules', 'edit', cron.id, '--cron', '30 4 * * *', '--priority', 'high', '--json');
    expect(edited.code, edited.stderr).to.equal(0);
    expect(JSON.parse(edited.stdout)).to.include({ cron: '30 4 * * *', priority: 'high' });
    const list = await cli(viewerToken, 'schedules');
    expect(list.stdout).to.include(cron.id).and.to.include("cron '30 4 * * *'");
    expect((await cli(viewerToken, 'schedules', 'remove', cron.id)).code).to.equal(6);
    expect((await cli(operatorToken, 'schedules', 'remove', cron.id)).code).to.equal(0);
    const changes = (await admin.audit({ user: 'olga' })).filter((r) => r.action.startsWith('schedule.')).map((r) => r.action);
    expect(changes).to.include.members(['schedule.create', 'schedule.update', 'schedule.delete', 'schedule.run']);
  });

  it('runs a schedule for every VM with a tag (given at start or later), as its creator; tags are operator business and validated', async () => {
    await admin.startVm({ ...fakeSpec('tag0', 64), tags: ['batch'] }, 'host-a');
    await admin.startVm(fakeSpec('tag1', 64), 'host-a');
    await admin.startVm(fakeSpec('tag2', 64), 'host-a');
    const tagged = await cli(operatorToken, 'vm', 'tag', 'tag2', 'batch', 'blue', '--json');
    expect(tagged.code, tagged.stderr).to.equal(0);
    expect((JSON.parse(tagged.stdout) as { spec: { tags: string[] } }).spec.tags).to.deep.equal(['batch', 'blue']);
    expect((await cli(viewerToken, 'vm', 'tag', 'tag1', 'batch')).code).to.equal(6);
    expect((await admin.audit({ vm: 'tag2' })).map((r) => r.action)).to.include('vm.tags');
    expect((await cli(viewerToken, 'vm', 'list')).stdout).to.match(/tag2 .*batch,blue/);

    const created = await cli(operatorToken, 'schedules', 'add', '--tag', 'batch', '--to', 'host-b', '--at', '+1s', '--json');
    expect(created.code, created.stderr).to.equal(0);
    const schedule = JSON.parse(created.stdout) as { id: string; target: unknown };
    expect(schedule.target).to.deep.equal({ tag: 'batch' });
    for (const vm of ['tag0', 'tag2']) {
      const task = await waitFor(`the scheduled task of ${vm}`, async () => (await admin.tasks()).find((t) => t.vm === vm), 10_000, 20);
      expect([task.requestedBy, task.scheduleId]).to.deep.equal(['olga', schedule.id]);
      expect((await settled(admin, task.id)).state).to.equal('completed');
    }
    expect((await admin.tasks()).some((t) => t.vm === 'tag1'), 'the untagged VM stays').to.equal(false);
    expect((await admin.schedule(schedule.id)).lastOutcome).to.equal('queued 2 task(s)');
    expect((await cli(viewerToken, 'schedules')).stdout).to.include('tag:batch');

    await expectCode(operator.createSchedule({ target: { tag: 'bad tag!' }, destination: 'host-b', cron: '0 3 * * *' }), 'MOTUS_E_INVALID_REQUEST', /target/);
    await expectCode(operator.setVmTags('tag1', ['ok', 'no spaces']), 'MOTUS_E_INVALID_REQUEST', /tags\.1/);
    await expectCode(operator.setVmTags('ghost', ['x']), 'MOTUS_E_VM_NOT_FOUND');
    expect((await cli(operatorToken, 'schedules', 'add', '--tag', 'batch', '--pattern', 'tag*', '--to', 'host-b', '--cron', '0 3 * * *')).code).to.equal(2);
  });

  it('answers audit queries, exports JSON Lines and CSV, and verifies the chain, from the CLI', async () => {
    const table = await cli(viewerToken, 'audit', '--vm', 'lim0');
    expect(table.code, table.stderr).to.equal(0);
    expect(table.stdout).to.match(/migration\.request\s+queued\s+lim0/).and.to.match(/migration\.completed\s+completed\s+lim0/);
    const jsonl = await cli(viewerToken, 'audit', '--user', 'olga', '--host', 'host-b', '--format', 'jsonl');
    const rows = jsonl.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as { user: string; source?: string; destination?: string });
    expect(rows.length).to.be.greaterThan(10);
    expect(rows.every((r) => r.user === 'olga' && (r.source === 'host-b' || r.destination === 'host-b'))).to.equal(true);
    const csv = await cli(viewerToken, 'audit', '--vm', 'lim1', '--format', 'csv');
    expect(csv.stdout.split('\r\n')[0]).to.equal('seq,at,user,action,outcome,vm,source,destination,task,downtimeMs,detail,prevHash,hash');
    expect(csv.stdout).to.include(',migration.completed,completed,lim1,host-a,host-b,');
    const empty = await cli(viewerToken, 'audit', '--since=-10m', '--until', '2000-01-01T00:00:00Z', '--json');
    expect(JSON.parse(empty.stdout)).to.deep.equal([]);
    expect((await cli(viewerToken, 'audit', '--since', 'yesterday')).code).to.equal(2);
    expect((await cli(viewerToken, 'audit', '--format', 'xml')).code).to.equal(2);
    const verify = await cli(viewerToken, 'audit', 'verify');
    expect(verify.code, verify.stderr).to.equal(0);
    expect(verify.stdout).to.match(/audit trail verified: \d+ records/);
  });

  it('manages users and tokens from the CLI (admin only) and stops a revoked token at once', async () => {
    const added = await cli('admin-token', 'user', 'add', 'paul', '--role', 'operator', '--json');
    expect(added.code, added.stderr).to.equal(0);
    expect((await cli('admin-token', 'user', 'add', 'paul', '--role', 'viewer')).code).to.equal(4);
    const made = JSON.parse((await cli('admin-token', 'token', 'create', 'paul', '--label', 'ci', '--json')).stdout) as { id: string; token: string };
    expect((await cli(made.token, 'whoami')).stdout).to.include('paul (operator)');
    const list = await cli('admin-token', 'token', 'list', '--user', 'paul');
    expect(list.stdout).to.include(made.id).and.to.include('ci');
    expect(list.stdout).not.to.include(made.token);
    expect((await cli(made.token, 'token', 'list')).code).to.equal(6);
    expect((await cli('admin-token', 'token', 'revoke', made.id)).code).to.equal(0);
    expect((await cli(made.token, 'hosts')).code).to.equal(5);
    const users = await cli('admin-token', 'user', 'list');
    expect(users.stdout).to.match(/paul\s+operator/).and.to.match(/vera\s+viewer/);
    expect((await cli('admin-token', 'user', 'remove', 'paul')).code).to.equal(0);
    const trail = await admin.audit({ user: 'admin' });
    expect(trail.map((r) => r.action)).to.include.members(['user.add', 'token.create', 'token.revoke', 'user.remove']);
    expect((await admin.verifyAudit()).ok).to.equal(true);
  });
});
