/**
 * One migration of the convergence benchmark: a fresh destination QEMU, the
 * policy's tuning, progress sampled every 250 ms (as a Motus agent does) and fed
 * to the policy, whose steps are applied at once; cancelled at the completion cap.
 */
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { linkProbeOptions, openLinkProbeSink, probeLinkRate, type ConvergenceContext } from '@motus/core';
import type { MigrationProgress, VmSpec } from '@motus/sdk';
import type { QemuDriver, QemuVm } from '@motus/hv-qemu';
import { waitFor, type HeartbeatClock } from '../../support/index.js';
import type { BenchPolicy, BenchStep } from './policies.js';

export const SAMPLE_INTERVAL_MS = 250;

export interface RunSample {
  /** ms since the migrate command. */
  t: number;
  progress: MigrationProgress;
}

export interface RunResult {
  policy: string;
  completed: boolean;
  /** Why it did not complete. */
  failure?: string;
  downtimeMs?: number;
  /** Longest gap in the guest's heartbeat arrivals from the migrate command to 1 s after the destination ran, ms. */
  guestPauseMs: number;
  /** The five longest heartbeat gaps: when they ended (ms after the migrate command) and how long. */
  longestGaps: Array<{ endedMs: number; ms: number }>;
  totalTimeMs: number;
  bytes: number;
  bytesPerMemory: number;
  rounds: number;
  throttleReachedPct: number;
  steps: Array<BenchStep & { t: number }>;
  samples: RunSample[];
  /** The link probe (Motus), ms, overlapped with the destination's launch. */
  probeMs?: number;
}

export interface RunInput {
  driver: QemuDriver;
  source: QemuVm;
  spec: VmSpec;
  runDir: string;
  policy: BenchPolicy;
  ctx: ConvergenceContext;
  clock: HeartbeatClock;
  capMs: number;
}

/** Runs one migration; returns the result and the VM that holds the guest afterwards. */
export async function runMigration(input: RunInput): Promise<{ result: RunResult; vm: QemuVm }> {
  const { driver, source, spec, policy, clock } = input;
  let ctx = input.ctx;
  let probeMs: number | undefined;
  // Motus probes the link while the destination QEMU starts, as its orchestrator does (nobody's launch
  // time counts here). Both QEMUs run on this host: the probe goes over loopback.
  const probing = policy.probesLink ? probe(ctx) : undefined;
  const destination = await driver.launch(spec, { runDir: input.runDir, incoming: true });
  /** Waiting for a probe that outlasted the launch is the orchestrator's time too: it counts in the total. */
  let probeWaitMs = 0;
  if (probing) {
    const launched = performance.now();
    const measured = await probing;
    probeWaitMs = performance.now() - launched;
    ctx = { ...ctx, ...measured.link };
    probeMs = measured.ms;
  }
  const run = policy.start(ctx);
  clock.watch(destination.serialLog);
  const uri = await destination.listenForMigration('127.0.0.1', 0, run.destination);
  const t0 = performance.now();
  await source.startMigration(uri, { ...run.source, capabilities: { ...(run.source.capabilities ?? {}), events: true } });
  const samples: RunSample[] = [];
  const steps: RunResult['steps'] = run.planned.map((s) => ({ ...s, t: 0 }));
  let throttleReached = 0;
  let last: MigrationProgress | undefined;
  let failure: string | undefined;
  for (;;) {
    const progress = await source.migrationProgress();
    const t = performance.now() - t0;
    samples.push({ t: Math.round(t), progress });
    last = progress;
    throttleReached = Math.max(throttleReached, progress.cpuThrottlePct ?? 0);
    if (progress.status === 'completed') break;
    if (progress.status === 'failed' || progress.status === 'cancelled') {
      failure = `QEMU reports ${progress.status}${progress.error ? `: ${progress.error}` : ''}`;
      break;
    }
    if (t > input.capMs) {
      failure = `not completed within ${Math.round(input.capMs / 1000)} s`;
      break;
    }
    for (const step of run.step(progress)) {
      steps.push({ ...step, t: Math.round(t) });
      if (step.tune) await source.tuneMigration(step.tune).catch((err: unknown) => steps.push({ action: 'refused', reason: String(err), t: Math.round(t) }));
      if (step.postcopy) await source.startPostcopy();
    }
    await new Promise((resolve) => setTimeout(resolve, SAMPLE_INTERVAL_MS));
  }
  const base = {
    policy: policy.name,
    ...(probeMs !== undefined ? { probeMs } : {}),
    bytes: last?.transferredBytes ?? 0,
    bytesPerMemory: Number(((last?.transferredBytes ?? 0) / ctx.memoryBytes).toFixed(3)),
    rounds: last?.round ?? 0,
    throttleReachedPct: throttleReached,
    steps,
    samples,
  };
  if (failure) {
    // Rollback: cancel, the source goes on running, the destination copy goes away.
    await source.cancelMigration().catch(() => undefined);
    await waitFor('the source to run again', async () => ((await source.runState()) === 'running' ? true : undefined), 30_000, 50);
    await destination.stop(2_000);
    const end = performance.now();
    return {
      result: { ...base, completed: false, failure, guestPauseMs: Math.round(clock.longestGap(t0, end)), longestGaps: clock.gaps(t0, end, 5), totalTimeMs: Math.round(end - t0 + probeWaitMs) },
      vm: source,
    };
  }
  await waitFor('the destination to run', async () => ((await destination.runState()) === 'running' ? true : undefined), 15_000, 10);
  const ran = performance.now();
  const totalTimeMs = Math.round(ran - t0 + probeWaitMs);
  // The guest's first heartbeats on the destination, then the longest gap since the migrate command.
  await waitFor('a heartbeat from the destination', () => clock.firstAfter(ran), 15_000, 5);
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const end = performance.now();
  const guestPauseMs = Math.round(clock.longestGap(t0, end));
  await source.stop(2_000);
  return { result: { ...base, completed: true, downtimeMs: last?.downtimeMs ?? 0, guestPauseMs, longestGaps: clock.gaps(t0, end, 5), totalTimeMs }, vm: destination };
}

async function probe(ctx: ConvergenceContext): Promise<{ link: Pick<ConvergenceContext, 'link' | 'linkUnmeasured'>; ms: number }> {
  const started = performance.now();
  const options = linkProbeOptions(ctx.maxBandwidthBytesPerSec);
  try {
    const result = await probeLinkRate(await openLinkProbeSink('127.0.0.1', options.timeoutMs), options);
    return { link: { link: { bytesPerSec: result.bytesPerSec, probeBytes: result.bytes, probeMs: result.ms, lateMs: result.lateMs } }, ms: Math.round(performance.now() - started) };
  } catch (err) {
    return { link: { linkUnmeasured: (err as Error).message }, ms: Math.round(performance.now() - started) };
  }
}

export function runDir(base: string, name: string): string {
  return join(base, name);
}
