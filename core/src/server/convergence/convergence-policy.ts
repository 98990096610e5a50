import type { MigrationProgress } from '@motus/sdk';
import type { ConvergenceConfig } from '../../site/site-schema.js';
import { ProgressRate } from '../progress-rate.js';
import { DORMANT_THROTTLE_PCT, mibps, type ConvergenceContext, type ConvergenceDecision, type ConvergencePlan } from './convergence-plan.js';

/**
 * After a step, the next one waits until its effect was measured: two more
 * dirty-bitmap syncs (one whole round under the new setting, ended by the sync
 * that counts what it dirtied) and at least this long.
 */
export const HOLD_ROUNDS = 2;
export const HOLD_MS = 1_000;
/** "The dirty rate stays above the link rate": at least this many samples in a row, after the bulk copy. */
export const PRESSURE_SAMPLES = 3;
/**
 * …where "above" means above this share of the measured link rate. A round sends
 * the dirty set S in S/L and the guest dirties D·S/L meanwhile, so each round
 * shrinks S by the ratio D/L: at 0.5 it halves per round, above it the target is
 * many rounds away, and near 1 the recorded series swing either side of the link
 * from sample to sample (QEMU's own auto-converge trigger is the same 50%).
 */
export const PRESSURE_RATIO = 0.5;
/** Busy samples (about 2 s at the agent's 250 ms) the link rate is the best of. */
export const LINK_WINDOW = 8;
/**
 * The bandwidth set from the link probe is a lower bound of the link (a probe on a
 * loaded host reads its own CPU starvation): QEMU sending at AT_LIMIT_RATIO of it or
 * more for AT_LIMIT_SAMPLES samples in a row shows the link carries at least that,
 * and the limit goes to the site's cap.
 */
export const AT_LIMIT_RATIO = 0.9;
export const AT_LIMIT_SAMPLES = 3;
/** A dirty set (remaining bytes as a round starts) that has not fallen by 10% for HOLD_ROUNDS and HOLD_MS is a stall. */
export const STALL_PROGRESS = 0.9;
/** QEMU's throttle runs each vCPU for 10 ms, then sleeps it for pct / (100 - pct) of that. */
export const THROTTLE_TIMESLICE_MS = 10;

/**
 * The highest throttle whose sleeps are no longer than the switchover target: a
 * vCPU stopped for longer at every timeslice would be a worse pause than the one
 * the throttle tries to avoid (at 99% the vCPU sleeps 990 ms per 10 ms of run).
 */
export function throttleCeilingPct(switchoverTargetMs: number, configuredMaxPct: number): number {
  return Math.min(configuredMaxPct, Math.floor((100 * switchoverTargetMs) / (switchoverTargetMs + THROTTLE_TIMESLICE_MS)));
}
/** xbzrle is judged once this many pages went delta-encoded (1 MiB of pages)… */
export const XBZRLE_JUDGE_PAGES = 256;
/** …and kept when they shrink at least 2:1 with at most a quarter overflowing, dropped below 1.5:1 or from half overflowing. */
export const XBZRLE_GOOD_RATE = 2;
export const XBZRLE_POOR_RATE = 1.5;
const XBZRLE_SMALLEST = 4096;
const MiB = 1 << 20;

/** What the policy holds about the running migration, for the result and for tests. */
export interface ConvergenceState {
  switchoverTargetMs: number;
  /** The throttle level the policy allows, %. */
  throttlePct: number;
  /** The highest throttle QEMU reported, %. */
  throttleReachedPct: number;
  dirtyLimitMBps?: number;
  xbzrle: 'off' | 'probing' | 'kept' | 'dropped';
  postcopy: 'off' | 'armed' | 'started';
  /** Link rate measured while the sender was busy, bytes/s. */
  linkBytesPerSec?: number;
  /** QEMU's max-bandwidth in force, bytes/s. */
  bandwidthBytesPerSec: number;
  aborted: boolean;
}

/**
 * The convergence policy: pure logic from progress samples to steps. It never
 * reads a clock (QEMU's total-time is the time axis), so a recorded series of
 * samples replays to the same steps.
 *
 * Ladder, each rung only while the copy is not converging (the remaining bytes at
 * the measured link rate take longer than the switchover target):
 *   1. xbzrle kept and its cache grown when re-sent pages compress well (costs the
 *      guest nothing), dropped when they do not;
 *   2. while the dirty rate stays above the link rate: a per-vCPU dirty limit where
 *      the accelerator has one, else the vCPU throttle raised step by step, never
 *      past the level whose sleeps outlast the switchover target;
 *   3. when the copy stalls with the throttle at that level (or without pressure):
 *      the switchover target raised by bounded steps up to its ceiling (which lets
 *      the throttle go one level further);
 *   4. at the ceiling and still stalled: post-copy, when armed;
 *   and at the time limit, whatever the state: abort (the orchestrator rolls back).
 */
export class ConvergencePolicy {
  readonly state: ConvergenceState;
  private readonly rate = new ProgressRate();
  private lastStep = { round: 0, ms: 0 };
  private pressureStreak = 0;
  /** Samples in a row with the dirty rate at or below half the link: "no pressure" needs as many as pressure does. */
  private calmStreak = 0;
  private best = { remaining: Number.POSITIVE_INFINITY, round: 0, ms: 0 };
  private linkAnnounced = false;
  /** Largest remaining seen after the bulk copy: the size of what keeps being dirtied. */
  private dirtySetBytes = 0;
  /**
   * Remaining bytes at the start of the last rounds (highest seen in each). Within a
   * round the remaining falls towards zero and jumps back at the next dirty sync, so
   * what QEMU must fit into the switchover is the size a round starts with.
   */
  private readonly roundSizes: Array<{ round: number; bytes: number }> = [];
  private readonly busyRates: number[] = [];
  private atLimitStreak = 0;

  constructor(
    private readonly config: ConvergenceConfig,
    private readonly ctx: ConvergenceContext,
    private readonly plan: ConvergencePlan,
  ) {
    this.state = {
      switchoverTargetMs: plan.source.downtimeLimitMs ?? config.switchoverTargetMs,
      throttlePct: 0,
      throttleReachedPct: 0,
      xbzrle: plan.xbzrleArmed ? 'probing' : 'off',
      postcopy: plan.postcopyArmed ? 'armed' : 'off',
      bandwidthBytesPerSec: plan.source.maxBandwidthBytesPerSec ?? ctx.maxBandwidthBytesPerSec,
      aborted: false,
    };
  }

  /** The steps one sample calls for (usually none). */
  next(sample: MigrationProgress): ConvergenceDecision[] {
    const throughput = this.rate.event(sample).throughputBytesPerSec;
    // After the switch to post-copy nothing is left to steer, and a rollback is no longer possible.
    if (sample.status !== 'active' || this.state.aborted || this.state.postcopy === 'started') return [];
    const out: ConvergenceDecision[] = [];
    const t = sample.totalTimeMs;
    this.state.throttleReachedPct = Math.max(this.state.throttleReachedPct, sample.cpuThrottlePct ?? 0);
    // The sender is busy while more than a quarter second's worth is left: its rate is the link's. Not in
    // round 1: the bulk copy skips zero pages for a few bytes each, so its bytes per second understate the link.
    // The link is the best of the last LINK_WINDOW busy samples: the recorded series dip far below the cap
    // for a sample or two (dirty syncs, a starved sender thread) and come back; a dip is not the link.
    if (sample.round >= 2 && throughput > 0 && sample.remainingBytes > throughput / 4) {
      this.busyRates.push(throughput);
      if (this.busyRates.length > LINK_WINDOW) this.busyRates.shift();
      this.state.linkBytesPerSec = Math.max(...this.busyRates);
    }
    if (t >= this.ctx.timeLimitMs) {
      this.state.aborted = true;
      return [
        {
          action: 'abort',
          reason: `not converged after ${(t / 1000).toFixed(0)} s, the limit for ${(this.ctx.memoryBytes / MiB).toFixed(0)} MiB; ${(sample.remainingBytes / MiB).toFixed(0)} MiB left at round ${sample.round}, dirty ${mibps(sample.dirtyRateBytesPerSec)}, link ${mibps(this.link(throughput))}: rolling back`,
          values: { elapsedMs: t, remainingBytes: sample.remainingBytes },
          abort: true,
        },
      ];
    }
    const bandwidth = this.raiseBandwidth(sample, throughput);
    if (bandwidth) out.push(bandwidth);
    // Round 1 is the bulk copy of all memory: nothing is re-sent yet, no rate is dirty.
    if (sample.round < 2) return out;
    const link = this.link(throughput);
    if (!this.linkAnnounced && this.state.linkBytesPerSec !== undefined && sample.round >= 3) {
      this.linkAnnounced = true;
      out.push({
        action: 'measure-link',
        reason: `re-sent pages go at ${mibps(link)} (cap ${mibps(this.ctx.maxBandwidthBytesPerSec)}): the dirty rate is weighed against this measured rate`,
        values: { linkMiBps: Math.round(link / MiB) },
      });
    }
    this.dirtySetBytes = Math.max(this.dirtySetBytes, sample.remainingBytes);
    // QEMU computes the dirty rate over sync periods of a second or more and reports 0 until then:
    // a 0 after the bulk copy is a missing measurement, counted neither as pressure nor as calm.
    if (sample.dirtyRateBytesPerSec > 0) {
      const above = sample.dirtyRateBytesPerSec > link * PRESSURE_RATIO;
      this.pressureStreak = above ? this.pressureStreak + 1 : 0;
      this.calmStreak = above ? 0 : this.calmStreak + 1;
    }
    const size = this.roundSize(sample);
    if (size < this.best.remaining * STALL_PROGRESS) this.best = { remaining: size, round: sample.round, ms: t };

    const expectedMs = link > 0 ? (size / link) * 1000 : Number.POSITIVE_INFINITY;
    const converging = expectedMs <= this.state.switchoverTargetMs;
    const settled = sample.round >= this.lastStep.round + HOLD_ROUNDS && t >= this.lastStep.ms + HOLD_MS;
    const stalled = sample.round >= this.best.round + HOLD_ROUNDS && t >= this.best.ms + HOLD_MS;
    const pressure = this.pressureStreak >= PRESSURE_SAMPLES;
    const calm = this.calmStreak >= PRESSURE_SAMPLES;
    const figures = `rounds start with ${(size / MiB).toFixed(1)} MiB (round ${sample.round}), ~${Math.round(expectedMs)} ms at ${mibps(link)}, target ${this.state.switchoverTargetMs} ms; dirty ${mibps(sample.dirtyRateBytesPerSec)}`;

    const xbzrle = this.judgeXbzrle(sample);
    if (xbzrle) out.push(xbzrle);
    // Nothing is weighed against the link until it was measured over a whole round of re-sent pages
    // (round 3 on) and on a few busy samples: on a loaded host round 2 alone reads far below the link.
    if (converging || !settled || sample.round < 3 || this.busyRates.length < PRESSURE_SAMPLES) return this.stepped(out, sample);

    const ceiling = throttleCeilingPct(this.state.switchoverTargetMs, this.config.throttleMaxPct);
    const throttleExhausted = this.plan.dirtyLimit ? (this.state.dirtyLimitMBps ?? Infinity) <= 1 : this.state.throttlePct >= ceiling;
    if (pressure && !throttleExhausted) {
      out.push(this.plan.dirtyLimit ? this.lowerDirtyLimit(link, figures) : this.raiseThrottle(figures, ceiling));
      return this.stepped(out, sample);
    }
    if (stalled && (throttleExhausted || calm) && this.state.switchoverTargetMs < this.ctx.switchoverCeilingMs) {
      const next = Math.min(this.ctx.switchoverCeilingMs, Math.round(this.state.switchoverTargetMs * this.config.switchoverStepFactor));
      out.push({
        action: 'raise-switchover-target',
        reason: `no progress for ${sample.round - this.best.round} rounds (${figures}${throttleExhausted ? `, throttle at its ${ceiling}% ceiling for this target` : `, dirty rate at most half the link for ${this.calmStreak} samples`}): target ${this.state.switchoverTargetMs} → ${next} ms (ceiling ${this.ctx.switchoverCeilingMs} ms)`,
        values: { switchoverTargetMs: next },
        tune: { downtimeLimitMs: next },
      });
      this.state.switchoverTargetMs = next;
      return this.stepped(out, sample);
    }
    if (stalled && this.state.postcopy === 'armed' && this.state.switchoverTargetMs >= this.ctx.switchoverCeilingMs && (throttleExhausted || calm)) {
      this.state.postcopy = 'started';
      out.push({
        action: 'start-postcopy',
        reason: `still no progress with throttle and target exhausted (${figures}): switching to post-copy, the destination runs now and fetches what is missing`,
        postcopy: true,
      });
      return this.stepped(out, sample);
    }
    return out;
  }

  /**
   * From the first sample on, bulk copy included: a limit below the cap that QEMU
   * keeps reaching is the probe's under-reading, and every round at it is time lost.
   * Not a step of the ladder (it asks nothing of the guest), so it neither waits for
   * nor delays one.
   */
  private raiseBandwidth(sample: MigrationProgress, throughput: number): ConvergenceDecision | undefined {
    const limit = this.state.bandwidthBytesPerSec;
    const cap = this.ctx.maxBandwidthBytesPerSec;
    if (limit >= cap) return undefined;
    this.atLimitStreak = sample.round >= 1 && throughput >= limit * AT_LIMIT_RATIO ? this.atLimitStreak + 1 : 0;
    if (this.atLimitStreak < AT_LIMIT_SAMPLES) return undefined;
    this.state.bandwidthBytesPerSec = cap;
    return {
      action: 'raise-bandwidth',
      reason: `QEMU sent at ${mibps(throughput)} for ${this.atLimitStreak} samples, at its ${mibps(limit)} limit from the link probe (round ${sample.round}): the link carries at least that, so the probe read low (a loaded host); bandwidth → ${mibps(cap)} (site cap)`,
      values: { maxBandwidthMiBps: Math.round(cap / MiB), fromMiBps: Math.round(limit / MiB) },
      tune: { maxBandwidthBytesPerSec: cap },
    };
  }

  /** The largest remaining seen in this round and the one before: what a round starts with. */
  private roundSize(sample: MigrationProgress): number {
    const last = this.roundSizes.at(-1);
    if (last?.round === sample.round) last.bytes = Math.max(last.bytes, sample.remainingBytes);
    else this.roundSizes.push({ round: sample.round, bytes: sample.remainingBytes });
    if (this.roundSizes.length > 2) this.roundSizes.shift();
    return Math.max(...this.roundSizes.map((r) => r.bytes));
  }

  private link(throughput: number): number {
    return this.state.linkBytesPerSec ?? throughput;
  }

  private stepped(out: ConvergenceDecision[], sample: MigrationProgress): ConvergenceDecision[] {
    if (out.some((d) => d.action !== 'measure-link' && d.action !== 'raise-bandwidth')) {
      this.lastStep = { round: sample.round, ms: sample.totalTimeMs };
      // A step is progress in itself: the stall clock starts again under the new setting. The pressure
      // streaks go on: they are measurements, and the hold-off already waits for the step's effect.
      this.best = { remaining: this.roundSizes.length > 0 ? Math.max(...this.roundSizes.map((r) => r.bytes)) : sample.remainingBytes, round: sample.round, ms: sample.totalTimeMs };
    }
    return out;
  }

  private raiseThrottle(figures: string, ceiling: number): ConvergenceDecision {
    const next = Math.min(ceiling, this.state.throttlePct + this.config.throttleStepPct);
    const first = this.state.throttlePct === 0;
    this.state.throttlePct = next;
    return {
      action: first ? 'enable-throttle' : 'raise-throttle',
      reason: `dirty rate stayed above half the link for ${this.pressureStreak} samples (${figures}): vCPU throttle ${first ? 'on at' : 'raised to'} ${next}% (ceiling ${ceiling}% for a ${this.state.switchoverTargetMs} ms target)${first && !this.plan.dirtyLimit ? ` (no dirty limit under ${this.ctx.accelerator})` : ''}`,
      values: { throttlePct: next },
      // The level QEMU starts at, the one it may climb to, and a step that gets there from wherever it is.
      // QEMU moves the throttle only when its own trigger fires (dirtied > threshold × sent, two syncs in a
      // row): the same 50% as the policy's pressure test, so the level follows the policy's decision.
      tune: { throttle: { initialPct: next, incrementPct: Math.max(DORMANT_THROTTLE_PCT, next), maxPct: next, triggerThresholdPct: PRESSURE_RATIO * 100 } },
    };
  }

  private lowerDirtyLimit(link: number, figures: string): ConvergenceDecision {
    // Start at half the link shared by the vCPUs, halve on each step.
    const current = this.state.dirtyLimitMBps;
    const next = Math.max(1, Math.floor(current === undefined ? link / 2 / MiB / this.ctx.vcpus : current / 2));
    this.state.dirtyLimitMBps = next;
    return {
      action: current === undefined ? 'enable-dirty-limit' : 'lower-dirty-limit',
      reason: `dirty rate stayed above half the link for ${this.pressureStreak} samples (${figures}): each vCPU may dirty at most ${next} MiB/s`,
      values: { dirtyLimitMBps: next },
      tune: { dirtyLimitMBps: next },
    };
  }

  private judgeXbzrle(sample: MigrationProgress): ConvergenceDecision | undefined {
    const x = sample.xbzrle;
    if (this.state.xbzrle !== 'probing' || !x || x.pages < XBZRLE_JUDGE_PAGES) return undefined;
    // QEMU counts an overflowing page among its xbzrle pages, and computes the encoding rate at a dirty
    // sync (0 until then, and 0 when every page overflowed).
    const overflowShare = Math.min(1, x.overflow / x.pages);
    if (x.encodingRate <= 0 && overflowShare < 0.5) return undefined;
    const stats = `${x.pages} re-sent pages, encoded ${x.encodingRate.toFixed(1)}:1, ${(overflowShare * 100).toFixed(0)}% overflowing, ${(x.cacheMissRate * 100).toFixed(0)}% cache misses`;
    if (x.encodingRate >= XBZRLE_GOOD_RATE && overflowShare <= 0.25) {
      this.state.xbzrle = 'kept';
      // Room for what keeps being dirtied, so every re-sent page finds its old copy.
      const wanted = Math.min(this.ctx.memoryBytes / 2, Math.max(this.plan.xbzrleProbeBytes, this.dirtySetBytes * 1.25));
      const cacheBytes = 2 ** Math.ceil(Math.log2(wanted));
      const bounded = cacheBytes > this.ctx.memoryBytes / 2 ? 2 ** Math.floor(Math.log2(wanted)) : cacheBytes;
      return {
        action: 'keep-xbzrle',
        reason: `re-sent pages compress well (${stats}): cache ${(this.plan.xbzrleProbeBytes / MiB).toFixed(0)} → ${(bounded / MiB).toFixed(0)} MiB for a dirty set of ${(this.dirtySetBytes / MiB).toFixed(0)} MiB`,
        values: { xbzrleCacheBytes: bounded, encodingRate: Number(x.encodingRate.toFixed(2)) },
        tune: { xbzrle: { cacheBytes: bounded } },
      };
    }
    if (overflowShare >= 0.5 || x.encodingRate < XBZRLE_POOR_RATE) {
      this.state.xbzrle = 'dropped';
      return {
        action: 'drop-xbzrle',
        reason: `re-sent pages do not compress (${stats}): cache shrunk to ${XBZRLE_SMALLEST} bytes, pages go raw`,
        values: { xbzrleCacheBytes: XBZRLE_SMALLEST, encodingRate: Number(x.encodingRate.toFixed(2)) },
        tune: { xbzrle: { cacheBytes: XBZRLE_SMALLEST } },
      };
    }
    return undefined;
  }
}
