/**
 * The fencing decision table of docs/reliability.md, one test per row, on fake
 * hypervisors and a fake SAN whose lease map is the truth about ownership. The same
 * rows run against real QEMU, tgtd and killed processes in test/faults (npm run
 * test:faults).
 */
import { expect } from 'chai';
import { API_VERSION, MotusError, definePlugin, isMotusError, type MigrationEvent, type MigrationProgress, type VmSpec } from '@motus/sdk';
import { createEmbeddedPlatform, type EmbeddedPlatform, type HostAgent } from '@motus/core';
import { sleep, tempDir, waitFor } from '../../support/index.js';
import { createFakeWorld, fakeHypervisorPlugin, fakeSpec, type FakeVm, type FakeWorld } from '../support/fake-hypervisor.js';
import { createFakeFabric, fakeFabricPlugin, type FakeFabric } from '../support/fake-providers.js';

const DISK = 'fake://ds1/vm1.img';

function vmWithDisk(name = 'vm1'): VmSpec {
  return { ...fakeSpec(name), disks: [{ id: 'root', path: DISK, format: 'raw' }] };
}

interface World {
  world: FakeWorld;
  fabric: FakeFabric;
  platform: EmbeddedPlatform;
  a: HostAgent;
  b: HostAgent;
  stop(): Promise<void>;
}

async function fencingWorld(options: { heartbeatMs: number; switchoverWaitSeconds?: number; extra?: ReturnType<typeof definePlugin>[] }): Promise<World> {
  const world = createFakeWorld();
  const fabric = createFakeFabric();
  const dir = tempDir('fencing');
  const platform = await createEmbeddedPlatform({
    site: {
      hosts: [{ name: 'host-a', memoryMiB: 2048 }, { name: 'host-b', memoryMiB: 2048 }],
      plugins: [],
      migration: { timeoutBaseSeconds: 60, switchoverWaitSeconds: options.switchoverWaitSeconds ?? 30 },
    },
    stateDir: dir.path,
    extraPlugins: [{ definition: fakeHypervisorPlugin(world) }, { definition: fakeFabricPlugin(fabric) }, ...(options.extra ?? []).map((definition) => ({ definition }))],
    heartbeatMs: options.heartbeatMs,
  });
  return {
    world,
    fabric,
    platform,
    a: platform.agents.get('host-a')!,
    b: platform.agents.get('host-b')!,
    stop: async () => {
      await platform.stop();
      dir.remove();
    },
  };
}

/** Makes the server's calls to an agent fail as if the link were cut; returns the undo. */
function cutOff(agent: HostAgent, methods: Array<keyof HostAgent>): () => void {
  const patched = agent as unknown as Record<string, unknown>;
  for (const method of methods) {
    patched[method] = async () => {
      throw new MotusError('MOTUS_E_AGENT_UNREACHABLE', `cannot reach the agent of host ${agent.name} (link cut by the test)`, { host: agent.name });
    };
  }
  return () => {
    for (const method of methods) delete patched[method];
  };
}

const ALL_CALLS: Array<keyof HostAgent> = ['facts', 'runState', 'resume', 'cancelMigration', 'abortIncoming', 'finishOutgoing', 'commitIncoming', 'acquireStorage', 'releaseStorage', 'continueMigration'];

function alive(world: FakeWorld): FakeVm[] {
  return world.launched.filter((vm) => vm.alive);
}

async function vmState(platform: EmbeddedPlatform): Promise<[string, string]> {
  const vm = (await platform.vms()).find((v) => v.name === 'vm1')!;
  return [vm.host, vm.state];
}

/** Runs one migration and collects its events. */
async function migrate(platform: EmbeddedPlatform, onEvent: (e: MigrationEvent) => void = () => undefined): Promise<{ events: MigrationEvent[]; state: string }> {
  const handle = await platform.migrate({ vm: 'vm1', destination: 'host-b' });
  const events: MigrationEvent[] = [];
  handle.events$.subscribe((e) => {
    events.push(e);
    onEvent(e);
  });
  const summary = await handle.done;
  return { events, state: summary.state };
}

/** Drives a source agent's outgoing migration directly, as the server would, up to a status. */
async function outgoingUntil(t: World, status: MigrationProgress['status']) {
  const { uri } = await t.b.prepareIncoming(vmWithDisk(), 'm-test');
  const controller = new AbortController();
  const stream = t.a.migrateOut('vm1', uri, { capabilities: { events: true, 'pause-before-switchover': true } }, 'm-test', controller.signal)[Symbol.asyncIterator]();
  for (;;) {
    const next = await stream.next();
    if (next.done) throw new Error(`the stream ended before ${status}`);
    if (next.value.status === status) break;
  }
  return { controller, stream };
}

describe('fencing decision table (fake hypervisor, fake SAN)', function () {
  this.timeout(60_000);

  describe('rows driven through the orchestrator', () => {
    let t: World;
    const killAt: { step?: 'announce-destination' | 'cleanup-source' } = {};
    const killer = definePlugin({
      name: 'fault-killer',
      version: '1.0.0',
      apiVersion: API_VERSION,
      provides: [],
      roles: ['server'],
      setup(ctx) {
        ctx.hooks.announce.tapPromise('fault-killer', async () => {
          if (killAt.step === 'announce-destination') t.world.launched[1]!.kill();
          if (killAt.step === 'cleanup-source') t.world.launched[0]!.kill();
        });
      },
    });

    beforeEach(async () => {
      delete killAt.step;
      t = await fencingWorld({ heartbeatMs: 50, extra: [killer] });
      await t.platform.startVm(vmWithDisk(), 'host-a');
      expect(t.fabric.leases.get(DISK)).to.equal('host-a');
    });
    afterEach(async () => t.stop());

    it('P1 pre-copy, destination QEMU dies: rolled back, the source runs and keeps the lease', async () => {
      t.world.rounds = 50;
      const handle = await t.platform.migrate({ vm: 'vm1', destination: 'host-b' });
      handle.events$.subscribe((e) => {
        if (e.type === 'progress' && e.round >= 3) t.world.launched[1]!.kill();
      });
      expect((await handle.done).state).to.equal('failed');
      expect(await vmState(t.platform)).to.deep.equal(['host-a', 'running']);
      expect(alive(t.world).map((vm) => vm.state)).to.deep.equal(['running']);
      expect(t.fabric.leases.get(DISK)).to.equal('host-a');
    });

    it('P2 pre-copy, source QEMU dies: rolled back, the VM crashed, no copy left, the lease free for a restart', async () => {
      t.world.rounds = 50;
      const handle = await t.platform.migrate({ vm: 'vm1', destination: 'host-b' });
      handle.events$.subscribe((e) => {
        if (e.type === 'progress' && e.round >= 3) t.world.launched[0]!.kill();
      });
      const summary = await handle.done;
      expect(summary.state).to.equal('failed');
      expect(await vmState(t.platform)).to.deep.equal(['host-a', 'crashed']);
      expect(alive(t.world)).to.deep.equal([]);
      await waitFor('the lease to be given up', () => (t.fabric.leases.has(DISK) ? undefined : true), 5_000, 20);
    });

    it('P3 pre-copy, source agent and QEMU gone (restarted agent without the VM): unknown while it does not answer, then crashed once every host answers without a copy', async () => {
      t.world.rounds = 50;
      let restore: (() => void) | undefined;
      const { state } = await migrate(t.platform, (e) => {
        if (e.type === 'progress' && e.round >= 3 && !restore) {
          restore = cutOff(t.a, ALL_CALLS);
          t.world.launched[0]!.kill();
        }
      });
      expect(state).to.equal('failed');
      expect(await vmState(t.platform)).to.deep.equal(['host-a', 'unknown']);
      restore!();
      await waitFor('the VM to be marked crashed', async () => ((await vmState(t.platform)).join() === 'host-a,crashed' ? true : undefined), 10_000, 50);
      expect(alive(t.world)).to.deep.equal([]);
    });

    it('W1 switchover, destination cut off after the lease moved and the VM ran there: the source stays stopped (fenced), the VM is found on the destination once it answers', async () => {
      let restore = () => undefined as void;
      // The link to host-b goes down as the switchover starts: the lease still moves, the server hears nothing more.
      const { events, state } = await migrate(t.platform, (e) => {
        if (e.type === 'switchover') restore = cutOff(t.b, ['runState', 'abortIncoming', 'facts']);
      });
      expect(state).to.equal('failed');
      const rolledBack = events.find((e) => e.type === 'rolled-back') as Extract<MigrationEvent, { type: 'rolled-back' }>;
      expect(rolledBack.vmState).to.equal('postmigrate');
      expect(await vmState(t.platform)).to.deep.equal(['host-a', 'unknown']);
      expect(t.fabric.leases.get(DISK), 'the lease stays where the VM runs').to.equal('host-b');
      const [source, destination] = t.world.launched;
      expect(source!.state, 'the source was never resumed').to.equal('postmigrate');
      expect(destination!.state).to.equal('running');
      await expectFenced(t.a.resume('vm1'));
      restore();
      await waitFor('the VM to be placed on host-b', async () => ((await vmState(t.platform)).join() === 'host-b,running' ? true : undefined), 10_000, 50);
      await waitFor('the stale source copy to be stopped', () => (source!.alive ? undefined : true), 10_000, 50);
      expect(alive(t.world)).to.deep.equal([destination]);
      expect(t.fabric.leases.get(DISK)).to.equal('host-b');
    });

    it('W2 switchover, source cut off before it gave its lease: the destination copy is stopped, the source settles by itself and runs; the VM is found there once it answers', async () => {
      let restore = () => undefined as void;
      const { events, state } = await migrate(t.platform, (e) => {
        if (e.type === 'switchover') restore = cutOff(t.a, ALL_CALLS);
      });
      expect(state).to.equal('failed');
      expect(events.find((e) => e.type === 'failed')).to.include({ phase: 'switchover' });
      expect(await vmState(t.platform)).to.deep.equal(['host-a', 'unknown']);
      const [source, destination] = t.world.launched;
      expect(destination!.alive, 'the destination copy was stopped').to.equal(false);
      await waitFor('the source to settle and run', () => (source!.state === 'running' ? true : undefined), 5_000, 20);
      expect(t.fabric.leases.get(DISK)).to.equal('host-a');
      restore();
      await waitFor('the VM to be known as running on host-a', async () => ((await vmState(t.platform)).join() === 'host-a,running' ? true : undefined), 10_000, 50);
      expect(alive(t.world)).to.deep.equal([source]);
    });

    it('A1 announce, destination QEMU dies after it ran: the source is never resumed; the VM is crashed, no copy left', async () => {
      killAt.step = 'announce-destination';
      const { state } = await migrate(t.platform);
      expect(state).to.equal('completed');
      await waitFor('the VM to be marked crashed', async () => ((await vmState(t.platform)).join() === 'host-b,crashed' ? true : undefined), 10_000, 50);
      expect(alive(t.world)).to.deep.equal([]);
      expect(t.world.launched[0]!.state, 'the source never ran again').to.equal('postmigrate');
    });

    it('C1 cleanup, source QEMU dies after the destination ran: completed, the VM runs on the destination with the lease', async () => {
      killAt.step = 'cleanup-source';
      const { state } = await migrate(t.platform);
      expect(state).to.equal('completed');
      expect(await vmState(t.platform)).to.deep.equal(['host-b', 'running']);
      expect(alive(t.world)).to.deep.equal([t.world.launched[1]]);
      expect(t.fabric.leases.get(DISK)).to.equal('host-b');
    });
  });

  describe('agent rules, the agents driven directly (no heartbeat in the way)', () => {
    let t: World;
    beforeEach(async () => {
      t = await fencingWorld({ heartbeatMs: 60_000, switchoverWaitSeconds: 0.3 });
      await t.platform.startVm(vmWithDisk(), 'host-a');
    });
    afterEach(async () => t.stop());

    it('S1 pre-copy, the server stops following: the source cancels its migration and keeps running with its lease', async () => {
      const { controller, stream } = await outgoingUntil(t, 'active');
      controller.abort();
      await stream.return?.(undefined);
      const source = t.world.launched[0]!;
      await waitFor('the source to settle', async () => ((await t.a.facts()).vms[0]!.role === 'running' ? true : undefined), 5_000, 20);
      expect(source.progress.status).to.equal('cancelled');
      expect(await t.a.runState('vm1')).to.equal('running');
      expect(t.fabric.leases.get(DISK)).to.equal('host-a');
    });

    it('S1 switchover, the server lost after the lease moved: the source stays paused (resume refused) until the destination gives the lease up, then takes it and runs', async () => {
      const { controller, stream } = await outgoingUntil(t, 'pre-switchover');
      await t.a.releaseStorage('vm1');
      await t.b.acquireStorage('vm1');
      controller.abort();
      await stream.return?.(undefined);
      await sleep(500);
      expect(await t.a.runState('vm1'), 'no lease, no run').to.equal('paused');
      await expectFenced(t.a.resume('vm1'));
      expect(t.fabric.leases.get(DISK)).to.equal('host-b');
      await t.b.abortIncoming('vm1');
      await waitFor('the source to take the lease back and run', async () => ((await t.a.runState('vm1')) === 'running' ? true : undefined), 10_000, 50);
      expect(t.fabric.leases.get(DISK)).to.equal('host-a');
      // Stopping the destination fails the migration as much as the cancel does.
      expect(t.world.launched[0]!.progress.status).to.be.oneOf(['cancelled', 'failed']);
      expect(alive(t.world)).to.have.length(1);
    });

    it('S2 switchover, no order from the server in time: the source ends its stream, keeps its lease, cancels and runs', async () => {
      const { stream } = await outgoingUntil(t, 'pre-switchover');
      const started = Date.now();
      for (;;) if ((await stream.next()).done) break;
      expect(Date.now() - started).to.be.at.least(250);
      await waitFor('the source to run again', async () => ((await t.a.runState('vm1')) === 'running' ? true : undefined), 5_000, 20);
      expect(t.fabric.leases.get(DISK)).to.equal('host-a');
      expect(t.world.launched[0]!.progress.status).to.equal('cancelled');
    });

    it('D1 an incoming copy that starts running without the lease is killed before it can write', async () => {
      const { uri } = await t.b.prepareIncoming(vmWithDisk(), 'm-test');
      const incoming = t.world.listening.get(uri)!;
      incoming.startRunning();
      await waitFor('the copy to be killed', () => (incoming.alive ? undefined : true), 5_000, 20);
      expect(await t.b.runState('vm1')).to.equal('absent');
      expect(t.fabric.leases.get(DISK)).to.equal('host-a');
      expect(await t.a.runState('vm1')).to.equal('running');
    });

    it('H1 a host that does not hold the lease refuses to resume or commit the VM', async () => {
      const { stream } = await outgoingUntil(t, 'pre-switchover');
      void stream;
      await t.a.releaseStorage('vm1');
      await t.b.acquireStorage('vm1');
      await expectFenced(t.a.resume('vm1'));
      await t.b.releaseStorage('vm1');
      await expectFenced(t.b.commitIncoming('vm1'));
    });
  });
});

async function expectFenced(promise: Promise<unknown>): Promise<void> {
  try {
    await promise;
  } catch (err) {
    expect(isMotusError(err, 'MOTUS_E_FENCED'), String(err)).to.equal(true);
    expect((err as MotusError).data).to.have.property('vm', 'vm1');
    return;
  }
  expect.fail('expected MOTUS_E_FENCED');
}
