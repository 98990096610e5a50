import type { PlacementVm } from './cluster-model.js';
import type { Ranking, RankedHost, RefusedHost, Refusal } from '@motus/sdk';
import type { ClusterState } from './cluster-state.js';

export type { Ranking, RankedHost, RefusedHost } from '@motus/sdk';


export interface RankOptions {
  /** Hosts being emptied: affinity peers there move too. */
  leaving?: ReadonlySet<string>;
  /** Refusals found outside the model (a plugin's validate veto), by host. */
  vetoes?: ReadonlyMap<string, Refusal[]>;
}

/** Weights of the score's parts; they add up to 100. */
const WEIGHT = { balance: 45, headroom: 25, cost: 20, concurrency: 10 } as const;

/** Seconds to copy the VM's memory at the link's rate less its dirty rate (pre-copy's first-order cost). */
export function migrationCost(vm: PlacementVm, linkBytesPerSec: number): { seconds: number; bytes: number; mayNotConverge: boolean } {
  const bytes = Math.min(vm.memoryMiB, Math.max(vm.memoryUsedMiB, 1)) * 1024 * 1024;
  const net = linkBytesPerSec - vm.dirtyBytesPerSec;
  const mayNotConverge = net < linkBytesPerSec * 0.1;
  return { seconds: bytes / Math.max(net, linkBytesPerSec * 0.1), bytes, mayNotConverge };
}

/**
 * Ranks every host of the site as a destination for one VM: hosts that break a
 * hard constraint (state, cluster, memory, rules, a plugin's veto) are listed with
 * their reasons; the others get a score from the balance the move leaves, the
 * destination's headroom, the migration's cost and the migrations already running
 * there, soft rules adding or taking points. A VM on no host of the model is about
 * to start (initial placement): every cluster may take it, each scored against its
 * own imbalance, and it costs no copy.
 */
export function rankDestinations(state: ClusterState, vmName: string, options: RankOptions = {}): Ranking {
  const vm = state.vm(vmName);
  if (!vm) throw new Error(`no VM ${vmName} in the model`);
  const source = state.host(vm.host);
  const initial = source === undefined;
  const cluster = source?.cluster ?? '';
  const imbalanceBefore = state.imbalance(cluster);
  const candidates: RankedHost[] = [];
  const refused: RefusedHost[] = [];
  for (const host of state.hosts()) {
    const refusals = [...state.refusals(vmName, host.name, options.leaving), ...(options.vetoes?.get(host.name) ?? [])];
    if (refusals.length > 0) {
      refused.push({ host: host.name, refusals });
      continue;
    }
    candidates.push(score(state, vm, host.name, initial ? state.imbalance(host.cluster) : imbalanceBefore, source?.linkBytesPerSec, initial));
  }
  candidates.sort((a, b) => b.score - a.score || a.imbalanceAfter - b.imbalanceAfter || a.host.localeCompare(b.host));
  refused.sort((a, b) => a.host.localeCompare(b.host));
  return { vm: vmName, source: vm.host, cluster, imbalanceBefore, candidates, refused, ...(initial ? { initial: true } : {}) };
}

function score(state: ClusterState, vm: PlacementVm, to: string, imbalanceBefore: number, sourceLink: number | undefined, initial: boolean): RankedHost {
  const host = state.host(to)!;
  const imbalanceAfter = state.imbalanceIfMoved(vm.name, to);
  const loadBefore = state.load(to);
  const loadAfter = loadBefore + state.vmLoadOn(vm.name, to);
  const freeMiBAfter = state.freeMiB(to) - vm.memoryMiB;
  const link = Math.min(host.linkBytesPerSec, sourceLink ?? host.linkBytesPerSec);
  const cost = initial ? { seconds: 0, bytes: 0, mayNotConverge: false } : migrationCost(vm, link);
  const balance = clamp(0.5 + (imbalanceBefore - imbalanceAfter) / (2 * Math.max(imbalanceBefore, 0.02)));
  const headroom = clamp(1 - loadAfter);
  const costPart = 1 / (1 + cost.seconds / 20);
  const concurrency = clamp(1 - host.activeMigrations / Math.max(host.maxMigrations, 1));
  let points = WEIGHT.balance * balance + WEIGHT.headroom * headroom + WEIGHT.cost * costPart + WEIGHT.concurrency * concurrency;
  const reasons = [
    `balance: cluster ${host.cluster} imbalance ${imbalanceBefore.toFixed(3)} -> ${imbalanceAfter.toFixed(3)}`,
    `load: ${to} ${pct(loadBefore)} -> ${pct(loadAfter)} (cpu ${pct(state.loadParts(to).cpu)}, memory ${pct(state.loadParts(to).memory)} now)`,
    `memory: ${freeMiBAfter} MiB of ${host.memoryTotalMiB} MiB free after the move`,
    initial
      ? `cost: none (a new VM starts there, nothing to copy)`
      : `cost: ~${cost.seconds.toFixed(1)} s to copy ${(cost.bytes / 1048576).toFixed(0)} MiB at ${(link / 1048576).toFixed(0)} MiB/s (${host.linkSource}), dirtying ${(vm.dirtyBytesPerSec / 1048576).toFixed(1)} MiB/s${cost.mayNotConverge ? '; may not converge without throttling' : ''}`,
    `concurrency: ${host.activeMigrations} of ${host.maxMigrations} migrations running on ${to}`,
  ];
  for (const pref of state.preferences(vm.name, to)) {
    points += pref.met ? 5 : -10;
    reasons.push(`${pref.met ? 'meets' : 'breaks'} ${pref.text}`);
  }
  return {
    host: to,
    score: Math.round(clamp(points / 100) * 1000) / 10,
    reasons,
    imbalanceAfter,
    loadAfter,
    freeMiBAfter,
    costSeconds: cost.seconds,
    mayNotConverge: cost.mayNotConverge,
  };
}

function clamp(x: number): number {
  return Math.min(1, Math.max(0, x));
}

function pct(x: number): string {
  return `${Math.round(x * 100)}%`;
}
