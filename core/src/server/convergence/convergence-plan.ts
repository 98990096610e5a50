import type { MigrationFeatures, MigrationTuning } from '@motus/sdk';
import type { ConvergenceConfig } from '../../site/site-schema.js';

/** What the plan and the policy know about one migration before it starts. */
export interface ConvergenceContext {
  memoryBytes: number;
  vcpus: number;
  /** Cores of the source and the destination host. */
  sourceCpus: number;
  destinationCpus: number;
  /** The source's accelerator ('kvm', 'tcg'). */
  accelerator: string;
  /** What the source's hypervisor driver offers; absent: only auto-converge is assumed. */
  features?: MigrationFeatures;
  /** Per-migration bandwidth cap of the site, bytes/s. */
  maxBandwidthBytesPerSec: number;
  /** The switchover target's ceiling, ms (migration.downtimeLimitMs). */
  switchoverCeilingMs: number;
  /** Rollback after this long, ms: proportional to the memory size. */
  timeLimitMs: number;
}

export type StreamMode = { kind: 'multifd'; channels: number } | { kind: 'single' };

/** One decision of the plan or the policy: a policy event, and what it sets. */
export interface ConvergenceDecision {
  action: string;
  reason: string;
  values?: Record<string, number | string | boolean>;
  /** Knobs to change on the running migration. */
  tune?: MigrationTuning;
  postcopy?: true;
  abort?: true;
}

/** What the migration starts with: the source's tuning, the destination's, and the reasons. */
export interface ConvergencePlan {
  source: MigrationTuning;
  /** Both ends must agree on these before the stream starts. */
  destination: MigrationTuning;
  streams: StreamMode;
  xbzrleArmed: boolean;
  xbzrleProbeBytes: number;
  postcopyArmed: boolean;
  dirtyLimit: boolean;
  decisions: ConvergenceDecision[];
}

/**
 * What one multifd channel (one QEMU sender thread) is assumed to push: QEMU's
 * single migration thread sends about 1 GiB/s of guest pages with KVM on a current
 * core (measured here under TCG on loopback: see docs/convergence.md).
 */
export const BYTES_PER_CHANNEL = 1 << 30;
const MAX_CHANNELS = 8;
/** QEMU starts throttling at 1% when asked for nothing: the smallest level it accepts, noise for the guest. */
export const DORMANT_THROTTLE_PCT = 1;

const MiB = 1 << 20;

function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(bytes < 10 * MiB ? 1 : 0)} MiB`;
}

export function mibps(bytesPerSec: number): string {
  return `${(bytesPerSec / MiB).toFixed(0)} MiB/s`;
}

/**
 * Multifd channels: one per BYTES_PER_CHANNEL of the bandwidth cap, at most one per
 * core the guest's vCPUs leave free on the smaller host, at most 8. Fewer than two
 * means one stream (multifd then only costs threads).
 */
export function chooseStreams(config: Pick<ConvergenceConfig, 'multifd'>, ctx: ConvergenceContext): { streams: StreamMode; reason: string } {
  if (config.multifd === 'off') return { streams: { kind: 'single' }, reason: 'multifd is off in the site file' };
  if (typeof config.multifd === 'number') return { streams: { kind: 'multifd', channels: config.multifd }, reason: `the site file sets ${config.multifd} multifd channels` };
  const spareCores = Math.min(ctx.sourceCpus, ctx.destinationCpus) - ctx.vcpus;
  const forLink = Math.ceil(ctx.maxBandwidthBytesPerSec / BYTES_PER_CHANNEL);
  const channels = Math.min(MAX_CHANNELS, spareCores, forLink);
  const why = `${mibps(ctx.maxBandwidthBytesPerSec)} cap needs ${forLink} channel(s) of ~${mibps(BYTES_PER_CHANNEL)}; ${Math.max(0, spareCores)} core(s) spare beside ${ctx.vcpus} vCPU(s)`;
  if (channels < 2) return { streams: { kind: 'single' }, reason: `one stream: ${why}` };
  return { streams: { kind: 'multifd', channels }, reason: `${channels} multifd channels: ${why}` };
}

/** The xbzrle probe cache: an eighth of memory, at least 4 MiB, at most 256 MiB (a power of two). */
export function xbzrleProbeBytes(memoryBytes: number): number {
  const eighth = Math.max(4 * MiB, Math.min(256 * MiB, memoryBytes / 8));
  return 2 ** Math.floor(Math.log2(eighth));
}

/**
 * The start of every migration. QEMU fixes capabilities when the migration starts,
 * so everything the policy may want later is armed now, dormant: auto-converge at
 * 1% (QEMU's minimum), xbzrle with a probe cache (only on one stream: QEMU refuses
 * xbzrle with multifd), post-copy when the site allows it (also refused with multifd).
 */
export function planConvergence(config: ConvergenceConfig, ctx: ConvergenceContext): ConvergencePlan {
  const decisions: ConvergenceDecision[] = [];
  const target = Math.min(config.switchoverTargetMs, ctx.switchoverCeilingMs);
  const has = (feature: string) => ctx.features?.available.includes(feature as never) ?? feature === 'auto-converge';
  let { streams, reason: streamReason } = chooseStreams(config, ctx);
  if (streams.kind === 'multifd' && !has('multifd')) {
    streamReason = `one stream: the hypervisor offers no multifd (${ctx.features?.unavailable.multifd ?? 'not reported'})`;
    streams = { kind: 'single' };
  }
  if (streams.kind === 'multifd' && config.postcopy && config.multifd === 'auto') {
    streams = { kind: 'single' };
    streamReason = `one stream: the site allows post-copy, which QEMU cannot combine with multifd`;
  }
  const source: MigrationTuning = {
    maxBandwidthBytesPerSec: ctx.maxBandwidthBytesPerSec,
    downtimeLimitMs: target,
    throttle: { initialPct: DORMANT_THROTTLE_PCT, incrementPct: DORMANT_THROTTLE_PCT, maxPct: DORMANT_THROTTLE_PCT, triggerThresholdPct: 100 },
  };
  const destination: MigrationTuning = {};
  decisions.push({
    action: 'start',
    reason:
      `switchover target ${target} ms (site), ceiling ${ctx.switchoverCeilingMs} ms; bandwidth ${mibps(ctx.maxBandwidthBytesPerSec)} (site cap); ` +
      `no throttle (auto-converge armed at ${DORMANT_THROTTLE_PCT}%, QEMU's minimum, engaging only while the guest dirties more than is sent); ` +
      `rollback after ${Math.round(ctx.timeLimitMs / 1000)} s for ${mib(ctx.memoryBytes)}`,
    values: { switchoverTargetMs: target, maxBandwidthMiBps: Math.round(ctx.maxBandwidthBytesPerSec / MiB), throttlePct: 0, timeLimitS: Math.round(ctx.timeLimitMs / 1000) },
  });
  decisions.push({ action: 'streams', reason: streamReason, values: { channels: streams.kind === 'multifd' ? streams.channels : 1 } });
  if (streams.kind === 'multifd') {
    source.multifd = { channels: streams.channels };
    destination.multifd = { channels: streams.channels };
  }
  const probe = xbzrleProbeBytes(ctx.memoryBytes);
  const xbzrleArmed = config.xbzrle === 'auto' && streams.kind === 'single' && has('xbzrle');
  if (xbzrleArmed) {
    source.xbzrle = { cacheBytes: probe };
    decisions.push({ action: 'arm-xbzrle', reason: `xbzrle armed with a ${mib(probe)} probe cache: kept only if re-sent pages compress well`, values: { xbzrleCacheBytes: probe } });
  } else {
    const why = config.xbzrle === 'off' ? 'off in the site file' : streams.kind === 'multifd' ? 'QEMU cannot combine it with multifd' : 'the hypervisor does not offer it';
    decisions.push({ action: 'no-xbzrle', reason: `xbzrle not armed: ${why}` });
  }
  const postcopyArmed = config.postcopy && streams.kind === 'single' && has('postcopy');
  if (postcopyArmed) {
    source.postcopy = true;
    destination.postcopy = true;
    decisions.push({ action: 'arm-postcopy', reason: 'post-copy armed on both ends (the site allows it): the last resort, after throttle and target are exhausted' });
  } else {
    const why = !config.postcopy ? 'the site does not allow it (a failure after switching would lose the VM)' : streams.kind === 'multifd' ? 'QEMU cannot combine it with multifd' : 'the hypervisor does not offer it';
    decisions.push({ action: 'no-postcopy', reason: `post-copy not armed: ${why}` });
  }
  const dirtyLimit = has('dirty-limit');
  if (!dirtyLimit) {
    decisions.push({
      action: 'no-dirty-limit',
      reason: `per-vCPU dirty limit unavailable under ${ctx.accelerator}: ${ctx.features?.unavailable['dirty-limit'] ?? 'the hypervisor does not offer it'}; throttling uses auto-converge`,
    });
  }
  return { source, destination, streams, xbzrleArmed, xbzrleProbeBytes: probe, postcopyArmed, dirtyLimit, decisions };
}
