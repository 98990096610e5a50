import { migrationCost, rankDestinations, type RankedHost } from './advisor.js';
import type { EvacuationMove, Refusal, StuckVm } from '@motus/sdk';
import type { ClusterState } from './cluster-state.js';

export interface EvacuationPlan {
  host: string;
  /** In the order they should go: lowest risk (cheapest to move) first. */
  moves: EvacuationMove[];
  stuck: StuckVm[];
}

/**
 * Where each VM of a host goes when the host is emptied (maintenance, degraded):
 * VMs in order of risk — the cheapest to move (small, quiet) first, so most VMs
 * are safe soonest — each to the wizard's best destination, the model updated
 * after each choice so memory and anti-affinity hold across the whole plan.
 * `vetoes(vm, host)` adds refusals found outside the model (plugins).
 */
export function planEvacuation(
  state: ClusterState,
  host: string,
  vetoes: (vm: string) => ReadonlyMap<string, Refusal[]> = () => new Map(),
  leaving: ReadonlySet<string> = new Set([host]),
): EvacuationPlan {
  const link = state.host(host)?.linkBytesPerSec ?? 1;
  const vms = state
    .vmsOn(host)
    .filter((vm) => vm.movable)
    .sort((a, b) => migrationCost(a, link).seconds - migrationCost(b, link).seconds || a.name.localeCompare(b.name));
  const moves: EvacuationMove[] = [];
  const stuck: StuckVm[] = [];
  for (const vm of vms) {
    const ranking = rankDestinations(state, vm.name, { leaving, vetoes: vetoes(vm.name) });
    const best: RankedHost | undefined = ranking.candidates[0];
    if (!best) {
      stuck.push({
        vm: vm.name,
        refused: ranking.refused.filter((r) => r.host !== host).map((r) => ({ host: r.host, reasons: r.refusals.map((x) => x.reason) })),
      });
      continue;
    }
    state.move(vm.name, best.host);
    moves.push({ vm: vm.name, to: best.host, score: best.score, costSeconds: best.costSeconds, reasons: best.reasons });
  }
  return { host, moves, stuck };
}
