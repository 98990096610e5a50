import { expect } from 'chai';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { MigrationEvent, VmInfo, VmSpec } from '@motus/sdk';
import { HeartbeatClock, guestKit, heartbeatBreaks, parseGuestSerial, readSerial, requireCommand, waitFor } from '../../support/index.js';
import { qemuPidsOf, startSite, twoHostSiteYaml, type TestSite } from '../../support/site.js';

/** A 256 MiB/s link (the site's per-migration cap) and a guest that dirties more than that. */
const SITE = twoHostSiteYaml('e2e-converge', 256);

function hotWriter(): VmSpec {
  const kit = guestKit();
  return {
    name: 'hot',
    memoryMiB: 256,
    vcpus: 1,
    // 1024 MiB/s of pages over 128 MiB, a 10 ms heartbeat to see the pause.
    boot: { kind: 'kernel', kernel: kit.kernel, initrd: kit.initrd, cmdline: kit.cmdline({ dirtyMBps: 1024, workingSetMiB: 128, heartbeatMs: 10 }) },
  };
}

type Policy = Extract<MigrationEvent, { type: 'policy' }>;
type Completed = Extract<MigrationEvent, { type: 'completed' }>;

describe('convergence of a hot writer (all-in-one site, QEMU)', function () {
  this.timeout(600_000);
  let site: TestSite;
  let clock: HeartbeatClock | undefined;

  before(async () => {
    requireCommand('qemu-system-x86_64', 'qemu-system-x86');
    guestKit();
    site = await startSite(SITE);
  });

  after(async () => {
    clock?.stop();
    await site?.stop();
  });

  it('moves a guest dirtying memory faster than the link: the policy steps in with its reasons, the migration completes, no rollback', async () => {
    await site.client.startVm(hotWriter(), 'host-a');
    const source = (await site.client.vms()).find((v) => v.name === 'hot')! as VmInfo;
    await waitFor('the hot writer to run', () => {
      const serial = parseGuestSerial(readSerial(source.serialLog!));
      if (serial.errors.length > 0) throw new Error(`guest error: ${serial.errors.join('; ')}`);
      return serial.dirtier.length > 0 && serial.heartbeats.length >= 50 ? true : undefined;
    }, 180_000, 200);
    clock = new HeartbeatClock();
    clock.watch(source.serialLog!);
    clock.watchFolder(join(site.stateDir, 'agents', 'host-b', 'vms'));

    const t0 = performance.now();
    const summary = await site.client.migrate({ vm: 'hot', destination: 'host-b' });
    const events: MigrationEvent[] = [];
    for await (const event of site.client.migrationEvents(summary.id)) events.push(event);
    const types = events.map((e) => e.type);
    expect(types, 'no failure, no rollback').to.not.include.members(['failed', 'rolled-back', 'cancelled']);
    expect(types.at(-1)).to.equal('completed');

    const policy = events.filter((e): e is Policy => e.type === 'policy');
    for (const step of policy) console.log(`      policy: ${step.action} (${step.reason})`);
    expect(policy.every((p) => p.reason.length > 20), 'every step says why').to.equal(true);
    // The plan: the site's 100 ms target, the bandwidth from the link probe (the 256 MiB/s cap when the probe read
    // as much or was starved of CPU), and why there is no dirty limit under TCG.
    expect(policy[0]).to.deep.include({ action: 'start' });
    expect(policy[0]!.values).to.deep.include({ switchoverTargetMs: 100, throttlePct: 0 });
    const bandwidth = policy[0]!.values!.maxBandwidthMiBps as number;
    expect(bandwidth).to.be.greaterThan(0).and.at.most(256);
    if (bandwidth < 256) expect(policy[0]!.reason).to.match(/measured link, below the 256 MiB\/s site cap: probe: /);
    else expect(policy[0]!.reason).to.match(/256 MiB\/s \(site cap/);
    expect(policy.find((p) => p.action === 'no-dirty-limit')?.reason).to.match(/unavailable under tcg/);
    // The hot writer made the policy act during pre-copy, on measured pressure or compressible re-sent pages.
    const prepared = types.indexOf('prepared');
    const steps = policy.filter((p) => events.indexOf(p) > prepared && p.action !== 'measure-link');
    expect(steps.map((s) => s.action), 'policy steps during pre-copy').to.include.oneOf(['enable-throttle', 'keep-xbzrle']);
    for (const step of steps.filter((s) => /throttle/.test(s.action))) expect(step.reason).to.match(/dirty rate stayed above half the link/);

    const completed = events.at(-1) as Completed;
    console.log(
      `      completed: downtime ${completed.downtimeMs} ms, total ${completed.totalTimeMs} ms, ${completed.bytesPerMemory}× memory, ${completed.rounds} rounds, ` +
        `throttle ${completed.throttlePct}%, target ${completed.switchoverTargetMs} ms`,
    );
    expect(completed.downtimeMs).to.be.greaterThan(0);
    expect(completed.rounds).to.be.at.least(2);
    expect(completed.bytesPerMemory, 'the hot writer forced re-sends').to.be.greaterThan(0.5);
    expect(completed.switchoverTargetMs).to.be.within(100, 300);
    expect(completed.postcopy).to.equal(false);
    if (steps.some((s) => s.action === 'enable-throttle')) expect(completed.throttlePct).to.be.greaterThan(0);

    // The guest kept running: the same boot, its heartbeat going on across the move, no guest error.
    const moved = (await site.client.vms()).find((v) => v.name === 'hot')!;
    expect([moved.host, moved.state]).to.deep.equal(['host-b', 'running']);
    await waitFor('heartbeats on host-b', () => (parseGuestSerial(readSerial(moved.serialLog!)).heartbeats.length >= 50 ? true : undefined), 60_000, 100);
    const pause = clock.longestGap(t0, performance.now());
    const gaps = clock.gaps(t0, performance.now(), 3).map((g) => `${g.ms} ms ending ${(g.endedMs / 1000).toFixed(1)} s after the request`);
    console.log(`      guest-observed pause (longest heartbeat gap, host clock): ${Math.round(pause)} ms as the test saw it, ${completed.guestPauseMs} ms as the agents reported it; longest gaps: ${gaps.join(', ')}`);
    expect(pause, 'heartbeats arrived on both sides').to.be.greaterThan(0);
    // The agents timestamp the same lines: the source's last before the switchover, the destination's first after.
    expect(completed.guestPauseMs, 'the result carries the guest-observed pause').to.be.a('number').and.greaterThan(0);
    const joined = parseGuestSerial(readSerial(source.serialLog!) + readSerial(moved.serialLog!));
    expect(heartbeatBreaks(joined.heartbeats)).to.deep.equal([]);
    expect(joined.errors).to.deep.equal([]);
    expect(await qemuPidsOf('hot')).to.deep.equal([moved.pid]);
    await site.client.stopVm('hot');
  });
});
