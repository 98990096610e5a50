import { z } from 'zod';

/**
 * The `placement` section of the site file: clusters of hosts with their balancing
 * mode, resource pools, affinity rules and the health policy. Cross-checks that
 * need the hosts (unknown hosts, contradictory rules, reservations above capacity)
 * are in placement-checks.ts and run with the rest of the site's validation.
 */

const name = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'a name is lowercase letters, digits, dash and underscore (at most 63)');
const vmName = z.string().min(1).max(63);
/** A VM name or a glob of one (`web-*`, `db?`). */
const vmPattern = z.string().min(1).max(128).regex(/^[A-Za-z0-9._*?-]+$/, 'a VM name or glob of letters, digits, . _ - * ?');

export const BalancingSchema = z
  .object({
    /** manual: proposals only; partial: initial placement only; automatic: proposals applied at each interval. */
    mode: z.enum(['manual', 'partial', 'automatic']).default('manual'),
    /** DRS's migration threshold: 1 applies only moves that fix a rule, 5 also moves for small gains. */
    threshold: z.number().int().min(1).max(5).default(3),
    intervalSeconds: z.number().positive().default(300),
    /** The migration budget of one pass. */
    maxMovesPerPass: z.number().int().positive().default(8),
    maxMiBPerPass: z.number().int().positive().default(64 * 1024),
  })
  .strict();

export const ClusterSchema = z
  .object({
    name,
    hosts: z.array(z.string().min(1)).min(1, 'a cluster needs at least one host'),
    balancing: BalancingSchema.prefault({}),
  })
  .strict();

const amount = z
  .object({
    memoryMiB: z.number().int().nonnegative().optional(),
    cpus: z.number().nonnegative().optional(),
  })
  .strict();

export const PoolSchema = z
  .object({
    name,
    /** The cluster the pool's VMs run in (the only cluster when there is one). */
    cluster: name.optional(),
    /** Relative claim under contention: low 500, normal 1000, high 2000, or a number. */
    shares: z.union([z.enum(['low', 'normal', 'high']), z.number().int().min(1).max(1_000_000)]).default('normal'),
    /** Set aside for the pool's VMs in the cluster, whether they use it or not. */
    reservation: amount.prefault({}),
    /** The most the pool's VMs together are given. */
    limit: amount.prefault({}),
    vms: z.array(vmPattern).default([]),
  })
  .strict();

export const RuleSchema = z.discriminatedUnion('kind', [
  z.object({ name, kind: z.literal('affinity'), vms: z.array(vmName).min(2, 'an affinity rule names at least two VMs') }).strict(),
  z.object({ name, kind: z.literal('anti-affinity'), vms: z.array(vmName).min(2, 'an anti-affinity rule names at least two VMs') }).strict(),
  z
    .object({
      name,
      kind: z.literal('vm-host'),
      vms: z.array(vmName).min(1),
      hosts: z.array(z.string().min(1)).min(1),
      /** must / must-not are hard constraints; should / should-not only lower a destination's score. */
      mode: z.enum(['must', 'must-not', 'should', 'should-not']).default('must'),
    })
    .strict(),
]);

export const HealthPolicySchema = z
  .object({
    /** Heartbeats missed in a row that degrade a host before it is marked down at 3 (0: not a signal). */
    missedHeartbeats: z.number().int().min(0).max(2).default(2),
    /** A host whose CPU stays above this (fraction of its cores) for overloadSeconds is degraded. */
    overloadCpu: z.number().positive().max(4).default(0.95),
    overloadSeconds: z.number().positive().default(120),
    /** A thermal zone at or above this (°C), or at its critical trip point, is a thermal signal. */
    thermalMaxCelsius: z.number().positive().default(95),
    /** Correctable ECC errors (summed over memory controllers) that count as a signal; uncorrectable ones always do. */
    eccCorrectableMax: z.number().int().nonnegative().default(100),
    /** What a degraded host leads to: evacuate (lowest-risk VMs first) or only report. */
    onDegraded: z.enum(['evacuate', 'report']).default('evacuate'),
  })
  .strict();

export const PlacementSchema = z
  .object({
    /** How often agents sample CPU and memory use; the server keeps historySamples of them per host. */
    metricsIntervalSeconds: z.number().positive().default(2),
    historySamples: z.number().int().min(2).max(10_000).default(150),
    clusters: z.array(ClusterSchema).default([]),
    pools: z.array(PoolSchema).default([]),
    rules: z.array(RuleSchema).default([]),
    health: HealthPolicySchema.prefault({}),
  })
  .strict();

export type PlacementConfig = z.infer<typeof PlacementSchema>;
export type ClusterConfig = z.infer<typeof ClusterSchema>;
export type BalancingConfig = z.infer<typeof BalancingSchema>;
export type PoolConfig = z.infer<typeof PoolSchema>;
export type RuleConfig = z.infer<typeof RuleSchema>;
export type HealthPolicy = z.infer<typeof HealthPolicySchema>;

/** Shares as a number (DRS's low/normal/high ratio 1:2:4 per unit). */
export function sharesValue(shares: PoolConfig['shares']): number {
  if (typeof shares === 'number') return shares;
  return { low: 500, normal: 1000, high: 2000 }[shares];
}
