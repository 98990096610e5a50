/**
 * The policies the convergence benchmark compares, each as a plan (the tuning a
 * migration starts with) and a step function over progress samples. Motus's is the
 * real one from @motus/core; the others are fixed policies as their projects run them.
 */
import { ConvergenceConfigSchema, ConvergencePolicy, planConvergence, type ConvergenceConfig, type ConvergenceContext } from '@motus/core';
import type { MigrationProgress, MigrationTuning } from '@motus/sdk';

export interface BenchStep {
  action: string;
  reason: string;
  tune?: MigrationTuning;
  postcopy?: boolean;
}

export interface BenchPolicyRun {
  source: MigrationTuning;
  destination: MigrationTuning;
  /** Steps the plan announced before the start (Motus only). */
  planned: BenchStep[];
  step(sample: MigrationProgress): BenchStep[];
  /** Highest throttle the policy allowed, %. */
  throttlePct(): number;
}

export interface BenchPolicy {
  name: string;
  describe: string;
  /** Measures the link before it starts, as Motus's orchestrator does (its time counts in the total). */
  probesLink?: true;
  start(ctx: ConvergenceContext): BenchPolicyRun;
}

const MiB = 1 << 20;

/**
 * Every capability and parameter a policy may touch, at QEMU's defaults: the
 * source QEMU of one run was the destination of the previous one, and QEMU keeps
 * capabilities and parameters for the life of the process.
 */
export const QEMU_DEFAULTS: MigrationTuning = {
  capabilities: { 'auto-converge': false, xbzrle: false, multifd: false, 'postcopy-ram': false },
  parameters: {
    'downtime-limit': 300,
    'max-bandwidth': 128 * MiB,
    'avail-switchover-bandwidth': 0,
    'cpu-throttle-initial': 20,
    'cpu-throttle-increment': 10,
    'max-cpu-throttle': 99,
    'throttle-trigger-threshold': 50,
    'xbzrle-cache-size': 64 * MiB,
    'multifd-channels': 2,
  },
};

function withDefaults(tuning: MigrationTuning): MigrationTuning {
  return {
    ...tuning,
    capabilities: { ...QEMU_DEFAULTS.capabilities, ...(tuning.capabilities ?? {}) },
    parameters: { ...QEMU_DEFAULTS.parameters, ...(tuning.parameters ?? {}) },
  };
}

/** Motus's plan and policy, with the site's convergence settings. */
export function motusPolicy(overrides: Partial<ConvergenceConfig> = {}, name = 'motus'): BenchPolicy {
  const config = ConvergenceConfigSchema.parse(overrides);
  return {
    name,
    probesLink: true,
    describe: `Motus: plan + policy (${JSON.stringify(overrides) === '{}' ? 'site defaults' : JSON.stringify(overrides)})`,
    start(ctx) {
      const plan = planConvergence(config, ctx);
      const policy = new ConvergencePolicy(config, ctx, plan);
      return {
        source: withDefaults(plan.source),
        destination: plan.destination,
        planned: plan.decisions,
        step: (sample) => policy.next(sample).map((d) => ({ action: d.action, reason: d.reason, ...(d.tune ? { tune: d.tune } : {}), ...(d.postcopy ? { postcopy: true } : {}) })),
        throttlePct: () => policy.state.throttlePct,
      };
    },
  };
}

/** QEMU as it comes: downtime-limit 300 ms, 128 MiB/s, no capabilities, nobody steering. */
export const qemuDefaults: BenchPolicy = {
  name: 'qemu-defaults',
  describe: 'QEMU defaults: downtime-limit 300 ms, max-bandwidth 128 MiB/s, no capabilities',
  start: () => ({ source: withDefaults({}), destination: {}, planned: [], step: () => [], throttlePct: () => 0 }),
};

/**
 * libvirt with VIR_MIGRATE_AUTO_CONVERGE: the auto-converge capability with QEMU's
 * throttle defaults (20% then +10% per trigger), QEMU's 300 ms downtime limit, and
 * no bandwidth limit of its own (libvirt sets the maximum), so the link's cap.
 */
export const libvirtAutoConverge: BenchPolicy = {
  name: 'libvirt-autoconverge',
  describe: 'libvirt-style: auto-converge (initial 20%, +10%), downtime-limit 300 ms, bandwidth = link cap',
  start: (ctx) => ({
    source: withDefaults({ maxBandwidthBytesPerSec: ctx.maxBandwidthBytesPerSec, capabilities: { 'auto-converge': true } }),
    destination: {},
    planned: [],
    step: () => [],
    throttlePct: () => 99,
  }),
};

/**
 * Proxmox VE's qemu-server (QemuMigrate.pm phase2): auto-converge and xbzrle on,
 * xbzrle cache 10% of memory (rounded up to a power of two), downtime-limit 100 ms
 * doubled whenever the remaining size grew in more than five polls (one poll a
 * second), bandwidth unlimited (so the link's cap).
 */
export const proxmoxDoubling: BenchPolicy = {
  name: 'proxmox-doubling',
  describe: 'Proxmox-style: auto-converge + xbzrle (10% cache), downtime-limit 100 ms doubled on a stall, bandwidth = link cap',
  start(ctx) {
    let downtime = 100;
    let counter = 0;
    let lastRemaining: number | undefined;
    let lastPollMs = -Infinity;
    const cache = 2 ** Math.ceil(Math.log2(ctx.memoryBytes / 10));
    return {
      source: withDefaults({
        maxBandwidthBytesPerSec: ctx.maxBandwidthBytesPerSec,
        downtimeLimitMs: downtime,
        capabilities: { 'auto-converge': true, xbzrle: true },
        parameters: { 'xbzrle-cache-size': cache },
      }),
      destination: {},
      planned: [],
      throttlePct: () => 99,
      step(sample) {
        // qemu-server polls once a second; the bench samples every 250 ms.
        if (sample.status !== 'active' || sample.totalTimeMs < lastPollMs + 1000) return [];
        lastPollMs = sample.totalTimeMs;
        const remaining = sample.remainingBytes;
        if ((lastRemaining !== undefined && lastRemaining > 0 && remaining > lastRemaining) || remaining === 0) counter++;
        lastRemaining = remaining;
        if (counter <= 5) return [];
        counter = 0;
        downtime *= 2;
        return [{ action: 'double-downtime', reason: `remaining grew in more than 5 polls: downtime-limit ${downtime} ms`, tune: { downtimeLimitMs: downtime } }];
      },
    };
  },
};
