import { expect } from 'chai';
import { z } from 'zod';
import { API_VERSION, HypervisorDriverToken, MotusError, StorageProviderToken, definePlugin, type PluginDefinition } from '@motus/sdk';
import { PluginHost, createLogger, createMigrationHooks, createRootContainer, type PluginSource } from '@motus/core';
import { tempDir } from '../../support/index.js';
import { FakeDriver, createFakeWorld } from '../support/fake-hypervisor.js';

function host(role: 'server' | 'agent' = 'agent') {
  const dir = tempDir('plugins');
  const plugins = new PluginHost({ role, root: createRootContainer(), hooks: createMigrationHooks(), logger: createLogger({}, { write: () => undefined }), stateDir: dir.path });
  return { plugins, dir };
}

async function loadError(sources: PluginSource[], role: 'server' | 'agent' = 'agent'): Promise<MotusError> {
  const { plugins, dir } = host(role);
  try {
    await plugins.load(sources);
  } catch (err) {
    expect(err).to.be.instanceOf(MotusError);
    return err as MotusError;
  } finally {
    await plugins.dispose();
    dir.remove();
  }
  return expect.fail('expected the load to fail') as never;
}

function plugin(overrides: Partial<PluginDefinition<unknown>> = {}): PluginDefinition<unknown> {
  return definePlugin<unknown>({ name: 'p', version: '1.0.0', apiVersion: API_VERSION, provides: [], setup() {}, ...overrides });
}

const hypervisor = (name: string) =>
  plugin({
    name,
    provides: [HypervisorDriverToken],
    setup(ctx) {
      ctx.provide(HypervisorDriverToken, new FakeDriver(createFakeWorld()));
    },
  });

describe('plugin host', () => {
  it('loads a plugin by package name and collects what it provides', async () => {
    const { plugins, dir } = host();
    await plugins.load([{ package: '@motus/hv-qemu', config: { accelerator: 'tcg' } }]);
    expect(plugins.pluginNames()).to.deep.equal(['@motus/hv-qemu']);
    expect(plugins.single(HypervisorDriverToken)?.kind).to.equal('qemu');
    expect(plugins.contributions(StorageProviderToken)).to.deep.equal([]);
    await plugins.dispose();
    dir.remove();
  });

  it('refuses a package that is not installed, naming it', async () => {
    const err = await loadError([{ package: '@motus/no-such-plugin' }]);
    expect(err.code).to.equal('MOTUS_E_PLUGIN_NOT_FOUND');
    expect(err.message).to.include('@motus/no-such-plugin');
  });

  it('refuses a module that is not a definePlugin value', async () => {
    const err = await loadError([{ package: 'zod' }]);
    expect(err.code).to.equal('MOTUS_E_PLUGIN_INVALID');
    expect(err.message).to.include('zod');
  });

  it('refuses a plugin written for another API version', async () => {
    const err = await loadError([{ definition: plugin({ name: 'old', apiVersion: 0 }) }]);
    expect(err.code).to.equal('MOTUS_E_PLUGIN_API_MISMATCH');
    expect(err.data).to.include({ plugin: 'old', apiVersion: 0, expected: API_VERSION });
  });

  it('validates the config slice with the plugin schema and names the field', async () => {
    const configured = plugin({ name: 'cfg', configSchema: z.object({ rate: z.number().positive() }).strict() as never });
    const err = await loadError([{ definition: configured, config: { rate: -1 } }]);
    expect(err.code).to.equal('MOTUS_E_PLUGIN_CONFIG');
    expect(err.message).to.match(/cfg.*rate/);
    const extra = await loadError([{ definition: plugin({ name: 'bare' }), config: { x: 1 } }]);
    expect(extra.code).to.equal('MOTUS_E_PLUGIN_CONFIG');
  });

  it('refuses two plugins that both provide the hypervisor', async () => {
    const err = await loadError([{ definition: hypervisor('one') }, { definition: hypervisor('two') }]);
    expect(err.code).to.equal('MOTUS_E_PLUGIN_CONFLICT');
    expect(err.message).to.include('one').and.to.include('two');
  });

  it('orders by dependsOn and refuses a missing dependency or a cycle', async () => {
    const order: string[] = [];
    const a = plugin({ name: 'a', dependsOn: ['b'], setup: () => void order.push('a') });
    const b = plugin({ name: 'b', setup: () => void order.push('b') });
    const { plugins, dir } = host();
    await plugins.load([{ definition: a }, { definition: b }]);
    expect(order).to.deep.equal(['b', 'a']);
    await plugins.dispose();
    dir.remove();
    expect((await loadError([{ definition: a }])).code).to.equal('MOTUS_E_PLUGIN_CONFLICT');
    const c1 = plugin({ name: 'c1', dependsOn: ['c2'] });
    const c2 = plugin({ name: 'c2', dependsOn: ['c1'] });
    const cycle = await loadError([{ definition: c1 }, { definition: c2 }]);
    expect(cycle.message).to.include('cycle');
  });

  it('refuses a provide the manifest does not declare, and a declared token never provided', async () => {
    const sneaky = plugin({ name: 'sneaky', setup: (ctx) => ctx.provide(HypervisorDriverToken, new FakeDriver(createFakeWorld())) });
    expect((await loadError([{ definition: sneaky }])).code).to.equal('MOTUS_E_PLUGIN_INVALID');
    const lazy = plugin({ name: 'lazy', provides: [HypervisorDriverToken] });
    const err = await loadError([{ definition: lazy }]);
    expect(err.code).to.equal('MOTUS_E_PLUGIN_SETUP');
    expect(err.message).to.include('hypervisor.driver');
  });

  it('does not ask a plugin to provide an agent contract in the server role', async () => {
    const both = plugin({ name: 'both', provides: [StorageProviderToken], setup: () => undefined });
    const { plugins, dir } = host('server');
    try {
      await plugins.load([{ definition: both }]);
      expect(plugins.contributions(StorageProviderToken)).to.deep.equal([]);
    } finally {
      await plugins.dispose();
      dir.remove();
    }
  });

  it('wraps a setup failure with the plugin name', async () => {
    const broken = plugin({
      name: 'broken',
      setup() {
        throw new Error('cannot open /dev/thing');
      },
    });
    const err = await loadError([{ definition: broken }]);
    expect(err.code).to.equal('MOTUS_E_PLUGIN_SETUP');
    expect(err.message).to.equal('plugin broken failed to set up: cannot open /dev/thing');
  });

  it('skips plugins not meant for the role, and runs disposers in reverse order', async () => {
    const disposed: string[] = [];
    const mk = (name: string) => plugin({ name, roles: ['server'], setup: (ctx) => ctx.onDispose(() => void disposed.push(name)) });
    const agentSide = host('agent');
    await agentSide.plugins.load([{ definition: mk('s1') }]);
    expect(agentSide.plugins.pluginNames()).to.deep.equal([]);
    await agentSide.plugins.dispose();
    agentSide.dir.remove();
    const serverSide = host('server');
    await serverSide.plugins.load([{ definition: mk('s1') }, { definition: mk('s2') }]);
    await serverSide.plugins.dispose();
    serverSide.dir.remove();
    expect(disposed).to.deep.equal(['s2', 's1']);
  });

  it('gives plugins a tap-only view of frozen hooks', async () => {
    const hooks = createMigrationHooks();
    expect(Object.isFrozen(hooks)).to.equal(true);
    let view: Record<string, object> = {};
    const spy = plugin({
      name: 'spy',
      setup(ctx) {
        view = ctx.hooks as unknown as Record<string, object>;
      },
    });
    const { plugins, dir } = host();
    await plugins.load([{ definition: spy }]);
    expect(Object.keys(view).sort()).to.deep.equal(['announce', 'cleanup', 'failed', 'prepareDestination', 'switchover', 'validate']);
    expect(Object.keys(view.validate!).sort()).to.deep.equal(['tap', 'tapAsync', 'tapPromise']);
    expect((view.validate as { promise?: unknown }).promise).to.equal(undefined);
    await plugins.dispose();
    dir.remove();
  });
});
