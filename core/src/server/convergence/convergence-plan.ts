import type { MigrationFeatures, MigrationTuning } from '@motus/sdk';
import type { ConvergenceConfig } from '../../site/site-schema.js';
import { PROBE_STARVED_MS } from '../../agent/link-probe.js';

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
  /** The link between the two hosts as the probe before the migration measured it; absent when no probe ran or it failed. */
  link?: MeasuredLink;
  /** Why there is no measured link (the probe's error), for the plan's reasons. */
  linkUnmeasured?: string;
  /** The switchover target's ceiling, ms (migration.downtimeLimitMs). */
  switchoverCeilingMs: number;
  /** Rollback after this long, ms: proportional to the memory size. */
  timeLimitMs: number;
}

export interface MeasuredLink {
  bytesPerSec: number;
  /** What the probe sent and how long it took. */
  probeBytes: number;
  probeMs: number;
  /** Mean timer lateness of the probe's processes, ms (LinkProbeResult.lateMs). */
  lateMs: number;
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
 * core. Under TCG on a loaded 2-core host a thread moves far less (see
 * docs/convergence.md), which only makes a second channel more worth having.
 */
export const BYTES_PER_CHANNEL = 1 << 30;
const MAX_CHANNELS = 8;
/** QEMU starts throttling at 1% when asked for nothing: the smallest level it accepts, noise for the guest. */
export const DORMANT_THROTTLE_PCT = 1;

/**
 * The link probe before a migration: push at most what the site cap would let
 * through in PROBE_MS, for at most PROBE_MS. A link that carries that much in less
 * time is faster than the cap, which then binds; on a slower link the probe stops at
 * PROBE_MS and reads its rate. So the probe never costs more than PROBE_MS of
 * sending, and a few milliseconds on a link well above the cap.
 */
export const PROBE_MS = 200;
export const PROBE_TIMEOUT_MS = 3_000;

export function linkProbeOptions(maxBandwidthBytesPerSec: number): { durationMs: number; maxBytes: number; timeoutMs: number } {
  return { durationMs: PROBE_MS, maxBytes: Math.max(1 << 20, Math.round((maxBandwidthBytesPerSec * PROBE_MS) / 1000)), timeoutMs: PROBE_TIMEOUT_MS };
}

const MiB = 1 << 20;

function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(bytes < 10 * MiB ? 1 : 0)} MiB`;
}

export function mibps(bytesPerSec: number): string {
  return `${(bytesPerSec / MiB).toFixed(0)} MiB/s`;
}

/**
 * The migration's bandwidth: the measured link rate, never above the site's cap; the
 * cap alone when nothing was measured. A probe that reads at least the cap (within
 * 5%: it stops after the cap's worth of bytes) means the cap binds. A probe whose
 * processes were starved of CPU measured the host, not the link: the cap stays.
 */
export function chooseBandwidth(ctx: ConvergenceContext): { bytesPerSec: number; reason: string } {
  const cap = ctx.maxBandwidthBytesPerSec;
  const link = ctx.link;
  if (!link) return { bytesPerSec: cap, reason: `${mibps(cap)} (site cap; link not measured${ctx.linkUnmeasured ? `: ${ctx.linkUnmeasured}` : ''})` };
  const probe = `probe: ${mib(link.probeBytes)} in ${link.probeMs.toFixed(0)} ms = ${mibps(link.bytesPerSec)}`;
  if (link.lateMs > PROBE_STARVED_MS && link.bytesPerSec < cap) {
    return { bytesPerSec: cap, reason: `${mibps(cap)} (site cap; ${probe}, but its processes waited for a CPU (timers ${link.lateMs.toFixed(0)} ms late): a lower bound of the link, not its rate)` };
  }
  if (link.bytesPerSec >= cap * 0.95) return { bytesPerSec: cap, reason: `${mibps(cap)} (site cap; the link carries more: ${probe})` };
  // QEMU's max-bandwidth is whole bytes per second.
  return { bytesPerSec: Math.floor(link.bytesPerSec), reason: `${mibps(link.bytesPerSec)} (measured link, below the ${mibps(cap)} site cap: ${probe})` };
}

/**
 * Multifd channels: one per BYTES_PER_CHANNEL of the site's cap (the most the link
 * may carry for a migration; not the probe's reading, which arrives while the
 * destination, which must know the count, is already starting), at least two, at most
 * one per core of the smaller host, at most 8. One core means one stream. Two channels
 * even where the link wants one: with multifd the migration thread only walks the
 * dirty bitmap, and zero-page detection and sending run in the channel threads, so
 * the walk and the sends overlap; measured here (2 cores shared with the guest's
 * vCPU, TCG) two channels finished the easy workloads in a fraction of one stream's
 * time (docs/convergence.md). Not less than the cores the vCPUs leave: the channel
 * threads mostly wait on the socket.
 */
export function chooseStreams(config: Pick<ConvergenceConfig, 'multifd'>, ctx: ConvergenceContext): { streams: StreamMode; reason: string } {
  const bandwidthBytesPerSec = ctx.maxBandwidthBytesPerSec;
  if (config.multifd === 'off') return { streams: { kind: 'single' }, reason: 'multifd is off in the site file' };
  if (typeof config.multifd === 'number') return { streams: { kind: 'multifd', channels: config.multifd }, reason: `the site file sets ${config.multifd} multifd channels` };
  const cores = Math.min(ctx.sourceCpus, ctx.destinationCpus);
  const forLink = Math.ceil(bandwidthBytesPerSec / BYTES_PER_CHANNEL);
  const channels = Math.min(MAX_CHANNELS, cores, Math.max(2, forLink));
  const why = `${mibps(bandwidthBytesPerSec)} needs ${forLink} channel(s) of ~${mibps(BYTES_PER_CHANNEL)}, at least 2 so that sending overlaps the bitmap walk; ${cores} core(s) on the smaller host`;
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
  const bandwidth = chooseBandwidth(ctx);
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
    maxBandwidthBytesPerSec: bandwidth.bytesPerSec,
    downtimeLimitMs: target,
    throttle: { initialPct: DORMANT_THROTTLE_PCT, incrementPct: DORMANT_THROTTLE_PCT, maxPct: DORMANT_THROTTLE_PCT, triggerThresholdPct: 100 },
  };
  const destination: MigrationTuning = {};
  decisions.push({
    action: 'start',
    reason:
      `switchover target ${target} ms (site), ceiling ${ctx.switchoverCeilingMs} ms; bandwidth ${bandwidth.reason}; ` +
      `no throttle (auto-converge armed at ${DORMANT_THROTTLE_PCT}%, QEMU's minimum, engaging only while the guest dirties more than is sent); ` +
      `rollback after ${Math.round(ctx.timeLimitMs / 1000)} s for ${mib(ctx.memoryBytes)}`,
    values: { switchoverTargetMs: target, maxBandwidthMiBps: Math.round(bandwidth.bytesPerSec / MiB), ...(ctx.link ? { linkMiBps: Math.round(ctx.link.bytesPerSec / MiB), probeMs: Math.round(ctx.link.probeMs) } : {}), throttlePct: 0, timeLimitS: Math.round(ctx.timeLimitMs / 1000) },
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
