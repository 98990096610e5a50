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
 * after each choice so memory and anti-affinity hold across the whole plan. The
 * members of an affinity group on the host go as one, to the best host that takes
 * them all (or none goes: a split group breaks its rule).
 * `vetoes(vm, host)` adds refusals found outside the model (plugins).
 */
export function planEvacuation(
  state: ClusterState,
  host: string,
  vetoes: (vm: string) => ReadonlyMap<string, Refusal[]> = () => new Map(),
  leaving: ReadonlySet<string> = new Set([host]),
): EvacuationPlan {
  const link = state.host(host)?.linkBytesPerSec ?? 1;
  const cost = (vms: readonly string[]) => vms.reduce((sum, vm) => sum + migrationCost(state.vm(vm)!, link).seconds, 0);
  const units: string[][] = [];
  const grouped = new Set<string>();
  for (const vm of state.vmsOn(host)) {
    if (!vm.movable || grouped.has(vm.name)) continue;
    const unit = state.affinityGroup(vm.name).filter((m) => state.vm(m)!.host === host);
    for (const m of unit) grouped.add(m);
    units.push(unit);
  }
  units.sort((a, b) => cost(a) - cost(b) || a[0]!.localeCompare(b[0]!));
  const moves: EvacuationMove[] = [];
  const stuck: StuckVm[] = [];
  const others = state.hosts().filter((h) => h.name !== host);
  for (const unit of units) {
    const ranking = rankDestinations(state, unit[0]!, { leaving, vetoes: vetoes(unit[0]!) });
    if (unit.length === 1) {
      const best: RankedHost | undefined = ranking.candidates[0];
      if (!best) {
        stuck.push({ vm: unit[0]!, refused: ranking.refused.filter((r) => r.host !== host).map((r) => ({ host: r.host, reasons: r.refusals.map((x) => x.reason) })) });
        continue;
      }
      state.move(unit[0]!, best.host);
      moves.push({ vm: unit[0]!, to: best.host, score: best.score, costSeconds: best.costSeconds, reasons: best.reasons });
      continue;
    }
    const refusalsOf = (to: string) => [...state.groupRefusals(unit, to, leaving), ...unit.slice(1).flatMap((vm) => vetoes(vm).get(to) ?? [])];
    const pinned = unit.filter((vm) => !state.vm(vm)!.movable);
    const best = pinned.length > 0 ? undefined : ranking.candidates.find((c) => refusalsOf(c.host).length === 0);
    if (!best) {
      const held = pinned.length > 0 ? [`affinity peer ${pinned.join(', ')} cannot move now (migrating or paused)`] : [];
      for (const vm of unit.filter((m) => state.vm(m)!.movable)) {
        stuck.push({ vm, refused: others.map((h) => ({ host: h.name, reasons: [...held, ...[...refusalsOf(h.name), ...(ranking.refused.find((r) => r.host === h.name && h.name !== host)?.refusals ?? [])].map((x) => x.reason)].filter((r, i, all) => all.indexOf(r) === i) })) });
      }
      continue;
    }
    for (const vm of unit) {
      state.move(vm, best.host);
      moves.push({ vm, to: best.host, score: best.score, costSeconds: migrationCost(state.vm(vm)!, link).seconds, reasons: [...best.reasons, `with its affinity group ${unit.join(', ')}`] });
    }
  }
  return { host, moves, stuck };
}
