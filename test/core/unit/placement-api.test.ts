import { expect } from 'chai';
import { MotusClient, MotusError } from '@motus/sdk';
import { createEmbeddedPlatform, createLogger, createServerApi, runCli, type EmbeddedPlatform } from '@motus/core';
import { tempDir, waitFor } from '../../support/index.js';
import { createFakeWorld, fakeHypervisorPlugin, fakeSpec } from '../support/fake-hypervisor.js';
import { Capture } from '../support/capture.js';

async function refusal(promise: Promise<unknown>): Promise<MotusError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'the call was refused').to.be.instanceOf(MotusError);
  return err as MotusError;
}

/**
 * Initial placement (partial mode) and the rules held on an operator's own
 * destination, through the server API, the SDK client and the CLI, on a site of
 * fake hosts: cluster lab (host-a, host-b, host-c) and cluster ops (host-d, manual).
 */
describe('placement: initial placement and rules on --to (fake hypervisor)', () => {
  let platform: EmbeddedPlatform;
  let dir: { path: string; remove(): void };
  let api: ReturnType<typeof createServerApi>;
  let client: MotusClient;
  let url: string;
  const token = 'placement-token-123';

  before(async () => {
    dir = tempDir('placement-api');
    const host = (name: string) => ({ name, memoryMiB: 2048 });
    platform = await createEmbeddedPlatform({
      site: {
        hosts: [host('host-a'), host('host-b'), host('host-c'), host('host-d')],
        plugins: [],
        placement: {
          clusters: [
            { name: 'lab', hosts: ['host-a', 'host-b', 'host-c'], balancing: { mode: 'partial' } },
            { name: 'ops', hosts: ['host-d'], balancing: { mode: 'manual' } },
          ],
          rules: [
            { name: 'spread', kind: 'anti-affinity', vms: ['web1', 'web2'] },
            { name: 'together', kind: 'affinity', vms: ['app', 'db'] },
            { name: 'pin', kind: 'vm-host', vms: ['pinned'], hosts: ['host-c'], mode: 'must' },
          ],
        },
      },
      stateDir: dir.path,
      extraPlugins: [{ definition: fakeHypervisorPlugin(createFakeWorld()) }],
    });
    api = createServerApi(platform.server, { apiToken: token, agentToken: 'agent-token', logger: createLogger({}, { write: () => undefined }) });
    url = await api.listen('127.0.0.1:0');
    client = new MotusClient({ url, token });
  });

  after(async () => {
    await api?.close();
    await platform?.stop();
    dir.remove();
  });

  async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const stdout = new Capture();
    const stderr = new Capture();
    const code = await runCli(args, { stdout, stderr, env: { MOTUS_URL: url, MOTUS_TOKEN: token } });
    return { code, stdout: stdout.text, stderr: stderr.text };
  }

  const hostOf = async (vm: string) => (await client.vms()).find((v) => v.name === vm)?.host;

  it('never places a VM on a host in maintenance', async () => {
    await client.enterMaintenance('host-b', false);
    await waitFor('host-b in maintenance', async () => ((await client.hosts()).find((h) => h.name === 'host-b')!.state === 'maintenance' ? true : undefined), 30_000, 50);
    try {
      const ranking = await client.recommendStart(fakeSpec('later'));
      expect(ranking.initial).to.equal(true);
      expect(ranking.candidates.map((c) => c.host)).to.not.include('host-b');
      expect(ranking.refused.find((r) => r.host === 'host-b')!.refusals.map((r) => r.constraint)).to.include('state');
      for (const name of ['later1', 'later2', 'later3']) expect((await client.startVm(fakeSpec(name, 128))).host).to.not.equal('host-b');
    } finally {
      for (const name of ['later1', 'later2', 'later3']) await client.stopVm(name).catch(() => undefined);
      await client.exitMaintenance('host-b');
    }
  });

  it('places a VM started without a host on the best host of a partial cluster, under every hard rule, and audits why', async () => {
    await client.startVm(fakeSpec('web1'), 'host-a');
    const web2 = await client.startVm(fakeSpec('web2'));
    expect(web2.placement).to.include({ cluster: 'lab', mode: 'partial', host: web2.host });
    expect(['host-b', 'host-c'], 'not beside web1 (spread), not in the manual cluster').to.include(web2.host);
    expect(web2.placement!.reasons.join('\n')).to.match(/balance: cluster lab imbalance/).and.match(/cost: none \(a new VM starts there/);

    const app = await client.startVm(fakeSpec('app'));
    const db = await client.startVm(fakeSpec('db'));
    expect(db.host, 'affinity: db joins app').to.equal(app.host);
    expect((await client.startVm(fakeSpec('pinned'))).host).to.equal('host-c');

    const trail = await client.audit({ vm: 'web2' });
    const record = trail.find((r) => r.action === 'placement.initial')!;
    expect(record).to.include({ outcome: `placed on ${web2.host}`, destination: web2.host });
    expect(JSON.stringify(record.detail)).to.include('rule spread keeps web2 apart from web1, which run on host-a');

    const big = await refusal(client.startVm(fakeSpec('huge', 4096)));
    expect(big.code).to.equal('MOTUS_E_NO_DESTINATION');
    expect(big.message).to.match(/host-a: host host-a has \d+ MiB free; VM huge needs 4096 MiB/);
    expect(await hostOf('huge')).to.equal(undefined);
  });

  it('--recommend ranks every host for a new VM and starts nothing', async () => {
    const out = await cli('vm', 'start', 'web3', '--recommend', '--kernel', '/nonexistent/vmlinuz', '--memory', '128');
    expect(out.code, out.stderr).to.equal(0);
    expect(out.stdout).to.match(/hosts for new VM web3 \(initial placement/).and.match(/1\. host-\w {2}score [\d.]+ {2}\(best\)/).and.match(/cost: none/);
    expect(await hostOf('web3')).to.equal(undefined);
  });

  it('in a manual cluster refuses to place, listing the ranked hosts; --host still works', async () => {
    await client.configureCluster('lab', { mode: 'manual' });
    try {
      const err = await refusal(client.startVm(fakeSpec('web4', 128)));
      expect(err.code).to.equal('MOTUS_E_PLACEMENT_MANUAL');
      expect(err.message).to.match(/manual mode, where Motus only recommends: start it with --host HOST/).and.match(/1\. host-\w \(cluster (lab|ops)\) score [\d.]+/);
      expect((err.data as { ranking: { candidates: unknown[] } }).ranking.candidates.length).to.be.greaterThan(0);
      const out = await cli('vm', 'start', 'web4', '--kernel', '/nonexistent/vmlinuz', '--memory', '128');
      expect(out.code).to.equal(4);
      expect(out.stderr).to.match(/MOTUS_E_PLACEMENT_MANUAL/);
      expect(await hostOf('web4')).to.equal(undefined);
      const placed = await cli('vm', 'start', 'web4', '--host', 'host-d', '--kernel', '/nonexistent/vmlinuz', '--memory', '128');
      expect(placed.code, placed.stderr).to.equal(0);
      expect(placed.stdout).to.not.match(/placed by the wizard/);
      expect(await hostOf('web4')).to.equal('host-d');
    } finally {
      await client.configureCluster('lab', { mode: 'partial' });
    }
    const out = await cli('vm', 'start', 'web5', '--kernel', '/nonexistent/vmlinuz', '--memory', '128');
    expect(out.code, out.stderr).to.equal(0);
    expect(out.stdout).to.match(/started web5 on host-[abc] .*\nplaced by the wizard \(cluster lab, partial\): score [\d.]+/);
  });

  it('refuses a migration --to a host that breaks a rule or leaves the cluster, naming the rule; --force goes and is audited', async () => {
    const web1 = (await hostOf('web1'))!;
    const web2 = (await hostOf('web2'))!;
    const spread = await refusal(client.migrate({ vm: 'web2', destination: web1 }));
    expect(spread.code).to.equal('MOTUS_E_PLACEMENT_RULE');
    expect(spread.message).to.match(new RegExp(`moving web2 to ${web1} breaks rule spread: rule spread keeps web2 apart from web1, which run on ${web1}`));
    expect(spread.data).to.deep.include({ vm: 'web2', host: web1, rules: ['spread'] });

    const dbHost = await hostOf('db');
    const apart = await cli('migrate', 'db', '--to', ['host-a', 'host-b', 'host-c'].find((h) => h !== dbHost)!);
    expect(apart.code).to.equal(4);
    expect(apart.stderr).to.match(/MOTUS_E_PLACEMENT_RULE: moving db to host-\w breaks rule together/);

    const pinned = await refusal(client.migrate({ vm: 'pinned', destination: 'host-a' }));
    expect(pinned.message).to.match(/breaks rule pin: rule pin: pinned must run on host-c/);
    const cluster = await refusal(client.migrate({ vm: 'web1', destination: 'host-d' }));
    expect(cluster.code).to.equal('MOTUS_E_PLACEMENT_RULE');
    expect(cluster.message).to.match(/breaks its cluster: host host-d is in cluster ops; VM web1 runs in cluster lab/);
    expect(await hostOf('web2'), 'nothing moved').to.equal(web2);

    const trail = await client.audit({ vm: 'web2' });
    expect(trail.some((r) => r.action === 'migration.request' && r.outcome === 'MOTUS_E_PLACEMENT_RULE')).to.equal(true);

    const forced = await cli('migrate', 'web2', '--to', web1, '--force');
    expect(forced.code, forced.stdout + forced.stderr).to.equal(0);
    expect(await hostOf('web2')).to.equal(web1);
    const override = (await client.audit({ vm: 'web2' })).find((r) => r.action === 'placement.override')!;
    expect(override).to.include({ outcome: 'rules ignored', destination: web1 });
    expect(override.detail).to.deep.include({ rules: ['spread'] });
    expect((await cli('migrate', 'web2', '--force')).code, '--force needs --to').to.equal(2);
  });

  it('holds a scheduled migration to the rules when it runs: refused with the rule, nothing moved', async () => {
    const dbHost = (await hostOf('db'))!;
    const other = ['host-a', 'host-b', 'host-c'].find((h) => h !== dbHost)!;
    const schedule = await client.createSchedule({ target: { vms: ['db'] }, destination: other, at: new Date(Date.now() + 800).toISOString() });
    const refused = await waitFor(
      'the scheduled run refused',
      async () => (await client.audit({ vm: 'db' })).find((r) => r.action === 'migration.request' && r.outcome === 'MOTUS_E_PLACEMENT_RULE' && r.destination === other),
      10_000,
      50,
    );
    expect(refused.detail).to.deep.include({ rules: ['together'] });
    expect((await client.tasks()).some((t) => t.vm === 'db' && t.destination === other), 'no task was made').to.equal(false);
    expect(await hostOf('db')).to.equal(dbHost);
    await client.deleteSchedule(schedule.id).catch(() => undefined);
  });

  it('refuses a host in maintenance as a destination, even with --force', async () => {
    const appHost = await hostOf('app');
    const target = ['host-a', 'host-b', 'host-c'].find((h) => h !== appHost)!;
    await client.enterMaintenance(target, true);
    await waitFor(`${target} in maintenance`, async () => ((await client.hosts()).find((h) => h.name === target)!.state === 'maintenance' ? true : undefined), 60_000, 50);
    try {
      const out = await cli('migrate', 'app', '--to', target, '--force');
      expect(out.code).to.equal(4);
      expect(out.stderr).to.match(/in maintenance and takes no VMs/);
      expect(await hostOf('app')).to.equal(appHost);
    } finally {
      await client.exitMaintenance(target);
    }
  });
});
