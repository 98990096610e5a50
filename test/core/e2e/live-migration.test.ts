import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import type { MigrationEvent, VmInfo, VmSpec } from '@motus/sdk';
import { guestKit, parseHeartbeats, requireCommand, sleep, waitFor } from '../../support/index.js';
import { alive, qemuPidsOf, startSite, type TestSite } from '../../support/site.js';

const SITE = `
site: e2e
migration:
  maxBandwidthMiBps: 256
hosts:
  - name: host-a
    memoryMiB: 2048
  - name: host-b
    memoryMiB: 2048
  - name: host-c
    memoryMiB: 128
`;

function spec(name: string, dirty?: { mbps: number; wsMiB: number }): VmSpec {
  const kit = guestKit();
  return {
    name,
    memoryMiB: 256,
    vcpus: 1,
    boot: {
      kind: 'kernel',
      kernel: kit.kernel,
      initrd: kit.initrd,
      cmdline: kit.cmdline(dirty ? { dirtyMBps: dirty.mbps, workingSetMiB: dirty.wsMiB } : {}),
    },
  };
}

function heartbeats(vm: VmInfo) {
  return parseHeartbeats(readFileSync(vm.serialLog!, 'utf8'));
}

async function vmInfo(site: TestSite, name: string): Promise<VmInfo> {
  const vm = (await site.client.vms()).find((v) => v.name === name);
  if (!vm) throw new Error(`VM ${name} is not in the inventory`);
  return vm;
}

async function waitForBeats(vm: VmInfo, count: number, timeoutMs = 90_000) {
  return waitFor(`${count} heartbeats from ${vm.name} on ${vm.host}`, () => {
    const beats = heartbeats(vm);
    return beats.length >= count ? beats : undefined;
  }, timeoutMs, 250);
}

/** Events collapsed so runs of progress count once, for order checks; the convergence policy's steps (test/core/e2e/convergence.test.ts) left out. */
function lifecycle(events: MigrationEvent[]): string[] {
  return events.map((e) => e.type).filter((t) => t !== 'policy').filter((t, i, all) => t !== 'progress' || all[i - 1] !== 'progress');
}

describe('live migration of a real guest (all-in-one site, QEMU)', function () {
  this.timeout(600_000);
  let site: TestSite;

  before(async () => {
    requireCommand('qemu-system-x86_64', 'qemu-system-x86');
    requireCommand('setpriv', 'util-linux');
    guestKit();
    site = await startSite(SITE);
  });

  after(async () => {
    await site?.stop();
  });

  it('moves a running guest A → B → A → B → A, the heartbeat continuing with no reboot and no guest error', async () => {
    await site.client.startVm(spec('guest1', { mbps: 20, wsMiB: 32 }), 'host-a');
    let current = await vmInfo(site, 'guest1');
    const boot = (await waitForBeats(current, 5))[0]!.boot;
    for (const destination of ['host-b', 'host-a', 'host-b', 'host-a']) {
      const source = current;
      const result = await site.cli('migrate', 'guest1', '--to', destination, '--json');
      expect(result.code, result.stderr + result.stdout).to.equal(0);
      const events = result.stdout.trim().split('\n').map((l) => JSON.parse(l) as MigrationEvent);
      expect(lifecycle(events)).to.deep.equal(['requested', 'validated', 'prepared', 'progress', 'switchover', 'resumed', 'completed']);
      expect(events.find((e) => e.type === 'policy'), 'the convergence plan is announced').to.deep.include({ action: 'start' });
      const completed = events.at(-1) as Extract<MigrationEvent, { type: 'completed' }>;
      expect(completed.downtimeMs).to.be.greaterThan(0);
      expect(completed.bytes).to.be.greaterThan(1 << 20);
      expect(completed.controlPlaneMs).to.be.greaterThan(0).and.lessThan(completed.totalTimeMs);

      current = await vmInfo(site, 'guest1');
      expect([current.host, current.state]).to.deep.equal([destination, 'running']);
      await waitFor('the source QEMU to exit', () => (alive(source.pid!) ? undefined : true), 15_000);
      expect(await qemuPidsOf('guest1'), 'only the destination QEMU is left').to.deep.equal([current.pid]);
      const hosts = await site.client.hosts();
      expect(hosts.find((h) => h.name === source.host)!.memoryUsedMiB).to.equal(0);
      expect(hosts.find((h) => h.name === destination)!.memoryUsedMiB).to.equal(256);

      const lastOnSource = heartbeats(source).at(-1)!;
      const beats = await waitForBeats(current, 5);
      expect(beats.every((b) => b.boot === boot), 'same boot id: the guest did not reboot').to.equal(true);
      expect(beats[0]!.seq, 'the counter goes on where it stopped').to.be.within(lastOnSource.seq + 1, lastOnSource.seq + 2);
      expect(beats[0]!.uptime).to.be.at.least(lastOnSource.uptime);
      beats.slice(1).forEach((b, i) => {
        expect(b.seq).to.equal(beats[i]!.seq + 1);
        expect(b.uptime).to.be.at.least(beats[i]!.uptime);
      });
      for (const log of [source.serialLog!, current.serialLog!]) {
        expect(readFileSync(log, 'utf8'), `guest console ${log}`).not.to.match(/BUG:|Oops|Kernel panic|MOTUS-ERROR/);
      }
    }
    const list = await site.cli('migrations', '--json');
    const runs = JSON.parse(list.stdout) as Array<{ vm: string; state: string; requestedBy: string }>;
    expect(runs.filter((m) => m.vm === 'guest1' && m.state === 'completed')).to.have.length(4);
    await site.client.stopVm('guest1');
    await waitFor('guest1 processes to end', async () => ((await qemuPidsOf('guest1')).length === 0 ? true : undefined), 15_000);
  });

  it('rolls back when the destination QEMU is killed during pre-copy; the guest keeps running on A', async () => {
    await site.client.startVm(spec('guest2', { mbps: 40, wsMiB: 160 }), 'host-a');
    const onA = await vmInfo(site, 'guest2');
    await waitForBeats(onA, 3);
    const summary = await site.client.migrate({ vm: 'guest2', destination: 'host-b' });
    const events: MigrationEvent[] = [];
    let killed = false;
    for await (const event of site.client.migrationEvents(summary.id)) {
      events.push(event);
      if (event.type === 'progress' && !killed) {
        const destination = (await qemuPidsOf('guest2')).filter((pid) => pid !== onA.pid);
        expect(destination, 'a destination QEMU exists during pre-copy').to.have.length(1);
        process.kill(destination[0]!, 'SIGKILL');
        killed = true;
      }
    }
    expect(killed, 'the migration was still in pre-copy when the destination was killed').to.equal(true);
    expect(events.slice(-2).map((e) => e.type)).to.deep.equal(['failed', 'rolled-back']);
    const failed = events.at(-2) as Extract<MigrationEvent, { type: 'failed' }>;
    expect(failed.phase).to.equal('precopy');
    expect(failed.error.code).to.equal('MOTUS_E_MIGRATION_FAILED');
    const after = await vmInfo(site, 'guest2');
    expect([after.host, after.state]).to.deep.equal(['host-a', 'running']);
    expect(await qemuPidsOf('guest2')).to.deep.equal([onA.pid]);
    const before = heartbeats(onA).at(-1)!.seq;
    await waitFor('guest2 to keep beating on host-a', () => (heartbeats(onA).at(-1)!.seq >= before + 3 ? true : undefined), 30_000);
  });

  it('refuses impossible migrations with coded errors and starts nothing anywhere', async () => {
    const qemuBefore = (await qemuPidsOf('guest2')).sort();
    const cases: Array<[string[], number, string]> = [
      [['migrate', 'nosuchvm', '--to', 'host-b'], 3, 'MOTUS_E_VM_NOT_FOUND'],
      [['migrate', 'guest2', '--to', 'host-z'], 3, 'MOTUS_E_HOST_NOT_FOUND'],
      [['migrate', 'guest2', '--to', 'host-a'], 4, 'MOTUS_E_SAME_HOST'],
      [['migrate', 'guest2', '--to', 'host-c'], 4, 'MOTUS_E_INSUFFICIENT_MEMORY'],
    ];
    for (const [args, code, error] of cases) {
      const result = await site.cli(...args);
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).to.equal(code);
      expect(result.stderr).to.include(error);
    }
    const agentC = site.agentPids.get('host-c');
    expect(agentC, 'motusd printed the agent pids').to.be.a('number');
    process.kill(agentC!, 'SIGKILL');
    await waitFor('host-c to be reported down', async () => ((await site.client.hosts()).find((h) => h.name === 'host-c')!.state === 'disconnected' ? true : undefined), 20_000);
    const down = await site.cli('migrate', 'guest2', '--to', 'host-c');
    expect(down.code).to.equal(4);
    expect(down.stderr).to.include('MOTUS_E_HOST_DOWN');
    await sleep(500);
    expect((await qemuPidsOf('guest2')).sort()).to.deep.equal(qemuBefore);
    const vm = await vmInfo(site, 'guest2');
    expect([vm.host, vm.state]).to.deep.equal(['host-a', 'running']);
  });
});

describe('no process outlives its owner (all-in-one site, QEMU)', function () {
  this.timeout(300_000);

  it('takes the agents and their QEMUs down when motusd is killed with SIGKILL', async () => {
    requireCommand('qemu-system-x86_64', 'qemu-system-x86');
    const site = await startSite('hosts:\n  - name: host-a\n    memoryMiB: 1024\n  - name: host-b\n    memoryMiB: 1024\n');
    try {
      await site.client.startVm(spec('orphan1'), 'host-a');
      await site.client.startVm(spec('orphan2'), 'host-b');
      const qemus = [...(await qemuPidsOf('orphan1')), ...(await qemuPidsOf('orphan2'))];
      expect(qemus).to.have.length(2);
      const agents = [...site.agentPids.values()];
      expect(agents).to.have.length(2);
      process.kill(site.serverPid, 'SIGKILL');
      await waitFor('agents and QEMUs to end', () => ([...agents, ...qemus].some(alive) ? undefined : true), 30_000, 200);
    } finally {
      await site.stop();
    }
  });
});
