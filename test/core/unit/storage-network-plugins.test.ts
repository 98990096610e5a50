import { expect } from 'chai';
import { API_VERSION, definePlugin, isMotusError, type VmSpec } from '@motus/sdk';
import { createEmbeddedPlatform, type EmbeddedPlatform } from '@motus/core';
import { tempDir } from '../../support/index.js';
import { createFakeWorld, fakeHypervisorPlugin, fakeSpec, type FakeWorld } from '../support/fake-hypervisor.js';
import { createFakeFabric, fakeFabricPlugin, type FakeFabric } from '../support/fake-providers.js';

function vmWithDiskAndNic(name: string): VmSpec {
  return {
    ...fakeSpec(name),
    disks: [{ id: 'root', path: `fake://ds1/${name}.img`, format: 'raw' }],
    nics: [{ id: 'n0', mac: '52:54:00:00:00:01', network: 'lan' }],
  };
}

describe('storage leases, switch ports, plugin facts and agent calls (fakes)', () => {
  let world: FakeWorld;
  let fabric: FakeFabric;
  let platform: EmbeddedPlatform;
  let dir: { remove(): void };
  const calls: string[] = [];

  const roundTrip = definePlugin({
    name: 'round-trip',
    version: '1.0.0',
    apiVersion: API_VERSION,
    provides: [],
    setup(ctx) {
      if (ctx.role === 'agent') {
        ctx.reportFacts(() => ({ host: ctx.host, features: ['sse2'] }));
        ctx.handle('echo', async (payload) => ({ host: ctx.host, payload }));
      } else {
        ctx.hooks.validate.tapPromise('round-trip', async (c) => {
          const answer = (await ctx.callAgent(c.destination.name, 'echo', { vm: c.vm.name })) as { host: string };
          calls.push(`echo from ${answer.host}`);
          return undefined;
        });
      }
    },
  });

  beforeEach(async () => {
    world = createFakeWorld();
    fabric = createFakeFabric();
    calls.length = 0;
    const d = tempDir('fabric');
    dir = d;
    platform = await createEmbeddedPlatform({
      site: { hosts: [{ name: 'host-a', memoryMiB: 2048 }, { name: 'host-b', memoryMiB: 2048 }], plugins: [] },
      stateDir: d.path,
      extraPlugins: [{ definition: fakeHypervisorPlugin(world) }, { definition: fakeFabricPlugin(fabric) }, { definition: roundTrip }],
    });
  });

  afterEach(async () => {
    await platform.stop();
    dir.remove();
  });

  it('takes the lease and attaches the NIC where the VM starts, and hands both over at switchover', async () => {
    await platform.startVm(vmWithDiskAndNic('vm1'), 'host-a');
    expect(fabric.leases.get('fake://ds1/vm1.img')).to.equal('host-a');
    expect([...fabric.ports]).to.deep.equal(['host-a:vm1/n0']);
    expect(world.launched[0]!.launchOptions?.nics?.[0]?.netdev).to.include('/fake/host-a/vm1');
    fabric.log.length = 0;

    const summary = await (await platform.migrate({ vm: 'vm1', destination: 'host-b' })).done;
    expect(summary.state).to.equal('completed');
    expect(world.launched[0]!.tuning?.capabilities?.['pause-before-switchover'], 'the source pauses before switchover').to.equal(true);
    expect(fabric.log).to.deep.equal(['release host-a vm1', 'acquire host-b vm1']);
    expect(fabric.leases.get('fake://ds1/vm1.img')).to.equal('host-b');
    expect([...fabric.ports]).to.deep.equal(['host-b:vm1/n0']);
    expect(world.launched[1]!.launchOptions?.incoming).to.equal(true);
    expect(world.launched[1]!.launchOptions?.nics?.[0]?.netdev).to.include('/fake/host-b/vm1');

    await platform.stopVm('vm1');
    expect(fabric.leases.size).to.equal(0);
    expect(fabric.ports.size).to.equal(0);
  });

  it('gives the lease back to the source and resumes it when the destination cannot take it', async () => {
    await platform.startVm(vmWithDiskAndNic('vm1'), 'host-a');
    fabric.refuse.add('host-b');
    const summary = await (await platform.migrate({ vm: 'vm1', destination: 'host-b' })).done;
    expect(summary.state).to.equal('failed');
    expect(summary.error?.data?.phase).to.equal('switchover');
    expect(fabric.leases.get('fake://ds1/vm1.img')).to.equal('host-a');
    expect(await platform.agents.get('host-a')!.runState('vm1')).to.equal('running');
    expect(await platform.agents.get('host-b')!.runState('vm1')).to.equal('absent');
    expect([...fabric.ports]).to.deep.equal(['host-a:vm1/n0']);
  });

  it('refuses to start a VM whose disk is leased by another host, leaving nothing behind', async () => {
    fabric.leases.set('fake://ds1/vm2.img', 'host-b');
    try {
      await platform.startVm(vmWithDiskAndNic('vm2'), 'host-a');
      expect.fail('the lease is held elsewhere');
    } catch (err) {
      expect(isMotusError(err)).to.equal(true);
      expect((err as Error).message).to.include('leased by host-b');
    }
    expect(world.launched).to.have.length(0);
    expect(fabric.ports.size).to.equal(0);
  });

  it('refuses a NIC on a network the host does not have', async () => {
    const spec = { ...fakeSpec('vm3'), nics: [{ id: 'n0', mac: '52:54:00:00:00:03', network: 'dmz' }] };
    try {
      await platform.startVm(spec, 'host-a');
      expect.fail('no such network');
    } catch (err) {
      expect((err as { code: string }).code).to.equal('MOTUS_E_INVALID_REQUEST');
      expect((err as Error).message).to.include("network 'dmz'");
    }
  });

  it('reports plugin facts per host and lets a server-side plugin call its agent side', async () => {
    const hosts = await platform.hosts();
    expect(hosts.find((h) => h.name === 'host-b')!.plugins['round-trip']).to.deep.equal({ host: 'host-b', features: ['sse2'] });
    await platform.startVm(fakeSpec('vm4'), 'host-a');
    await (await platform.migrate({ vm: 'vm4', destination: 'host-b' })).done;
    expect(calls).to.deep.equal(['echo from host-b']);
  });
});
