import { expect } from 'chai';
import { MotusClient, MotusError, type MigrationEvent } from '@motus/sdk';
import { createEmbeddedPlatform, createLogger, createServerApi, runCli, type EmbeddedPlatform } from '@motus/core';
import { tempDir } from '../../support/index.js';
import { createFakeWorld, fakeHypervisorPlugin, fakeSpec } from '../support/fake-hypervisor.js';
import { Capture } from '../support/capture.js';

describe('server API, SDK client and CLI (fake hypervisor)', () => {
  let platform: EmbeddedPlatform;
  let dir: { path: string; remove(): void };
  let api: ReturnType<typeof createServerApi>;
  let url: string;
  const token = 'test-token-123';

  before(async () => {
    dir = tempDir('api');
    platform = await createEmbeddedPlatform({
      site: { hosts: [{ name: 'host-a', memoryMiB: 4096 }, { name: 'host-b', memoryMiB: 4096 }], plugins: [] },
      stateDir: dir.path,
      extraPlugins: [{ definition: fakeHypervisorPlugin(createFakeWorld()) }],
    });
    api = createServerApi(platform.server, { apiToken: token, agentToken: 'agent-token', logger: createLogger({}, { write: () => undefined }) });
    url = await api.listen('127.0.0.1:0');
  });

  after(async () => {
    await api.close();
    await platform.stop();
    dir.remove();
  });

  async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const stdout = new Capture();
    const stderr = new Capture();
    const code = await runCli(args, { stdout, stderr, env: { MOTUS_URL: url, MOTUS_TOKEN: token, USER: 'carol' } });
    return { code, stdout: stdout.text, stderr: stderr.text };
  }

  it('answers 401 without the token and 404 on unknown paths, with coded JSON errors', async () => {
    const noAuth = await fetch(`${url}/v1/hosts`);
    expect(noAuth.status).to.equal(401);
    expect(((await noAuth.json()) as { error: { code: string } }).error.code).to.equal('MOTUS_E_UNAUTHORIZED');
    const wrong = await fetch(`${url}/v1/hosts`, { headers: { authorization: 'Bearer nope' } });
    expect(wrong.status).to.equal(401);
    const unknown = await fetch(`${url}/v1/nothing`, { headers: { authorization: `Bearer ${token}` } });
    expect(unknown.status).to.equal(404);
    const health = await fetch(`${url}/v1/health`);
    expect(health.status).to.equal(200);
  });

  it('answers 400 naming the field for malformed requests, and loses nothing', async () => {
    const post = (body: string) => fetch(`${url}/v1/migrations`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body });
    const notJson = await post('{"vm": ');
    expect(notJson.status).to.equal(400);
    const badField = await post(JSON.stringify({ vm: 'x', destination: 'host-b', priority: 'urgent' }));
    expect(badField.status).to.equal(400);
    expect(((await badField.json()) as { error: { message: string } }).error.message).to.include('priority');
    const badSpec = await fetch(`${url}/v1/vms`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
      body: JSON.stringify({ host: 'host-a', spec: { name: 'bad name!', memoryMiB: 1, vcpus: 0, boot: { kind: 'floppy' } } }),
    });
    expect(badSpec.status).to.equal(400);
    const message = ((await badSpec.json()) as { error: { message: string } }).error.message;
    expect(message).to.include('spec.name').and.to.include('spec.memoryMiB').and.to.include('spec.vcpus');
    expect(await platform.vms()).to.deep.equal([]);
  });

  it('starts a VM, migrates it with the SDK client and streams its events', async () => {
    const client = new MotusClient({ url, token });
    const vm = await client.startVm(fakeSpec('web1'), 'host-a');
    expect(vm.host).to.equal('host-a');
    const summary = await client.migrate({ vm: 'web1', destination: 'host-b' });
    expect(['running', 'queued']).to.include(summary.state);
    expect(summary.requestedBy, 'recorded as the token\'s user').to.equal('admin');
    const events: MigrationEvent[] = [];
    for await (const event of client.migrationEvents(summary.id)) events.push(event);
    expect(events[0]!.type).to.equal('requested');
    expect(events.at(-1)!.type).to.equal('completed');
    expect((await client.migration(summary.id)).state).to.equal('completed');
    expect((await client.vms())[0]!.host).to.equal('host-b');
    try {
      await client.migrate({ vm: 'web1', destination: 'host-b' });
      expect.fail('same host');
    } catch (err) {
      expect(err).to.be.instanceOf(MotusError);
      expect((err as MotusError).code).to.equal('MOTUS_E_SAME_HOST');
    }
  });

  it('drives the site from the CLI with JSON output and meaningful exit codes', async () => {
    const hosts = await cli('hosts', '--json');
    expect(hosts.code).to.equal(0);
    expect((JSON.parse(hosts.stdout) as { name: string }[]).map((h) => h.name)).to.deep.equal(['host-a', 'host-b']);
    const start = await cli('vm', 'start', 'cli1', '--host', 'host-a', '--kernel', '/k', '--memory', '128', '--json');
    expect(start.code, start.stderr).to.equal(0);
    const migrate = await cli('migrate', 'cli1', '--to', 'host-b', '--json');
    expect(migrate.code, migrate.stderr).to.equal(0);
    const lines = migrate.stdout.trim().split('\n').map((l) => JSON.parse(l) as MigrationEvent);
    expect(lines[0]!.type).to.equal('requested');
    expect((lines[0] as Extract<MigrationEvent, { type: 'requested' }>).requestedBy).to.equal('admin');
    expect(lines.at(-1)!.type).to.equal('completed');
    const human = await cli('migrate', 'cli1', '--to', 'host-a');
    expect(human.code).to.equal(0);
    expect(human.stdout).to.match(/completed: downtime \d+ ms/);
    const list = await cli('migrations');
    expect(list.stdout).to.include('cli1').and.to.include('completed');
    expect((await cli('migrate', 'ghost', '--to', 'host-b')).code).to.equal(3);
    expect((await cli('migrate', 'cli1', '--to', 'host-a')).code).to.equal(4);
    const recommend = await cli('migrate', 'cli1', '--recommend');
    expect(recommend.code, recommend.stderr).to.equal(0);
    expect(recommend.stdout).to.match(/destinations for cli1 \(on host-a, cluster default/).and.match(/1\. host-b {2}score [\d.]+ {2}\(best\)/).and.match(/cost: ~[\d.]+ s to copy/);
    const best = await cli('migrate', 'cli1');
    expect(best.code, best.stderr).to.equal(0);
    expect(best.stdout).to.match(/cli1: best destination host-b/).and.match(/completed: downtime/);
    expect((await cli('migrate')).code).to.equal(2);
    expect((await cli('frobnicate')).code).to.equal(2);
    const unreachable = await runCli(['hosts'], { stdout: new Capture(), stderr: new Capture(), env: { MOTUS_URL: 'http://127.0.0.1:9', MOTUS_TOKEN: 'x' } });
    expect(unreachable).to.equal(5);
    const stop = await cli('vm', 'stop', 'cli1');
    expect(stop.code).to.equal(0);
    expect((await platform.vms()).find((v) => v.name === 'cli1')!.state).to.equal('stopped');
  });
});
