import type { BalancePlan, ProposedMove } from '@motus/sdk';
import { migrationCost, rankDestinations } from './advisor.js';
import type { ClusterState } from './cluster-state.js';

export interface BalanceOptions {
  /** 1 (only moves that fix a broken rule) … 5 (moves for small gains too), as DRS's migration threshold. */
  threshold: number;
  maxMoves: number;
  /** Memory the pass may move in all, MiB (the migration budget with maxMoves). */
  maxMiB: number;
  /** VMs not to move (already migrating, just moved). */
  skip?: ReadonlySet<string>;
}


export type { BalancePlan, ProposedMove } from '@motus/sdk';

/** Imbalance each threshold tolerates, and the least gain a move must bring (DRS: higher threshold, smaller gains accepted). */
export const TOLERANCE: Readonly<Record<number, number>> = { 1: Number.POSITIVE_INFINITY, 2: 0.2, 3: 0.1, 4: 0.05, 5: 0.02 };
const MIN_GAIN: Readonly<Record<number, number>> = { 1: Number.POSITIVE_INFINITY, 2: 0.02, 3: 0.01, 4: 0.005, 5: 0.001 };

/** Hosts examined at each end of the load order per step: the most loaded give, the least loaded take. */
const ENDS = 12;

/**
 * One balancing pass over a cluster, on `state` (which it changes: give it a copy).
 * First every VM that breaks a hard rule where it runs is moved to its best
 * destination; then, while the imbalance is above the threshold's tolerance and the
 * budget lasts, the single move with the largest gain from one of the most loaded
 * hosts to one of the least loaded is taken (greedy, as DRS). A VM bound by affinity
 * rules moves only with its whole group, as one proposal (every member, to one host,
 * its gain and cost combined) counted in the budget member by member. Every load
 * move lowers the imbalance, so a pass without rule fixes never leaves it worse.
 */
export function balanceCluster(state: ClusterState, cluster: string, options: BalanceOptions): BalancePlan {
  const threshold = Math.min(5, Math.max(1, Math.round(options.threshold)));
  const tolerance = TOLERANCE[threshold]!;
  const minGain = MIN_GAIN[threshold]!;
  const imbalanceBefore = state.imbalance(cluster);
  const moves: ProposedMove[] = [];
  const moved = new Set(options.skip ?? []);
  let budgetMiB = options.maxMiB;
  let migrations = 0;
  const take = (group: readonly string[], to: string, reason: string) => {
    const before = state.imbalance(cluster);
    const from = state.vm(group[0]!)!.host;
    let costSeconds = 0;
    for (const vm of group) {
      const v = state.vm(vm)!;
      costSeconds += migrationCost(v, state.host(to)!.linkBytesPerSec).seconds;
      state.move(vm, to);
      moved.add(vm);
      budgetMiB -= v.memoryMiB;
      migrations++;
    }
    const after = state.imbalance(cluster);
    moves.push({ vm: group[0]!, ...(group.length > 1 ? { vms: [...group] } : {}), from, to, gain: before - after, imbalanceBefore: before, imbalanceAfter: after, costSeconds, reason });
  };
  /** The unit `vm` moves in: itself, or its affinity group when every member shares its host and may move; undefined when it may not move now. */
  const unitOf = (vm: string): string[] | undefined => {
    const group = state.affinityGroup(vm);
    const host = state.vm(vm)!.host;
    if (group.some((m) => !state.vm(m)!.movable || moved.has(m) || state.vm(m)!.host !== host)) return undefined;
    const memory = group.reduce((sum, m) => sum + state.vm(m)!.memoryMiB, 0);
    return migrations + group.length <= options.maxMoves && memory <= budgetMiB ? group : undefined;
  };
  const refusals = (unit: readonly string[], to: string) => (unit.length === 1 ? state.refusals(unit[0]!, to) : state.groupRefusals(unit, to));
  const inCluster = state.hosts().filter((h) => h.cluster === cluster);

  for (const host of inCluster) {
    for (const vm of state.vmsOn(host.name)) {
      const broken = state.violationsInPlace(vm.name);
      if (broken.length === 0) continue;
      const unit = unitOf(vm.name);
      if (!unit) continue;
      const fixes = `fixes: ${broken.map((b) => b.reason).join('; ')}`;
      if (unit.length === 1) {
        const best = rankDestinations(state, vm.name).candidates[0];
        if (best) take(unit, best.host, fixes);
        continue;
      }
      let best: { to: string; after: number } | undefined;
      for (const taker of inCluster) {
        if (refusals(unit, taker.name).length > 0) continue;
        const after = state.imbalanceIfMovedAll(unit, taker.name);
        if (!best || after < best.after) best = { to: taker.name, after };
      }
      if (best) take(unit, best.to, `${fixes} (with its affinity group)`);
    }
  }

  let stoppedBecause = threshold === 1 ? 'threshold 1 applies only moves that fix a rule' : 'balanced within the tolerance';
  while (threshold > 1 && state.imbalance(cluster) > tolerance) {
    if (migrations >= options.maxMoves || budgetMiB <= 0) {
      stoppedBecause = 'migration budget spent';
      break;
    }
    const active = inCluster.filter((h) => state.host(h.name)!.state === 'connected').sort((a, b) => state.load(b.name) - state.load(a.name));
    const givers = active.slice(0, ENDS);
    const takers = active.slice(-ENDS).reverse();
    const current = state.imbalance(cluster);
    let best: { unit: string[]; to: string; after: number } | undefined;
    for (const giver of givers) {
      const seen = new Set<string>();
      for (const vm of state.vmsOn(giver.name)) {
        if (seen.has(vm.name)) continue;
        const unit = unitOf(vm.name);
        if (!unit) continue;
        for (const member of unit) seen.add(member);
        for (const taker of takers) {
          if (taker.name === giver.name) continue;
          const after = unit.length === 1 ? state.imbalanceIfMoved(vm.name, taker.name) : state.imbalanceIfMovedAll(unit, taker.name);
          if (current - after < minGain || (best && after >= best.after)) continue;
          if (refusals(unit, taker.name).length > 0) continue;
          best = { unit, to: taker.name, after };
        }
      }
    }
    if (!best) {
      stoppedBecause = 'no move gains enough under the rules and the budget';
      break;
    }
    const from = state.vm(best.unit[0]!)!.host;
    const what = best.unit.length > 1 ? ` (affinity group ${best.unit.join(', ')} together)` : '';
    take(best.unit, best.to, `balances load: from ${from} (${pct(state.load(from))}) to ${best.to} (${pct(state.load(best.to))})${what}`);
  }
  return { cluster, threshold, tolerance, imbalanceBefore, imbalanceAfter: state.imbalance(cluster), moves, stoppedBecause };
}

function pct(x: number): string {
  return `${Math.round(x * 100)}%`;
}
