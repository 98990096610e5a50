/**
 * Placement benchmark (node test/dist/bench/placement-bench.js): a simulated cluster
 * of 1,000 hosts and 20,000 VMs (test/support/cluster-sim.ts, fixed seed), the
 * placement engine alone: no I/O.
 *
 * - Recommendation for one VM: every host ranked with score and reasons. Anchor:
 *   the same ranking with the imbalance recomputed over all hosts for each candidate
 *   (the obvious implementation, O(hosts²)).
 * - One full balancing pass (threshold 5, budget 8 moves): Motus examines the most
 *   and least loaded hosts each step. Anchor: exhaustive greedy over every movable
 *   VM × every host with the same O(1) delta. Both report the imbalance they reach.
 *
 * Prints each time, the anchor's, the ratio, and writes bench-results/placement.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { balanceCluster, ClusterState, rankDestinations } from '@motus/core';
import { simulateCluster } from '../support/cluster-sim.js';
import { repoRoot } from '../support/index.js';

const HOSTS = Number(process.env.MOTUS_BENCH_HOSTS ?? 1_000);
const VMS = Number(process.env.MOTUS_BENCH_VMS ?? 20_000);
const RUNS = Number(process.env.MOTUS_BENCH_RUNS ?? 5);
const MOVES = 8;

const built0 = performance.now();
const model = simulateCluster({ seed: 20260126, hosts: HOSTS, vms: VMS, antiAffinityGroups: 400, vmHostRules: 200, hotHosts: 100 });
const buildMs = performance.now() - built0;
const state0 = performance.now();
const shared = new ClusterState(model);
const stateMs = performance.now() - state0;
const cluster = shared.clusters()[0]!;
const probe = model.vms.find((v) => v.movable && shared.host(v.host)!.name === model.hosts[0]!.name) ?? model.vms[0]!;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function time<T>(fn: () => T): { ms: number; value: T } {
  const t0 = performance.now();
  const value = fn();
  return { ms: performance.now() - t0, value };
}

/** Anchor ranking: hard constraints the same, imbalance recomputed from every host's load per candidate. */
function naiveRank(state: ClusterState, vm: string): Array<{ host: string; imbalance: number }> {
  const v = state.vm(vm)!;
  const hosts = state.hosts().filter((h) => h.cluster === cluster);
  const out: Array<{ host: string; imbalance: number }> = [];
  for (const to of hosts) {
    if (state.refusals(vm, to.name).length > 0) continue;
    const loads = hosts
      .filter((h) => h.state === 'connected')
      .map((h) => state.load(h.name) + (h.name === to.name ? state.vmLoadOn(vm, to.name) : 0) - (h.name === v.host ? state.vmLoadOn(vm, v.host) : 0));
    const mean = loads.reduce((s, x) => s + x, 0) / loads.length;
    out.push({ host: to.name, imbalance: Math.sqrt(loads.reduce((s, x) => s + (x - mean) ** 2, 0) / loads.length) });
  }
  return out.sort((a, b) => a.imbalance - b.imbalance);
}

/** Anchor balancing: each step tries every movable VM on every host. */
function exhaustiveBalance(state: ClusterState): number {
  const moved = new Set<string>();
  for (let step = 0; step < MOVES; step++) {
    const current = state.imbalance(cluster);
    let best: { vm: string; to: string; after: number } | undefined;
    for (const vm of state.allVms()) {
      if (!vm.movable || moved.has(vm.name)) continue;
      for (const host of state.hosts()) {
        if (host.name === vm.host) continue;
        const after = state.imbalanceIfMoved(vm.name, host.name);
        if (after >= current - 0.001 || (best && after >= best.after)) continue;
        if (state.refusals(vm.name, host.name).length > 0) continue;
        best = { vm: vm.name, to: host.name, after };
      }
    }
    if (!best) break;
    state.move(best.vm, best.to);
    moved.add(best.vm);
  }
  return state.imbalance(cluster);
}

const rank = Array.from({ length: RUNS }, () => time(() => rankDestinations(shared, probe.name)));
const rankAnchor = Array.from({ length: RUNS }, () => time(() => naiveRank(shared, probe.name)));
const balance = Array.from({ length: RUNS }, () => {
  const state = new ClusterState(model);
  return time(() => balanceCluster(state, cluster, { threshold: 5, maxMoves: MOVES, maxMiB: 1 << 30 }));
});
const anchorRuns = Math.max(1, Math.min(RUNS, Number(process.env.MOTUS_BENCH_ANCHOR_RUNS ?? 1)));
const balanceAnchor = Array.from({ length: anchorRuns }, () => {
  const state = new ClusterState(model);
  return time(() => exhaustiveBalance(state));
});

const ranking = rank[0]!.value;
const plan = balance[0]!.value;
const rankMs = median(rank.map((r) => r.ms));
const rankAnchorMs = median(rankAnchor.map((r) => r.ms));
const balanceMs = median(balance.map((r) => r.ms));
const balanceAnchorMs = median(balanceAnchor.map((r) => r.ms));

console.log(`placement benchmark: ${HOSTS} hosts, ${model.vms.length} VMs, ${model.rules.antiAffinity.length} anti-affinity and ${model.rules.vmHost.length} vm-host rules; median of ${RUNS} runs (anchor balancing: ${anchorRuns})`);
console.log(`model built in ${buildMs.toFixed(0)} ms, indexed (ClusterState) in ${stateMs.toFixed(1)} ms`);
console.log('');
console.log('operation                               | Motus ms | anchor ms | ratio  | result');
console.log('----------------------------------------|----------|-----------|--------|-------');
console.log(
  `recommend one VM (rank ${HOSTS} hosts)       | ${rankMs.toFixed(2).padStart(8)} | ${rankAnchorMs.toFixed(2).padStart(9)} | ×${(rankAnchorMs / rankMs).toFixed(1).padStart(5)} | ${ranking.candidates.length} candidates, ${ranking.refused.length} refused, best ${ranking.candidates[0]?.host ?? '-'} (${ranking.candidates[0]?.score ?? '-'})`,
);
console.log(
  `balancing pass (threshold 5, ${MOVES} moves)    | ${balanceMs.toFixed(1).padStart(8)} | ${balanceAnchorMs.toFixed(1).padStart(9)} | ×${(balanceAnchorMs / balanceMs).toFixed(1).padStart(5)} | imbalance ${plan.imbalanceBefore.toFixed(4)} -> ${plan.imbalanceAfter.toFixed(4)} (anchor ${balanceAnchor[0]!.value.toFixed(4)}), ${plan.moves.length} moves`,
);
const dir = join(repoRoot, 'bench-results');
mkdirSync(dir, { recursive: true });
const file = join(dir, 'placement.json');
writeFileSync(
  file,
  JSON.stringify(
    {
      at: new Date().toISOString(),
      hosts: HOSTS,
      vms: model.vms.length,
      runs: RUNS,
      recommend: { motusMs: rankMs, anchorMs: rankAnchorMs, ratio: rankAnchorMs / rankMs, candidates: ranking.candidates.length, refused: ranking.refused.length },
      balance: {
        motusMs: balanceMs,
        anchorMs: balanceAnchorMs,
        ratio: balanceAnchorMs / balanceMs,
        moves: plan.moves.length,
        imbalanceBefore: plan.imbalanceBefore,
        imbalanceAfter: plan.imbalanceAfter,
        anchorImbalanceAfter: balanceAnchor[0]!.value,
      },
    },
    null,
    2,
  ) + '\n',
);
console.log(`JSON: ${file}`);
