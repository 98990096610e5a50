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
 * hosts to one of the least loaded is taken (greedy, as DRS). Every load move
 * lowers the imbalance, so a pass without rule fixes never leaves it worse.
 */
export function balanceCluster(state: ClusterState, cluster: string, options: BalanceOptions): BalancePlan {
  const threshold = Math.min(5, Math.max(1, Math.round(options.threshold)));
  const tolerance = TOLERANCE[threshold]!;
  const minGain = MIN_GAIN[threshold]!;
  const imbalanceBefore = state.imbalance(cluster);
  const moves: ProposedMove[] = [];
  const moved = new Set(options.skip ?? []);
  let budgetMiB = options.maxMiB;
  const take = (vm: string, to: string, reason: string) => {
    const v = state.vm(vm)!;
    const before = state.imbalance(cluster);
    const costSeconds = migrationCost(v, state.host(to)!.linkBytesPerSec).seconds;
    const from = v.host;
    state.move(vm, to);
    const after = state.imbalance(cluster);
    moves.push({ vm, from, to, gain: before - after, imbalanceBefore: before, imbalanceAfter: after, costSeconds, reason });
    moved.add(vm);
    budgetMiB -= v.memoryMiB;
  };
  const inCluster = state.hosts().filter((h) => h.cluster === cluster);
  const fits = (vm: string) => moves.length < options.maxMoves && state.vm(vm)!.memoryMiB <= budgetMiB;

  for (const host of inCluster) {
    for (const vm of state.vmsOn(host.name)) {
      if (!vm.movable || moved.has(vm.name) || !fits(vm.name)) continue;
      const broken = state.violationsInPlace(vm.name);
      if (broken.length === 0) continue;
      const best = rankDestinations(state, vm.name).candidates[0];
      if (best) take(vm.name, best.host, `fixes: ${broken.map((b) => b.reason).join('; ')}`);
    }
  }

  let stoppedBecause = threshold === 1 ? 'threshold 1 applies only moves that fix a rule' : 'balanced within the tolerance';
  while (threshold > 1 && state.imbalance(cluster) > tolerance) {
    if (moves.length >= options.maxMoves || budgetMiB <= 0) {
      stoppedBecause = 'migration budget spent';
      break;
    }
    const active = inCluster.filter((h) => state.host(h.name)!.state === 'connected').sort((a, b) => state.load(b.name) - state.load(a.name));
    const givers = active.slice(0, ENDS);
    const takers = active.slice(-ENDS).reverse();
    const current = state.imbalance(cluster);
    let best: { vm: string; to: string; after: number } | undefined;
    for (const giver of givers) {
      for (const vm of state.vmsOn(giver.name)) {
        if (!vm.movable || moved.has(vm.name) || !fits(vm.name)) continue;
        for (const taker of takers) {
          if (taker.name === giver.name) continue;
          const after = state.imbalanceIfMoved(vm.name, taker.name);
          if (current - after < minGain || (best && after >= best.after)) continue;
          if (state.refusals(vm.name, taker.name).length > 0) continue;
          best = { vm: vm.name, to: taker.name, after };
        }
      }
    }
    if (!best) {
      stoppedBecause = 'no move gains enough under the rules and the budget';
      break;
    }
    const from = state.vm(best.vm)!.host;
    take(best.vm, best.to, `balances load: from ${from} (${pct(state.load(from))}) to ${best.to} (${pct(state.load(best.to))})`);
  }
  return { cluster, threshold, tolerance, imbalanceBefore, imbalanceAfter: state.imbalance(cluster), moves, stoppedBecause };
}

function pct(x: number): string {
  return `${Math.round(x * 100)}%`;
}
