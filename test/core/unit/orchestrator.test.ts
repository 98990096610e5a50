import { expect } from 'chai';
import { firstValueFrom, toArray } from 'rxjs';
import { API_VERSION, definePlugin, isMotusError, MotusError, type MigrationEvent, type MigrationHookContext } from '@motus/sdk';
import { createEmbeddedPlatform, type EmbeddedPlatform, type PluginSource } from '@motus/core';
import { tempDir } from '../../support/index.js';
import { createFakeWorld, fakeHypervisorPlugin, fakeSpec, type FakeWorld } from '../support/fake-hypervisor.js';

async function platformWith(world: FakeWorld, extra: PluginSource[] = [], hosts = [2048, 2048, 128]) {
  const dir = tempDir('orch');
  const platform = await createEmbeddedPlatform({
    site: {
      hosts: hosts.map((memoryMiB, i) => ({ name: `host-${'abc'[i]}`, memoryMiB })),
      plugins: [],
    },
    stateDir: dir.path,
    extraPlugins: [{ definition: fakeHypervisorPlugin(world) }, ...extra],
    heartbeatMs: 50,
  });
  return { platform, dir };
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  try {
    await promise;
  } catch (err) {
    expect(isMotusError(err), String(err)).to.equal(true);
    expect((err as { code: string }).code).to.equal(code);
    return;
  }
  expect.fail(`expected ${code}`);
}

describe('migration orchestrator (fake hypervisor)', () => {
  let world: FakeWorld;
  let platform: EmbeddedPlatform;
  let dir: { remove(): void };

  beforeEach(async () => {
    world = createFakeWorld();
    ({ platform, dir } = await platformWith(world));
    await platform.startVm(fakeSpec('vm1'), 'host-a');
  });

  afterEach(async () => {
    await platform.stop();
    dir.remove();
  });

  it('moves a VM and reports the lifecycle in order', async () => {
    const handle = await platform.migrate({ vm: 'vm1', destination: 'host-b', requestedBy: 'alice' });
    const events = await firstValueFrom(handle.events$.pipe(toArray()));
    const types = events.map((e) => e.type).filter((t, i, all) => (t !== 'progress' && t !== 'policy') || all[i - 1] !== t);
    expect(types).to.deep.equal(['requested', 'validated', 'policy', 'prepared', 'progress', 'switchover', 'resumed', 'completed']);
    // The convergence plan is announced before the destination is prepared, each step with its reason.
    const plan = events.filter((e): e is Extract<MigrationEvent, { type: 'policy' }> => e.type === 'policy').map((e) => e.action);
    expect(plan.slice(0, 2)).to.deep.equal(['start', 'streams']);
    expect(events.map((e) => e.seq)).to.deep.equal(events.map((_, i) => i + 1));
    const completed = events.at(-1) as Extract<MigrationEvent, { type: 'completed' }>;
    expect(completed.downtimeMs).to.equal(12);
    expect(completed.bytes).to.equal(256 * (1 << 20));
    expect(completed.rounds).to.equal(5);
    expect(completed.bytesPerMemory).to.equal(1);
    expect(completed).to.include({ throttlePct: 0, switchoverTargetMs: 100, postcopy: false });
    expect(completed.guestPauseMs, 'the fake guest prints no heartbeat').to.equal(null);
    const summary = await handle.done;
    expect(summary.state).to.equal('completed');
    expect(summary.requestedBy).to.equal('alice');
    const vm = (await platform.vms()).find((v) => v.name === 'vm1')!;
    expect(vm.host).to.equal('host-b');
    expect(vm.state).to.equal('running');
    const a = await platform.agents.get('host-a')!.facts();
    const b = await platform.agents.get('host-b')!.facts();
    expect(a.vms).to.have.length(0);
    expect(b.vms.map((v) => [v.name, v.role])).to.deep.equal([['vm1', 'running']]);
    // The link between the agents was probed first; the bandwidth is its rate, at most the site cap (1 GiB/s).
    const start = events.find((e): e is Extract<MigrationEvent, { type: 'policy' }> => e.type === 'policy' && e.action === 'start')!;
    expect(start.reason).to.match(/bandwidth \d+ MiB\/s \((measured link|site cap).*probe: /);
    expect(world.launched[0]!.tuning?.maxBandwidthBytesPerSec).to.be.greaterThan(0).and.at.most(1024 * 1024 * 1024);
    // The event reports the rate in whole MiB/s; QEMU gets it in whole bytes/s.
    const applied = world.launched[0]!.tuning!.maxBandwidthBytesPerSec!;
    expect(Number.isInteger(applied), `${applied} bytes/s`).to.equal(true);
    expect(applied).to.be.closeTo((start.values!.maxBandwidthMiBps as number) * 1024 * 1024, 512 * 1024);
  });

  it('replays the events of a finished migration to a late subscriber', async () => {
    const handle = await platform.migrate({ vm: 'vm1', destination: 'host-b' });
    await handle.done;
    const replay = await firstValueFrom(platform.server.migrationEvents$(handle.id).pipe(toArray()));
    expect(replay[0]!.type).to.equal('requested');
    expect(replay.at(-1)!.type).to.equal('completed');
  });

  it('refuses with coded errors and starts nothing', async () => {
    await expectCode(platform.migrate({ vm: 'nope', destination: 'host-b' }), 'MOTUS_E_VM_NOT_FOUND');
    await expectCode(platform.migrate({ vm: 'vm1', destination: 'host-z' }), 'MOTUS_E_HOST_NOT_FOUND');
    await expectCode(platform.migrate({ vm: 'vm1', destination: 'host-a' }), 'MOTUS_E_SAME_HOST');
    await expectCode(platform.migrate({ vm: 'vm1', destination: 'host-c' }), 'MOTUS_E_INSUFFICIENT_MEMORY');
    await expectCode(platform.migrate({ vm: '', destination: 'host-c' } as never), 'MOTUS_E_INVALID_REQUEST');
    expect(world.launched).to.have.length(1);
    const rejected = (await platform.migrations()).filter((m) => m.state === 'rejected');
    expect(rejected).to.have.length(4);
    expect(rejected.map((m) => m.error?.code).sort()).to.deep.equal(
      ['MOTUS_E_HOST_NOT_FOUND', 'MOTUS_E_INSUFFICIENT_MEMORY', 'MOTUS_E_SAME_HOST', 'MOTUS_E_VM_NOT_FOUND'].sort(),
    );
  });

  it('refuses a second migration of a VM already moving', async () => {
    const first = await platform.migrate({ vm: 'vm1', destination: 'host-b' });
    await expectCode(platform.migrate({ vm: 'vm1', destination: 'host-b' }), 'MOTUS_E_VM_BUSY');
    await first.done;
  });

  it('rolls back when the destination dies during pre-copy; the VM keeps running on the source', async () => {
    world.rounds = 50;
    const handle = await platform.migrate({ vm: 'vm1', destination: 'host-b' });
    const events: MigrationEvent[] = [];
    handle.events$.subscribe((e) => {
      events.push(e);
      if (e.type === 'progress' && e.round >= 3) world.launched[1]!.kill();
    });
    const summary = await handle.done;
    expect(summary.state).to.equal('failed');
    expect(summary.error?.code).to.equal('MOTUS_E_MIGRATION_FAILED');
    const tail = events.slice(-2).map((e) => e.type);
    expect(tail).to.deep.equal(['failed', 'rolled-back']);
    const failed = events.find((e) => e.type === 'failed') as Extract<MigrationEvent, { type: 'failed' }>;
    expect(failed.phase).to.equal('precopy');
    const vm = (await platform.vms()).find((v) => v.name === 'vm1')!;
    expect([vm.host, vm.state]).to.deep.equal(['host-a', 'running']);
    expect(await platform.agents.get('host-a')!.runState('vm1')).to.equal('running');
    expect(await platform.agents.get('host-b')!.runState('vm1')).to.equal('absent');
  });

  it('rolls back and resumes the source when the destination does not run after switchover', async () => {
    world.destinationFailsToRun = true;
    const handle = await platform.migrate({ vm: 'vm1', destination: 'host-b' });
    const summary = await handle.done;
    expect(summary.state).to.equal('failed');
    expect(await platform.agents.get('host-a')!.runState('vm1')).to.equal('running');
    expect(await platform.agents.get('host-b')!.runState('vm1')).to.equal('absent');
  });

  it('cancels on request and rolls back', async () => {
    world.rounds = 1000;
    const handle = await platform.migrate({ vm: 'vm1', destination: 'host-b' });
    const seen: string[] = [];
    handle.events$.subscribe((e) => seen.push(e.type));
    setTimeout(() => void handle.cancel('bob'), 100);
    const summary = await handle.done;
    expect(summary.state).to.equal('cancelled');
    expect(seen.slice(-2)).to.deep.equal(['cancelled', 'rolled-back']);
    expect(await platform.agents.get('host-a')!.runState('vm1')).to.equal('running');
  });

  it('marks a host whose agent stops answering as down and refuses to migrate to it', async () => {
    const agentB = platform.agents.get('host-b')!;
    agentB.facts = async () => {
      throw new Error('connection refused');
    };
    for (let i = 0; i < 40 && (await platform.hosts()).find((h) => h.name === 'host-b')!.state !== 'disconnected'; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    await expectCode(platform.migrate({ vm: 'vm1', destination: 'host-b' }), 'MOTUS_E_HOST_DOWN');
  });
});

describe('migration hooks', () => {
  it('a validate tap vetoes with its reason; switchover runs while the source is paused', async () => {
    const world = createFakeWorld();
    const calls: string[] = [];
    let vetoNext = true;
    const policy = definePlugin({
      name: 'test-policy',
      version: '1.0.0',
      apiVersion: API_VERSION,
      provides: [],
      roles: ['server'],
      setup(ctx) {
        ctx.hooks.validate.tapPromise('test-policy', async (c: MigrationHookContext) => {
          calls.push(`validate ${c.vm.name}`);
          return vetoNext ? { plugin: 'test-policy', code: 'NOPE', reason: 'datastore ds1 is not visible from host-b' } : undefined;
        });
        ctx.hooks.prepareDestination.tapPromise('test-policy', async () => {
          calls.push('prepare');
        });
        ctx.hooks.switchover.tapPromise('test-policy', async (c: MigrationHookContext) => {
          calls.push(`switchover source=${world.launched[0]!.state}`);
          expect(c.destination.name).to.equal('host-b');
        });
        ctx.hooks.cleanup.tapPromise('test-policy', async () => {
          calls.push('cleanup');
        });
      },
    });
    const { platform, dir } = await platformWith(world, [{ definition: policy }]);
    try {
      await platform.startVm(fakeSpec('vm1'), 'host-a');
      try {
        await platform.migrate({ vm: 'vm1', destination: 'host-b' });
        expect.fail('vetoed');
      } catch (err) {
        expect((err as { code: string }).code).to.equal('MOTUS_E_MIGRATION_VETOED');
        expect((err as Error).message).to.include('datastore ds1 is not visible from host-b');
      }
      vetoNext = false;
      const summary = await (await platform.migrate({ vm: 'vm1', destination: 'host-b' })).done;
      expect(summary.state).to.equal('completed');
      expect(calls).to.deep.equal(['validate vm1', 'validate vm1', 'prepare', 'switchover source=paused', 'cleanup']);
      expect(world.launched[0]!.tuning?.capabilities?.['pause-before-switchover']).to.equal(true);
    } finally {
      await platform.stop();
      dir.remove();
    }
  });

  it('an announce or cleanup step that fails after the destination runs is a coded warning; the VM stays on the destination', async () => {
    const world = createFakeWorld();
    const net = definePlugin({
      name: 'test-net',
      version: '1.0.0',
      apiVersion: API_VERSION,
      provides: [],
      roles: ['server'],
      setup(ctx) {
        ctx.hooks.announce.tapPromise('test-net', async () => {
          throw new MotusError('MOTUS_E_NET_RELOCATION_UNCONFIRMED', 'MAC 52:54:00:00:00:01 is not reached through host-b by host-c', { mac: '52:54:00:00:00:01' });
        });
        ctx.hooks.cleanup.tapPromise('test-net', async () => {
          throw new Error('port release refused');
        });
      },
    });
    const { platform, dir } = await platformWith(world, [{ definition: net }]);
    try {
      await platform.startVm(fakeSpec('vm1'), 'host-a');
      const handle = await platform.migrate({ vm: 'vm1', destination: 'host-b' });
      const events = await firstValueFrom(handle.events$.pipe(toArray()));
      const types = events.map((e) => e.type).filter((t) => t !== 'progress');
      expect(types.slice(-5)).to.deep.equal(['switchover', 'resumed', 'warning', 'warning', 'completed']);
      expect(types, 'no announced event when the confirmation failed').not.to.include('announced');
      const warnings = events.filter((e): e is Extract<MigrationEvent, { type: 'warning' }> => e.type === 'warning');
      expect(warnings.map((w) => [w.phase, w.step, w.error.code])).to.deep.equal([
        ['announce', 'announce', 'MOTUS_E_NET_RELOCATION_UNCONFIRMED'],
        ['cleanup', 'cleanup hooks', 'MOTUS_E_AFTER_SWITCHOVER'],
      ]);
      expect(warnings[1]!.error.message).to.include('port release refused');
      const summary = await handle.done;
      expect(summary.state).to.equal('completed');
      expect(summary.warnings?.map((w) => w.code)).to.deep.equal(['MOTUS_E_NET_RELOCATION_UNCONFIRMED', 'MOTUS_E_AFTER_SWITCHOVER']);
      expect((await platform.migrations()).find((m) => m.id === handle.id)?.warnings).to.have.length(2);
      const vm = (await platform.vms()).find((v) => v.name === 'vm1')!;
      expect([vm.host, vm.state]).to.deep.equal(['host-b', 'running']);
    } finally {
      await platform.stop();
      dir.remove();
    }
  });
});
