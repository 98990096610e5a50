import { expect } from 'chai';
import {
  ConvergenceConfigSchema,
  ConvergencePolicy,
  planConvergence,
  type ConvergenceConfig,
  type ConvergenceContext,
  type ConvergenceDecision,
  type ConvergenceState,
} from '@motus/core';
import type { MigrationFeatures, MigrationProgress } from '@motus/sdk';
import { recordedSeries, type RecordedSeries } from '../support/convergence-fixtures.js';

const MiB = 1 << 20;
const TCG_FEATURES: MigrationFeatures = {
  available: ['auto-converge', 'xbzrle', 'multifd', 'postcopy'],
  unavailable: { 'dirty-limit': "the tcg accelerator has no dirty ring; QEMU's dirty-limit works only under KVM with one" },
};

function config(overrides: Partial<ConvergenceConfig> = {}): ConvergenceConfig {
  return ConvergenceConfigSchema.parse(overrides);
}

/** The bench's context: a 256 MiB, 1-vCPU guest between two 2-core TCG hosts over a capped link. */
function context(series: RecordedSeries | undefined, overrides: Partial<ConvergenceContext> = {}): ConvergenceContext {
  return {
    memoryBytes: (series?.memoryMiB ?? 256) * MiB,
    vcpus: 1,
    sourceCpus: 2,
    destinationCpus: 2,
    accelerator: 'tcg',
    features: TCG_FEATURES,
    maxBandwidthBytesPerSec: (series?.linkMiBps ?? 256) * MiB,
    switchoverCeilingMs: 300,
    timeLimitMs: 120_000,
    ...overrides,
  };
}

interface Replayed {
  index: number;
  sample: MigrationProgress;
  decision: ConvergenceDecision;
  /** The policy's state right after this sample, and the link it measured until then. */
  state: ConvergenceState;
}

/** Feeds a recorded series to a fresh policy, as the orchestrator does, and keeps every step with its sample. */
function replay(series: RecordedSeries, cfg = config(), ctx = context(series)) {
  const plan = planConvergence(cfg, ctx);
  const policy = new ConvergencePolicy(cfg, ctx, plan);
  const steps: Replayed[] = [];
  const links: Array<number | undefined> = [];
  series.samples.forEach((sample, index) => {
    const decisions = policy.next(sample);
    links.push(policy.state.linkBytesPerSec);
    for (const decision of decisions) steps.push({ index, sample, decision, state: { ...policy.state } });
  });
  return { plan, policy, steps, links, actions: steps.map((s) => s.decision.action) };
}

const ESCALATIONS = new Set(['enable-throttle', 'raise-throttle', 'enable-dirty-limit', 'lower-dirty-limit', 'raise-switchover-target', 'start-postcopy']);

/** Every escalation waited for its predecessor's effect: two more dirty syncs and a second of QEMU's clock. */
function expectHoldOffs(steps: Replayed[]): void {
  const escalations = steps.filter((s) => ESCALATIONS.has(s.decision.action));
  for (let i = 1; i < escalations.length; i++) {
    const before = escalations[i - 1]!.sample;
    const after = escalations[i]!.sample;
    expect(after.round - before.round, `${escalations[i]!.decision.action} at round ${after.round}`).to.be.at.least(2);
    expect(after.totalTimeMs - before.totalTimeMs).to.be.at.least(1_000);
  }
}

/** A throttle step fired only after the dirty rate was above half the measured link on this sample and the two before. */
function expectThrottleJustified(series: RecordedSeries, steps: Replayed[], links: Array<number | undefined>): void {
  for (const step of steps.filter((s) => /throttle|dirty-limit/.test(s.decision.action))) {
    expect(step.sample.round, 'never during the bulk copy').to.be.at.least(2);
    for (let k = step.index - 2; k <= step.index; k++) {
      expect(series.samples[k]!.dirtyRateBytesPerSec, `sample ${k} before ${step.decision.action}`).to.be.greaterThan(links[k]! / 2);
    }
    expect(step.decision.reason).to.match(/dirty rate stayed above half the link/);
  }
}

describe('convergence plan', () => {
  it('starts with no throttle and the site target, two multifd channels on two cores (so no xbzrle), and says why dirty-limit is out under TCG', () => {
    const plan = planConvergence(config(), context(undefined));
    expect(plan.decisions.map((d) => d.action)).to.deep.equal(['start', 'streams', 'no-xbzrle', 'no-postcopy', 'no-dirty-limit']);
    expect(plan.source).to.deep.include({ downtimeLimitMs: 100, maxBandwidthBytesPerSec: 256 * MiB });
    // auto-converge must be armed at the start (QEMU refuses capability changes later), at its 1% minimum.
    expect(plan.source.throttle).to.deep.equal({ initialPct: 1, incrementPct: 1, maxPct: 1, triggerThresholdPct: 100 });
    expect(plan.source.multifd).to.deep.equal({ channels: 2 });
    expect(plan.destination).to.deep.equal({ multifd: { channels: 2 } });
    expect(plan.decisions[1]!.reason).to.match(/2 multifd channels: 256 MiB\/s needs 1 channel\(s\).*at least 2.*2 core\(s\)/);
    expect(plan.decisions[0]!.reason).to.match(/bandwidth 256 MiB\/s \(site cap; link not measured\)/);
    expect(plan.decisions[4]!.reason).to.match(/unavailable under tcg: the tcg accelerator has no dirty ring/);
  });

  it('on one stream (multifd off, or one core) arms xbzrle with a probe cache', () => {
    for (const plan of [planConvergence(config({ multifd: 'off' }), context(undefined)), planConvergence(config(), context(undefined, { sourceCpus: 1 }))]) {
      expect(plan.streams).to.deep.equal({ kind: 'single' });
      expect(plan.source.xbzrle).to.deep.equal({ cacheBytes: 32 * MiB });
      expect(plan.source.multifd).to.equal(undefined);
      expect(plan.destination).to.deep.equal({});
    }
  });

  it('sets the bandwidth from the measured link, never above the site cap', () => {
    const slow = planConvergence(config(), context(undefined, { link: { bytesPerSec: 100 * MiB, probeBytes: 20 * MiB, probeMs: 200, lateMs: 0.5 } }));
    expect(slow.source.maxBandwidthBytesPerSec).to.equal(100 * MiB);
    expect(slow.decisions[0]!.reason).to.match(/bandwidth 100 MiB\/s \(measured link, below the 256 MiB\/s site cap: probe: 20 MiB in 200 ms = 100 MiB\/s\)/);
    expect(slow.decisions[0]!.values).to.deep.include({ maxBandwidthMiBps: 100, linkMiBps: 100, probeMs: 200 });
    const fast = planConvergence(config(), context(undefined, { link: { bytesPerSec: 3000 * MiB, probeBytes: 51 * MiB, probeMs: 17, lateMs: 0.5 } }));
    expect(fast.source.maxBandwidthBytesPerSec).to.equal(256 * MiB);
    expect(fast.decisions[0]!.reason).to.match(/site cap; the link carries more/);
    // A probe whose processes waited for a CPU read the host, not the link: the cap stays.
    const starved = planConvergence(config(), context(undefined, { link: { bytesPerSec: 16 * MiB, probeBytes: 8 * MiB, probeMs: 500, lateMs: 11 } }));
    expect(starved.source.maxBandwidthBytesPerSec).to.equal(256 * MiB);
    expect(starved.decisions[0]!.reason).to.match(/site cap; probe: 8\.0 MiB in 500 ms = 16 MiB\/s, but its processes waited for a CPU \(timers 11 ms late\)/);
    const failed = planConvergence(config(), context(undefined, { linkUnmeasured: 'link probe to 10.0.0.2:40000 failed: ECONNREFUSED' }));
    expect(failed.source.maxBandwidthBytesPerSec).to.equal(256 * MiB);
    expect(failed.decisions[0]!.reason).to.match(/link not measured: link probe .* ECONNREFUSED/);
    // The destination starts while the link is probed: what it must know (the channels) does not depend on the probe.
    const big = context(undefined, { sourceCpus: 16, destinationCpus: 16, maxBandwidthBytesPerSec: 8192 * MiB });
    const wide = planConvergence(config(), { ...big, link: { bytesPerSec: 3072 * MiB, probeBytes: 600 * MiB, probeMs: 200, lateMs: 0.5 } });
    expect(wide.destination).to.deep.equal(planConvergence(config(), big).destination).and.deep.equal({ multifd: { channels: 8 } });
    expect(wide.source.maxBandwidthBytesPerSec).to.equal(3072 * MiB);
  });

  it('picks multifd channels from the link and the cores, on both ends, and then arms neither xbzrle nor post-copy', () => {
    const plan = planConvergence(config(), context(undefined, { sourceCpus: 16, destinationCpus: 32, vcpus: 2, maxBandwidthBytesPerSec: 4096 * MiB }));
    expect(plan.streams).to.deep.equal({ kind: 'multifd', channels: 4 });
    expect(plan.source.multifd).to.deep.equal({ channels: 4 });
    expect(plan.destination).to.deep.equal({ multifd: { channels: 4 } });
    expect(plan.source.xbzrle).to.equal(undefined);
    expect(plan.decisions.find((d) => d.action === 'no-xbzrle')!.reason).to.match(/cannot combine it with multifd/);
    // Cores bound it too: 2 cores give 2 channels for a link that wants 4.
    expect(planConvergence(config(), context(undefined, { sourceCpus: 2, destinationCpus: 4, vcpus: 2, maxBandwidthBytesPerSec: 4096 * MiB })).streams).to.deep.equal({ kind: 'multifd', channels: 2 });
    expect(planConvergence(config({ multifd: 'off' }), context(undefined, { sourceCpus: 16, destinationCpus: 16, maxBandwidthBytesPerSec: 4096 * MiB })).streams).to.deep.equal({ kind: 'single' });
    expect(planConvergence(config({ multifd: 3 }), context(undefined)).streams).to.deep.equal({ kind: 'multifd', channels: 3 });
  });

  it('arms post-copy on both ends only when the site allows it, giving up multifd for it', () => {
    const big = context(undefined, { sourceCpus: 16, destinationCpus: 16, maxBandwidthBytesPerSec: 4096 * MiB });
    const allowed = planConvergence(config({ postcopy: true }), big);
    expect(allowed.streams).to.deep.equal({ kind: 'single' });
    expect(allowed.source.postcopy).to.equal(true);
    expect(allowed.destination).to.deep.equal({ postcopy: true });
    expect(planConvergence(config(), big).source.postcopy).to.equal(undefined);
  });

  it('keeps the start target under the ceiling and offers dirty-limit where the accelerator has it', () => {
    expect(planConvergence(config({ switchoverTargetMs: 500 }), context(undefined)).source.downtimeLimitMs).to.equal(300);
    const kvm = planConvergence(config(), context(undefined, { accelerator: 'kvm', features: { available: [...TCG_FEATURES.available, 'dirty-limit'], unavailable: {} } }));
    expect(kvm.dirtyLimit).to.equal(true);
    expect(kvm.decisions.map((d) => d.action)).to.not.include('no-dirty-limit');
  });
});

describe('convergence policy on recorded progress series', () => {
  it('hot writer (recorded): throttles only on sustained pressure, keeps xbzrle once QEMU measured it compresses, raises the target only with the throttle at its ceiling', () => {
    const series = recordedSeries('hot-writer');
    // Recorded on one stream with xbzrle armed (the plan of then on two cores; multifd off now).
    const { steps, links, actions } = replay(series, config({ multifd: 'off' }));
    expect(actions).to.include.members(['measure-link', 'keep-xbzrle', 'enable-throttle', 'raise-throttle']);
    expect(actions.indexOf('enable-throttle')).to.be.lessThan(actions.indexOf('raise-throttle'));
    expectThrottleJustified(series, steps, links);
    expectHoldOffs(steps);

    // xbzrle is judged on QEMU's encoding rate, which is 0 until a dirty sync computed it: not on the first sample with pages.
    const firstWithPages = series.samples.findIndex((s) => (s.xbzrle?.pages ?? 0) >= 256);
    expect(series.samples[firstWithPages]!.xbzrle!.encodingRate).to.equal(0);
    const keep = steps.find((s) => s.decision.action === 'keep-xbzrle')!;
    expect(keep.index).to.be.greaterThan(firstWithPages);
    expect(keep.sample.xbzrle!.encodingRate).to.be.at.least(2);
    expect(keep.decision.tune!.xbzrle!.cacheBytes).to.be.greaterThan(32 * MiB).and.at.most(128 * MiB);

    // The throttle never goes past the level whose sleeps outlast the target in force.
    for (const step of steps.filter((s) => /throttle/.test(s.decision.action))) {
      const target = step.state.switchoverTargetMs;
      expect(step.state.throttlePct).to.be.at.most(Math.floor((100 * target) / (target + 10)));
    }
    for (const step of steps.filter((s) => s.decision.action === 'raise-switchover-target')) {
      const before = steps[steps.indexOf(step) - 1]!.state;
      expect(before.throttlePct, 'throttle at its ceiling first').to.equal(Math.floor((100 * before.switchoverTargetMs) / (before.switchoverTargetMs + 10)));
      expect(step.state.switchoverTargetMs).to.be.at.most(Math.round(before.switchoverTargetMs * 1.5)).and.at.most(300);
    }
  });

  it('a never-converging series (QEMU defaults, recorded) climbs the whole ladder in order, post-copy last, and nothing after it', () => {
    const series = recordedSeries('hot-writer-unsteered');
    const { steps, links, actions } = replay(series, config({ postcopy: true }), context(series, { timeLimitMs: 36_000 }));
    expectThrottleJustified(series, steps, links);
    expectHoldOffs(steps);
    const escalations = actions.filter((a) => ESCALATIONS.has(a) || a === 'abort');
    // Throttle first, up to its ceiling for the 100 ms target; the target only after it.
    expect(escalations[0]).to.equal('enable-throttle');
    const firstTarget = escalations.indexOf('raise-switchover-target');
    expect(firstTarget).to.be.greaterThan(0);
    expect(escalations.slice(0, firstTarget).every((a) => /throttle/.test(a))).to.equal(true);
    expect(steps.find((s) => s.decision.action === 'raise-switchover-target')!.state.switchoverTargetMs).to.equal(150);
    // Post-copy only at the ceiling with the throttle at its ceiling for it, and it is the last step: no rollback after it.
    const postcopy = steps.find((s) => s.decision.action === 'start-postcopy')!;
    expect(postcopy, 'start-postcopy').to.not.equal(undefined);
    expect(postcopy.state.switchoverTargetMs).to.equal(300);
    expect(postcopy.state.throttlePct).to.equal(96);
    expect(postcopy.decision.postcopy).to.equal(true);
    expect(steps.at(-1)).to.equal(postcopy);
  });

  it('without post-copy allowed, the same series ends in an abort at the time limit (the orchestrator rolls back)', () => {
    const series = recordedSeries('hot-writer-unsteered');
    const { steps, actions } = replay(series, config(), context(series, { timeLimitMs: 36_000 }));
    expect(actions).to.not.include('start-postcopy');
    const abort = steps.find((s) => s.decision.action === 'abort')!;
    expect(abort, 'abort').to.not.equal(undefined);
    expect(abort.sample.totalTimeMs).to.be.at.least(36_000);
    expect(series.samples[abort.index - 1]!.totalTimeMs).to.be.lessThan(36_000);
    expect(abort.decision.abort).to.equal(true);
    expect(abort.decision.reason).to.match(/not converged after 36 s, the limit for 256 MiB/);
    expect(steps.at(-1), 'nothing after the abort').to.equal(abort);
  });

  it('where the accelerator has a dirty ring, per-vCPU dirty limits replace the throttle and halve per step', () => {
    const series = recordedSeries('hot-writer-unsteered');
    const kvm = context(series, { accelerator: 'kvm', features: { available: [...TCG_FEATURES.available, 'dirty-limit'], unavailable: {} } });
    const { steps, links } = replay(series, config(), kvm);
    const limits = steps.filter((s) => /dirty-limit/.test(s.decision.action));
    expect(limits[0]!.decision.action).to.equal('enable-dirty-limit');
    expect(limits[0]!.decision.tune!.dirtyLimitMBps).to.equal(Math.floor(links[limits[0]!.index]! / 2 / MiB));
    for (let i = 1; i < limits.length; i++) expect(limits[i]!.decision.tune!.dirtyLimitMBps).to.equal(Math.max(1, Math.floor(limits[i - 1]!.decision.tune!.dirtyLimitMBps! / 2)));
    expect(steps.map((s) => s.decision.action)).to.not.include('enable-throttle');
  });

  it('whole-page rewrites (recorded): xbzrle is dropped once QEMU shows re-sent pages do not compress', () => {
    const series = recordedSeries('scribble');
    const { steps } = replay(series, config({ multifd: 'off' }));
    const drop = steps.find((s) => s.decision.action === 'drop-xbzrle')!;
    expect(drop, 'drop-xbzrle').to.not.equal(undefined);
    const x = drop.sample.xbzrle!;
    expect(x.overflow / x.pages, 'most re-sent pages overflowed').to.be.at.least(0.5);
    expect(drop.decision.tune).to.deep.equal({ xbzrle: { cacheBytes: 4096 } });
    expect(steps.map((s) => s.decision.action)).to.not.include('keep-xbzrle');
  });

  it('idle and steady guests (recorded): no throttle, no target change', () => {
    for (const name of ['idle', 'steady']) {
      const { actions } = replay(recordedSeries(name));
      expect(actions.filter((a) => ESCALATIONS.has(a)), name).to.deep.equal([]);
    }
  });

  it('a probe that read the link low (recorded at load 21): QEMU pinned at that limit raises it to the site cap, before anything is asked of the guest', () => {
    const series = recordedSeries('steady-probe-low');
    const ctx = context(series, { link: series.linkProbe! });
    const { plan, steps, policy } = replay(series, config(), ctx);
    expect(plan.source.maxBandwidthBytesPerSec).to.equal(series.linkProbe!.bytesPerSec);
    const raise = steps.filter((s) => s.decision.action === 'raise-bandwidth');
    expect(raise, 'one raise').to.have.length(1);
    const at = raise[0]!;
    expect(at.decision.tune).to.deep.equal({ maxBandwidthBytesPerSec: 256 * MiB });
    // Justified: the sample and the two before it sent at 90% of the limit or more.
    for (let k = at.index - 2; k <= at.index; k++) expect(series.samples[k]!.throughputBytesPerSec, `sample ${k}`).to.be.at.least(series.linkProbe!.bytesPerSec * 0.9);
    expect(steps.findIndex((s) => ESCALATIONS.has(s.decision.action)), 'before any throttle').to.be.greaterThan(steps.indexOf(at));
    expect(at.sample.round).to.equal(1);
    expect(policy.state.bandwidthBytesPerSec).to.equal(256 * MiB);
  });

  it('with the cap in force (no probe, or one at the cap) the bandwidth is never touched', () => {
    for (const name of ['idle', 'steady', 'bursty', 'hot-writer', 'hot-writer-unsteered']) {
      const { actions } = replay(recordedSeries(name), config({ multifd: 'off' }));
      expect(actions, name).to.not.include('raise-bandwidth');
    }
    // Starved probe: the plan kept the cap, so nothing to raise either.
    const series = recordedSeries('steady-probe-low');
    const { actions } = replay(series, config(), context(series, { link: { ...series.linkProbe!, lateMs: 40 } }));
    expect(actions).to.not.include('raise-bandwidth');
  });

  it('bursty guest (recorded): any throttle step comes from a burst the link could not keep up with', () => {
    const series = recordedSeries('bursty');
    const { steps, links } = replay(series);
    expectThrottleJustified(series, steps, links);
    expectHoldOffs(steps);
  });
});
