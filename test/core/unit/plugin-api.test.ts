import { expect } from 'chai';
import { API_VERSION, CpuCompatPolicyToken, MotusClient, MotusError, definePlugin, type CpuCompatPolicy, type CpuMask, type HostInfo, type VmInfo } from '@motus/sdk';
import { createEmbeddedPlatform, createLogger, createServerApi, type EmbeddedPlatform } from '@motus/core';
import { tempDir } from '../../support/index.js';
import { createFakeWorld, fakeHypervisorPlugin, fakeSpec } from '../support/fake-hypervisor.js';

async function codeOf(promise: Promise<unknown>): Promise<string> {
  return promise.then(
    () => 'resolved',
    (err: unknown) => (err instanceof MotusError ? err.code : `not coded: ${String(err)}`),
  );
}

/** A server-side plugin that looks at the site and offers one read-only and one operator method. */
const seenByPlugin: { hosts?: HostInfo[]; vms?: VmInfo[]; agentHostsError?: string } = {};
const sitePeek = definePlugin({
  name: 'site-peek',
  version: '1.0.0',
  apiVersion: API_VERSION,
  provides: [],
  async setup(ctx) {
    if (ctx.role === 'agent') {
      seenByPlugin.agentHostsError = await codeOf(ctx.hosts());
      return;
    }
    ctx.handle(
      'peek',
      async (payload) => {
        const hosts = await ctx.hosts();
        const vms = await ctx.vms();
        seenByPlugin.hosts = hosts;
        seenByPlugin.vms = vms;
        // A copy: changing it changes nothing in the inventory.
        for (const vm of vms) vm.host = 'nowhere';
        return { payload, hosts: hosts.map((h) => h.name), vms: vms.map((v) => v.name) };
      },
      { role: 'viewer' },
    );
    ctx.handle('poke', async () => ({ poked: true }));
  },
});

/** Stands for cpu-compat's policy: the baseline minus the mask, as a string. */
const masks: Array<CpuMask | undefined> = [];
const fakeCpuPolicy: CpuCompatPolicy = {
  baseline: async () => ({ cpu: 'Westmere-v2', features: [], refused: [] }),
  effectiveCpu: async (mask) => ['Westmere-v2', ...(mask?.hide ?? []).map((f) => `-${f}`)].join(','),
  cpuForNewVm: async (mask) => {
    masks.push(mask);
    return ['Westmere-v2', ...(mask?.hide ?? []).map((f) => `-${f}`)].join(',');
  },
  check: async () => {
    throw new Error('not used');
  },
};
const cpuPlugin = definePlugin({
  name: 'fake-cpu',
  version: '1.0.0',
  apiVersion: API_VERSION,
  provides: [CpuCompatPolicyToken],
  roles: ['server'],
  setup: (ctx) => ctx.provide(CpuCompatPolicyToken, fakeCpuPolicy),
});

describe('plugins on the server: the site view, API methods with roles, and the CPU recorded at VM creation', function () {
  this.timeout(30_000);
  let dirs: Array<{ path: string; remove(): void }> = [];
  let platforms: EmbeddedPlatform[] = [];
  let apis: Array<ReturnType<typeof createServerApi>> = [];

  async function site(plugins: Array<ReturnType<typeof definePlugin>>): Promise<{ platform: EmbeddedPlatform; admin: MotusClient; viewer: MotusClient; operator: MotusClient }> {
    const dir = tempDir('plugin-api');
    dirs.push(dir);
    const world = createFakeWorld();
    const platform = await createEmbeddedPlatform({
      site: { hosts: [{ name: 'host-a', memoryMiB: 4096 }, { name: 'host-b', memoryMiB: 4096 }], plugins: [] },
      stateDir: dir.path,
      extraPlugins: [{ definition: fakeHypervisorPlugin(world) }, ...plugins.map((definition) => ({ definition }))],
      heartbeatMs: 100,
    });
    platforms.push(platform);
    const api = createServerApi(platform.server, { apiToken: 'admin-token', agentToken: 'agent-token', logger: createLogger({}, { write: () => undefined }) });
    apis.push(api);
    const url = await api.listen('127.0.0.1:0');
    const admin = new MotusClient({ url, token: 'admin-token' });
    await admin.addUser('vera', 'viewer');
    await admin.addUser('olga', 'operator');
    const viewer = new MotusClient({ url, token: (await admin.createToken('vera')).token });
    const operator = new MotusClient({ url, token: (await admin.createToken('olga')).token });
    return { platform, admin, viewer, operator };
  }

  afterEach(async () => {
    for (const api of apis) await api.close();
    for (const platform of platforms) await platform.stop();
    for (const dir of dirs) dir.remove();
    apis = [];
    platforms = [];
    dirs = [];
  });

  it("gives server plugins a copy of the site's hosts and VMs, and refuses that view to agents", async () => {
    const { admin, viewer } = await site([sitePeek]);
    await admin.startVm(fakeSpec('vm1', 64), 'host-a');
    const answer = await viewer.pluginCall<{ payload: unknown; hosts: string[]; vms: string[] }>('site-peek', 'peek', { n: 1 });
    expect(answer).to.deep.equal({ payload: { n: 1 }, hosts: ['host-a', 'host-b'], vms: ['vm1'] });
    expect(seenByPlugin.hosts!.every((h) => h.state === 'connected' && typeof h.plugins === 'object')).to.equal(true);
    expect((await admin.vms())[0]!.host, 'the plugin changed only its copy').to.equal('host-a');
    expect(seenByPlugin.agentHostsError).to.equal('MOTUS_E_PLUGIN_INVALID');
  });

  it('lets a viewer call a viewer method only; operator methods need an operator; refusals are audited; unknown methods and bad bodies are coded', async () => {
    const { admin, viewer, operator } = await site([sitePeek]);
    expect(await codeOf(viewer.pluginCall('site-peek', 'poke'))).to.equal('MOTUS_E_FORBIDDEN');
    expect(await operator.pluginCall('site-peek', 'poke')).to.deep.equal({ poked: true });
    expect(await codeOf(viewer.pluginCall('site-peek', 'nothing'))).to.equal('MOTUS_E_NOT_FOUND');
    expect(await codeOf(viewer.pluginCall('no-such-plugin', 'peek'))).to.equal('MOTUS_E_NOT_FOUND');
    const refused = (await admin.audit({ user: 'vera' })).filter((r) => r.action === 'api.refused');
    expect(refused.map((r) => r.outcome)).to.include('MOTUS_E_FORBIDDEN');
    const url = (viewer as unknown as { http: { base: string } }).http.base;
    const response = await fetch(`${url}/v1/plugins/site-peek/peek`, { method: 'POST', headers: { authorization: 'Bearer admin-token', 'content-type': 'application/json' }, body: JSON.stringify({ payload: {}, extra: 1 }) });
    expect(response.status).to.equal(400);
    expect(await response.text()).to.contain('extra');
  });

  it("records the CPU policy's answer in a new VM's spec (mask applied); an explicit cpuModel stays; a mask without the plugin is refused", async () => {
    const { admin } = await site([cpuPlugin]);
    masks.length = 0;
    const masked = await admin.startVm({ ...fakeSpec('m1', 64), cpuMask: { hide: ['aes', 'avx'] } }, 'host-a');
    expect(masked.spec.cpuModel).to.equal('Westmere-v2,-aes,-avx');
    expect(masked.spec.cpuMask).to.deep.equal({ hide: ['aes', 'avx'] });
    expect(masks).to.deep.equal([{ hide: ['aes', 'avx'] }]);
    const plain = await admin.startVm(fakeSpec('m2', 64), 'host-a');
    expect(plain.spec.cpuModel).to.equal('Westmere-v2');
    const explicit = await admin.startVm({ ...fakeSpec('m3', 64), cpuModel: 'qemu64,-svm' }, 'host-a');
    expect(explicit.spec.cpuModel).to.equal('qemu64,-svm');
    expect(await codeOf(admin.startVm({ ...fakeSpec('m4', 64), cpuModel: 'qemu64', cpuMask: { hide: ['aes'] } }, 'host-a'))).to.equal('MOTUS_E_INVALID_REQUEST');
    // The recorded CPU moves with the VM.
    const handle = await admin.migrate({ vm: 'm1', destination: 'host-b' });
    for await (const _ of admin.migrationEvents(handle.id)) void _;
    const moved = (await admin.vms()).find((v) => v.name === 'm1')!;
    expect([moved.host, moved.spec.cpuModel]).to.deep.equal(['host-b', 'Westmere-v2,-aes,-avx']);

    const bare = await site([]);
    expect(await codeOf(bare.admin.startVm({ ...fakeSpec('m5', 64), cpuMask: { hide: ['aes'] } }, 'host-a'))).to.equal('MOTUS_E_INVALID_REQUEST');
  });
});
