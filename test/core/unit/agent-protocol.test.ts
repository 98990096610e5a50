import { expect } from 'chai';
import { API_VERSION, MotusError, definePlugin } from '@motus/sdk';
import { HostAgent, HttpHostLink, createAgentApi, createLogger, createRootContainer } from '@motus/core';
import { tempDir } from '../../support/index.js';
import { createFakeWorld, fakeHypervisorPlugin, fakeSpec } from '../support/fake-hypervisor.js';
import { createFakeFabric, fakeFabricPlugin } from '../support/fake-providers.js';

describe('agent protocol over HTTP (fake hypervisor and fabric)', () => {
  const quiet = createLogger({}, { write: () => undefined });
  const fabric = createFakeFabric();
  let agent: HostAgent;
  let api: ReturnType<typeof createAgentApi>;
  let link: HttpHostLink;
  let dir: { path: string; remove(): void };

  const echo = definePlugin({
    name: '@example/echo',
    version: '1.0.0',
    apiVersion: API_VERSION,
    provides: [],
    roles: ['agent'],
    setup(ctx) {
      ctx.reportFacts(() => ({ ok: true }));
      ctx.handle('echo', async (payload) => ({ payload }));
      ctx.handle('fail', async () => {
        throw new MotusError('MOTUS_E_HOST_DOWN', 'the thing is down', { thing: 1 });
      });
    },
  });

  before(async () => {
    dir = tempDir('agent-http');
    agent = await HostAgent.start({
      name: 'host-x',
      stateDir: dir.path,
      migrationAddress: '127.0.0.1',
      memoryMiB: 1024,
      plugins: [{ definition: fakeHypervisorPlugin(createFakeWorld()) }, { definition: fakeFabricPlugin(fabric) }, { definition: echo }],
      logger: quiet,
      container: createRootContainer(),
    });
    api = createAgentApi(agent, 'agent-secret', quiet);
    const url = await api.listen('127.0.0.1:0');
    link = new HttpHostLink({ name: 'host-x', url, token: 'agent-secret' });
  });

  after(async () => {
    await api.close();
    await agent.stop();
    dir.remove();
  });

  it('reports facts with plugin facts and storage kinds', async () => {
    const facts = await link.facts();
    expect(facts.name).to.equal('host-x');
    expect(facts.memoryTotalMiB).to.equal(1024);
    expect(facts.plugins['@example/echo']).to.deep.equal({ ok: true });
    expect(facts.storage).to.deep.equal(['fake-san']);
  });

  it('measures the link: a probe sink on the migration address, bytes pushed into it, the count it received', async () => {
    const sink = await link.openLinkProbe(5_000);
    expect(sink.host).to.equal('127.0.0.1');
    const result = await link.probeLink(sink, { durationMs: 5_000, maxBytes: 3 * 1024 * 1024 + 17, timeoutMs: 10_000 });
    expect(result.bytes).to.equal(3 * 1024 * 1024 + 17);
    expect(result.bytesPerSec).to.be.greaterThan(0);
    expect(result.lateMs).to.be.at.least(0);
    // One probe per sink: it closed after its sender, so a second probe is refused with a coded error.
    try {
      await link.probeLink(sink, { durationMs: 100, maxBytes: 1024, timeoutMs: 2_000 });
      expect.fail('the sink takes one probe');
    } catch (err) {
      expect((err as MotusError).code).to.equal('MOTUS_E_LINK_PROBE');
    }
    try {
      await link.probeLink({ host: '127.0.0.1', port: 0 } as never, { durationMs: 100, maxBytes: 1024, timeoutMs: 2_000 });
      expect.fail('port 0 is no sink');
    } catch (err) {
      expect((err as MotusError).code).to.equal('MOTUS_E_INVALID_REQUEST');
    }
  });

  it('carries plugin calls and their coded errors', async () => {
    expect(await link.pluginCall('@example/echo', 'echo', { n: 7 })).to.deep.equal({ payload: { n: 7 } });
    try {
      await link.pluginCall('@example/echo', 'fail', {});
      expect.fail('the handler throws');
    } catch (err) {
      expect((err as MotusError).code).to.equal('MOTUS_E_HOST_DOWN');
      expect((err as MotusError).data).to.deep.equal({ thing: 1 });
    }
    try {
      await link.pluginCall('@example/echo', 'nope', {});
      expect.fail('no such method');
    } catch (err) {
      expect((err as MotusError).code).to.equal('MOTUS_E_NOT_FOUND');
    }
  });

  it('moves storage leases on order and keeps them across the wire', async () => {
    await link.startVm({ ...fakeSpec('d1'), disks: [{ id: 'root', path: 'fake://ds1/d1.img', format: 'raw' }] });
    expect(fabric.leases.get('fake://ds1/d1.img')).to.equal('host-x');
    await link.releaseStorage('d1');
    expect(fabric.leases.has('fake://ds1/d1.img')).to.equal(false);
    await link.acquireStorage('d1');
    expect(fabric.leases.get('fake://ds1/d1.img')).to.equal('host-x');
    await link.stopVm('d1');
    expect(fabric.leases.size).to.equal(0);
  });

  it('refuses a wrong token and unknown VMs with coded errors', async () => {
    const intruder = new HttpHostLink({ name: 'host-x', url: link.url, token: 'guess' });
    try {
      await intruder.facts();
      expect.fail('wrong token');
    } catch (err) {
      expect((err as MotusError).code).to.equal('MOTUS_E_UNAUTHORIZED');
    }
    expect(await link.runState('ghost')).to.equal('absent');
    try {
      await link.stopVm('ghost');
      expect.fail('no such VM');
    } catch (err) {
      expect((err as MotusError).code).to.equal('MOTUS_E_VM_NOT_FOUND');
    }
  });
});
