import { expect } from 'chai';
import { isMotusError, NetworkProviderToken, type MetricSample, type MigrationHookContext, type PluginContext } from '@motus/sdk';
import netVirt, { netVirtConfigSchema, type NetVirtConfig } from '@motus/net-virt';
import { tempDir } from '../../support/index.js';

type Tap = (ctx: MigrationHookContext) => Promise<unknown>;

/** A recording stand-in for the kernel's plugin context: only what setup() touches. */
function fakeContext(role: 'agent' | 'server', config: NetVirtConfig, stateDir: string, callAgent?: PluginContext<NetVirtConfig>['callAgent']) {
  const handlers = new Map<string, (payload: unknown) => Promise<unknown>>();
  const taps = new Map<string, Tap>();
  const provided: unknown[] = [];
  const disposers: Array<() => void | Promise<void>> = [];
  const metrics = new Map<string, () => readonly MetricSample[]>();
  const hook = (name: string) => ({ tapPromise: (_: string, fn: Tap) => taps.set(name, fn), tap: () => undefined, tapAsync: () => undefined });
  const ctx = {
    name: '@motus/net-virt',
    role,
    host: 'host-a',
    config,
    logger: { debug() {}, info() {}, warn() {}, error() {}, child() { return this; } },
    container: undefined,
    hooks: { validate: hook('validate'), prepareDestination: hook('prepareDestination'), switchover: hook('switchover'), announce: hook('announce'), cleanup: hook('cleanup'), failed: hook('failed') },
    stateDir,
    provide: (token: unknown, value: unknown) => provided.push([token, value]),
    onDispose: (fn: () => void | Promise<void>) => disposers.push(fn),
    reportFacts: () => undefined,
    metrics: { sampled: (spec: { name: string }, read: () => readonly MetricSample[]) => metrics.set(spec.name, read) },
    handle: (method: string, fn: (payload: unknown) => Promise<unknown>) => handlers.set(method, fn),
    callAgent: callAgent ?? (async () => undefined),
    hosts: async () => [{ name: 'host-a' }, { name: 'host-b' }],
  } as unknown as PluginContext<NetVirtConfig>;
  return { ctx, handlers, taps, provided, metrics, dispose: async () => { for (const fn of disposers.reverse()) await fn(); } };
}

describe('net-virt plugin wiring', () => {
  const config = netVirtConfigSchema.parse({ networks: { prod: { vni: 9 } }, hosts: { 'host-a': { vtep: '127.0.0.1:4789' }, 'host-b': { vtep: '127.0.0.2:4789' } } });

  it('on an agent: provides the network provider and checks the payloads of its methods', async () => {
    const dir = tempDir('nv-wiring');
    const f = fakeContext('agent', { ...config, hosts: {} }, dir.path);
    try {
      await netVirt.setup(f.ctx);
      expect(f.provided.map((p) => (p as unknown[])[0])).to.deep.equal([NetworkProviderToken]);
      expect([...f.handlers.keys()].sort()).to.deep.equal(['capture', 'locate', 'mac-table', 'stats']);
      expect([...f.metrics.keys()]).to.include.members(['motus_vswitch_frames_total', 'motus_vswitch_dropped_frames_total', 'motus_vswitch_bytes_total']);
      const provider = f.provided[0] as [unknown, import('@motus/sdk').NetworkProvider];
      await provider[1].attach('vm1', { id: 'net0', mac: '52:54:00:00:00:07', network: 'prod' });
      expect(f.metrics.get('motus_vswitch_frames_total')!()).to.deep.include({ labels: { port: 'vm1.net0', network: 'prod', direction: 'rx' }, value: 0 });
      expect(await f.handlers.get('locate')!({ mac: '52:54:00:00:00:01', network: 'prod' })).to.deep.equal({ host: 'host-a', location: null });
      for (const [method, payload] of [['locate', { mac: 5 }], ['capture', { target: 'uplink', name: '../../etc/passwd', durationMs: 10 }], ['capture', null]] as const) {
        try {
          await f.handlers.get(method)!(payload);
          expect.fail(`${method} accepted ${JSON.stringify(payload)}`);
        } catch (err) {
          expect(isMotusError(err, 'MOTUS_E_INVALID_REQUEST'), String(err)).to.equal(true);
        }
      }
      const result = (await f.handlers.get('capture')!({ target: 'uplink', name: 'u.pcap', durationMs: 20 })) as { path: string; frames: number };
      expect(result.path).to.equal(`${dir.path}/captures/u.pcap`);
    } finally {
      await f.dispose();
      dir.remove();
    }
  });

  it('on the server: the announce tap asks every configured host of the site (not an outside VTEP) and names the ones that disagree', async () => {
    const asked: string[] = [];
    const withGateway = { ...config, hosts: { ...config.hosts, gateway: { vtep: '127.0.0.3:4789' } } };
    const f = fakeContext('server', { ...withGateway, announceTimeoutMs: 150, announcePollMs: 20 }, '/nonexistent', async (host, method, payload) => {
      asked.push(`${host}:${method}:${(payload as { mac: string }).mac}`);
      return { host, location: 'local:srv.n0' };
    });
    await netVirt.setup(f.ctx);
    const mctx = {
      migrationId: 'm1',
      vm: { name: 'srv', spec: { name: 'srv', memoryMiB: 128, vcpus: 1, nics: [{ id: 'n0', mac: '52:54:00:00:00:0A', network: 'prod' }] } },
      source: { name: 'host-a', plugins: {} },
      destination: { name: 'host-b', plugins: {} },
      signal: new AbortController().signal,
    } as unknown as MigrationHookContext;
    try {
      await f.taps.get('announce')!(mctx);
      expect.fail('host-a still reaches the MAC locally: the announce step must fail');
    } catch (err) {
      expect(isMotusError(err, 'MOTUS_E_NET_RELOCATION_UNCONFIRMED'), String(err)).to.equal(true);
      expect((err as { data: { disagreements: Array<{ host: string; location: string }> } }).data.disagreements).to.deep.equal([
        { host: 'host-a', expected: 'uplink:host-b', location: 'local:srv.n0' },
      ]);
    }
    expect(asked).to.include('host-a:locate:52:54:00:00:00:0a');
    expect(asked).to.include('host-b:locate:52:54:00:00:00:0a');
    expect(asked.filter((a) => a.startsWith('gateway:')), 'an endpoint that is no Motus host has no switch to ask').to.deep.equal([]);
  });
});
