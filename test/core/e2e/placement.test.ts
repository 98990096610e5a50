import { expect } from 'chai';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MotusClient, VmInfo, VmSpec } from '@motus/sdk';
import { guestKit, requireCommand, tempDir, waitFor } from '../../support/index.js';
import { qemuPidsOf, startSite, type TestSite } from '../../support/site.js';

function spec(name: string): VmSpec {
  const kit = guestKit();
  return { name, memoryMiB: 128, vcpus: 1, boot: { kind: 'kernel', kernel: kit.kernel, initrd: kit.initrd, cmdline: kit.cmdline({}) } };
}

async function where(client: MotusClient): Promise<Record<string, string>> {
  const vms = await client.vms();
  return Object.fromEntries(vms.filter((v: VmInfo) => v.state === 'running' || v.state === 'migrating').map((v) => [v.name, v.host]));
}

/** An EDAC memory controller under a host's sysRoot, as the kernel lays it out. */
function setEcc(sysRoot: string, uncorrectable: number): void {
  const mc = join(sysRoot, 'devices/system/edac/mc/mc0');
  mkdirSync(mc, { recursive: true });
  writeFileSync(join(mc, 'ce_count'), '0\n');
  writeFileSync(join(mc, 'ue_count'), `${uncorrectable}\n`);
}

/**
 * One site of three hosts (all-in-one, real QEMU guests) proving the placement
 * features end to end: the wizard's ranking with reasons, maintenance mode emptying
 * a host (and refusing when a VM has nowhere to go), an injected ECC error degrading
 * a host that is then evacuated, and automatic balancing moving a VM off a host
 * whose load is injected through the agent's metrics test hook; initial placement
 * refused in a manual cluster and made in a partial one (beside an affinity peer),
 * and a migration --to that would split the pair refused with the rule's name.
 */
describe('placement with real guests on three hosts (all-in-one site, QEMU)', function () {
  this.timeout(900_000);
  let site: TestSite;
  const sys = tempDir('placement-sys');

  before(async () => {
    requireCommand('qemu-system-x86_64', 'qemu-system-x86');
    requireCommand('setpriv', 'util-linux');
    guestKit();
    for (const host of ['a', 'b', 'c']) setEcc(join(sys.path, host), 0);
    site = await startSite(`
site: placement
migration:
  maxBandwidthMiBps: 64
hosts:
  - { name: host-a, memoryMiB: 2048, sysRoot: ${join(sys.path, 'a')} }
  - { name: host-b, memoryMiB: 2048, sysRoot: ${join(sys.path, 'b')} }
  - { name: host-c, memoryMiB: 2048, sysRoot: ${join(sys.path, 'c')} }
placement:
  metricsIntervalSeconds: 1
  clusters:
    - name: lab
      hosts: [host-a, host-b, host-c]
      balancing: { mode: manual, threshold: 3, intervalSeconds: 2 }
  rules:
    - { name: spread, kind: anti-affinity, vms: [web1, web2] }
    - { name: pair, kind: affinity, vms: [app1, db1] }
  health:
    # The three agents share one loaded machine: its CPU and missed heartbeats
    # are not the signals under test here (the unit tests cover them).
    missedHeartbeats: 0
    overloadSeconds: 3600
`);
    await site.client.startVm(spec('web1'), 'host-a');
    await site.client.startVm(spec('app1'), 'host-a');
    await site.client.startVm(spec('web2'), 'host-b');
    await waitFor(
      'metric samples of every VM',
      async () => {
        const samples = await Promise.all(['host-a', 'host-b'].map((h) => site.client.hostUsage(h)));
        return samples.every((s) => s.length >= 3 && s.at(-1)!.vms.every((v) => v.rssMiB > 0)) && samples[0]!.at(-1)!.vms.length === 2 ? true : undefined;
      },
      60_000,
      250,
    );
  });

  after(async () => {
    await site?.stop();
    sys.remove();
  });

  it('reports host and VM use from /proc and QEMU every second', async () => {
    const samples = await site.client.hostUsage('host-a');
    const last = samples.at(-1)!;
    expect(last.cpus).to.be.greaterThan(0);
    expect(last.memoryTotalMiB).to.be.greaterThan(last.memoryUsedMiB);
    expect(last.vms.map((v) => v.name).sort()).to.deep.equal(['app1', 'web1']);
    for (const vm of last.vms) {
      expect(vm.rssMiB, `${vm.name} resident memory`).to.be.within(10, 512);
      expect(vm.cpuUsed).to.be.at.least(0);
    }
    expect(Date.parse(last.at) - Date.parse(samples.at(-3)!.at)).to.be.within(1_000, 10_000);
  });

  it('ranks destinations with a score and reasons, and lists the hosts that cannot take the VM with theirs', async () => {
    const ranking = await site.client.placement('web1');
    expect(ranking).to.include({ vm: 'web1', source: 'host-a', cluster: 'lab' });
    expect(ranking.candidates.map((c) => c.host)).to.deep.equal(['host-c']);
    const reasons = ranking.candidates[0]!.reasons.join('\n');
    expect(reasons).to.match(/balance: cluster lab imbalance/).and.match(/memory: \d+ MiB of 2048 MiB free after the move/).and.match(/cost: ~[\d.]+ s to copy \d+ MiB at 64 MiB\/s/).and.match(/concurrency: 0 of 8/);
    const refused = Object.fromEntries(ranking.refused.map((r) => [r.host, r.refusals.map((x) => x.reason)]));
    expect(refused['host-b']).to.deep.equal(['rule spread keeps web1 apart from web2, which run on host-b']);
    expect(refused['host-a']).to.deep.equal(['VM web1 already runs on host-a']);
    const cli = await site.cli('migrate', 'app1', '--recommend');
    expect(cli.code, cli.stderr).to.equal(0);
    expect(cli.stdout).to.match(/destinations for app1 \(on host-a, cluster lab/).and.match(/1\. host-[bc] {2}score [\d.]+ {2}\(best\)/).and.match(/2\. host-[bc] {2}score/);
  });

  it('maintenance mode empties a host under the limits, then refuses one whose VM has nowhere to go', async () => {
    const enter = await site.cli('host', 'maintenance', 'enter', 'host-a');
    expect(enter.code, enter.stdout + enter.stderr).to.equal(0);
    expect(enter.stdout).to.match(/maintenance of host-a: done/);
    const hosts = Object.fromEntries((await site.client.hosts()).map((h) => [h.name, h.state]));
    expect(hosts['host-a']).to.equal('maintenance');
    const layout = await where(site.client);
    expect(Object.values(layout)).to.not.include('host-a');
    expect(layout.web1, 'anti-affinity sends web1 away from web2').to.equal('host-c');
    for (const vm of ['web1', 'app1']) expect((await qemuPidsOf(vm)).length, `one QEMU of ${vm}`).to.equal(1);
    const trail = await site.client.audit({ host: 'host-a' });
    expect(trail.map((r) => r.action)).to.include.members(['host.maintenance.enter', 'host.maintenance.entered']);

    // host-c holds web1, which may go neither to host-b (web2 is there) nor to host-a (maintenance).
    const blocked = await site.cli('host', 'maintenance', 'enter', 'host-c');
    expect(blocked.code).to.equal(4);
    expect(blocked.stderr).to.match(/MOTUS_E_EVACUATION_BLOCKED: host host-c cannot be emptied/).and.match(/web1: .*host-b: rule spread keeps web1 apart from web2/);
    expect(await where(site.client)).to.deep.equal(layout);

    const exit = await site.cli('host', 'maintenance', 'exit', 'host-a');
    expect(exit.code, exit.stderr).to.equal(0);
    expect((await site.client.hosts()).find((h) => h.name === 'host-a')!.state).to.equal('connected');
  });

  it('an ECC error injected under a host\'s sysfs root degrades it; its VMs are evacuated and the audit trail says why', async () => {
    const before = await where(site.client);
    const onC = Object.keys(before).filter((vm) => before[vm] === 'host-c');
    expect(onC).to.include('web1');
    setEcc(join(sys.path, 'c'), 1);
    await waitFor('host-c degraded', async () => ((await site.client.hosts()).find((h) => h.name === 'host-c')!.state === 'degraded' ? true : undefined), 30_000, 200);
    const health = await site.client.hostHealth('host-c');
    expect(health.signals.map((s) => s.kind)).to.deep.equal(['ecc']);
    expect(health.signals[0]!.detail).to.equal('1 uncorrectable memory errors (EDAC)');
    const evacuation = await waitFor('host-c evacuated', async () => {
      const e = await site.client.evacuation('host-c');
      return e.state === 'evacuating' ? undefined : e;
    }, 300_000, 500);
    expect(evacuation).to.include({ why: 'degraded', state: 'done', by: 'motusd' });
    const after = await where(site.client);
    for (const vm of onC) expect(after[vm], vm).to.not.equal('host-c');
    expect(after.web1).to.not.equal(after.web2);
    const trail = await site.client.audit({ host: 'host-c' });
    const degraded = trail.find((r) => r.action === 'host.degraded')!;
    expect(JSON.stringify(degraded.detail)).to.include('uncorrectable memory errors');
    const evacuate = trail.find((r) => r.action === 'host.evacuate')!;
    expect(evacuate.detail!.why).to.deep.equal(['1 uncorrectable memory errors (EDAC)']);
    expect(trail.map((r) => r.action)).to.include('host.evacuated');
    const tasks = (await site.client.tasks()).filter((t) => onC.includes(t.vm) && t.requestedBy === 'motusd');
    expect(tasks.map((t) => t.priority)).to.include('high');

    setEcc(join(sys.path, 'c'), 0);
    await waitFor('host-c back in service', async () => ((await site.client.hosts()).find((h) => h.name === 'host-c')!.state === 'connected' ? true : undefined), 30_000, 200);
  });

  it('automatic balancing moves a VM off a host whose load is injected through the agent metrics hook', async () => {
    // Two busy VMs on one host: moving one of them halves that host's excess (one alone would only move it).
    let layout = await where(site.client);
    const busiest = layout.web1!;
    if (layout.app1 !== busiest) {
      const task = await site.client.migrate({ vm: 'app1', destination: busiest });
      await waitFor('app1 beside web1', async () => ((await site.client.task(task.id)).state === 'completed' ? true : undefined), 300_000, 500);
      layout = await where(site.client);
    }
    const victims = ['web1', 'app1'];
    expect([layout.web1, layout.app1]).to.deep.equal([busiest, busiest]);
    // The test hook of the agent: measured figures replaced, as if the guests burned CPU.
    const overridePath = join(site.stateDir, 'agents', busiest, 'metrics-override.json');
    writeFileSync(overridePath, JSON.stringify({ vms: Object.fromEntries(victims.map((vm) => [vm, { cpuUsed: 1.9 }])) }));
    try {
      await waitFor('the injected load in the samples', async () => ((await site.client.hostUsage(busiest)).slice(-5).every((s) => s.overridden) ? true : undefined), 30_000, 250);
      const plan = await site.client.balance('lab', false);
      expect(plan.imbalanceBefore).to.be.greaterThan(plan.tolerance);
      expect(plan.moves.length).to.be.greaterThan(0);
      expect(plan.moves[0]!.from).to.equal(busiest);
      const configured = await site.client.configureCluster('lab', { mode: 'automatic', threshold: 3, intervalSeconds: 2 });
      expect(configured.mode).to.equal('automatic');
      const moved = await waitFor(
        'the balancer to move a VM off the loaded host',
        async () => {
          const now = await where(site.client);
          const gone = victims.filter((vm) => now[vm] !== busiest);
          const running = (await site.client.tasks()).some((t) => t.state === 'running' || t.state === 'queued');
          return gone.length > 0 && !running ? { gone, now } : undefined;
        },
        300_000,
        500,
      );
      expect(moved.now.web1).to.not.equal(moved.now.web2);
      const trail = await site.client.audit({ user: 'motus-balancer' });
      const move = trail.find((r) => r.action === 'placement.balance.move' && moved.gone.includes(r.vm!))!;
      expect(move).to.include({ source: busiest });
      expect(String(move.detail!.reason)).to.match(/balances load: from host-/);
      const done = (await site.client.tasks()).find((t) => t.id === move.task)!;
      expect(done).to.include({ state: 'completed', requestedBy: 'motus-balancer' });
    } finally {
      await site.client.configureCluster('lab', { mode: 'manual' });
      rmSync(overridePath, { force: true });
    }
  });

  it('places a VM started without a host in a partial cluster (beside its affinity peer), refuses in manual mode, and refuses a --to that splits the pair', async () => {
    const specFile = join(sys.path, 'db1.json');
    writeFileSync(specFile, JSON.stringify(spec('db1')));
    const appHost = (await where(site.client)).app1!;
    const manual = await site.cli('vm', 'start', 'db1', '--spec', specFile);
    expect(manual.code, manual.stdout + manual.stderr).to.equal(4);
    expect(manual.stderr).to.match(/MOTUS_E_PLACEMENT_MANUAL: VM db1 has no host/).and.match(new RegExp(`1\\. ${appHost} \\(cluster lab\\) score`));
    const recommend = await site.cli('vm', 'start', 'db1', '--recommend', '--spec', specFile);
    expect(recommend.code, recommend.stderr).to.equal(0);
    expect(recommend.stdout).to.match(new RegExp(`1\\. ${appHost} {2}score [\\d.]+ {2}\\(best\\)`)).and.match(/rule pair keeps db1 with app1/);
    expect((await where(site.client)).db1).to.equal(undefined);

    await site.client.configureCluster('lab', { mode: 'partial' });
    try {
      const started = await site.cli('vm', 'start', 'db1', '--spec', specFile);
      expect(started.code, started.stdout + started.stderr).to.equal(0);
      expect(started.stdout).to.match(new RegExp(`started db1 on ${appHost} `)).and.match(/placed by the wizard \(cluster lab, partial\)/);
      expect((await qemuPidsOf('db1')).length).to.equal(1);
      const record = (await site.client.audit({ vm: 'db1' })).find((r) => r.action === 'placement.initial' && r.outcome === `placed on ${appHost}`);
      expect(record, 'placement.initial in the audit trail').to.not.equal(undefined);

      const other = ['host-a', 'host-b', 'host-c'].find((h) => h !== appHost)!;
      const split = await site.cli('migrate', 'db1', '--to', other);
      expect(split.code, split.stdout + split.stderr).to.equal(4);
      expect(split.stderr).to.match(new RegExp(`MOTUS_E_PLACEMENT_RULE: moving db1 to ${other} breaks rule pair`));
      expect((await where(site.client)).db1).to.equal(appHost);
    } finally {
      await site.client.configureCluster('lab', { mode: 'manual' });
    }
  });
});
