/**
 * Redraws the remaining-bytes plot of a convergence benchmark JSON (the bench draws
 * it too; this is for a result kept from an earlier run):
 *
 *   node test/dist/bench/convergence/plot-json.js bench-results/convergence.json out.svg
 */
import { readFileSync, writeFileSync } from 'node:fs';
import type { RunResult } from './runner.js';
import { remainingPlot } from './svg-plot.js';

const COLORS: Record<string, string> = { motus: '#d62728', 'qemu-defaults': '#7f7f7f', 'libvirt-autoconverge': '#1f77b4', 'proxmox-doubling': '#2ca02c' };
const [input, output] = process.argv.slice(2);
if (!input || !output) {
  console.error('usage: plot-json.js <bench json> <out.svg>');
  process.exit(2);
}
const bench = JSON.parse(readFileSync(input, 'utf8')) as {
  at: string;
  machine: { cpus: number; cpuModel: string; loadavgAtStart: number[] };
  qemu: { version: string; accelerator: string };
  workloads: Array<{ name: string; describe: string }>;
  policies: Array<{ name: string; describe: string }>;
  runs: Array<{ workload: string; runs: RunResult[] }>;
};
const panels = bench.runs.map(({ workload, runs }) => ({
  title: `${workload}: ${bench.workloads.find((w) => w.name === workload)?.describe ?? ''}`,
  series: bench.policies.map((policy) => {
    const first = runs.find((r) => r.policy === policy.name)!;
    return {
      label: `${policy.name}: ${policy.describe.replace(/^[^:]*: /, '')}`,
      color: COLORS[policy.name] ?? '#000',
      completed: first.completed,
      points: first.samples.map((s) => ({ t: s.t / 1000, mib: s.progress.remainingBytes / (1 << 20) })),
    };
  }),
}));
const m = bench.machine;
writeFileSync(output, remainingPlot(panels, `Remaining bytes over time, first run of each policy (${bench.at}; ${m.cpus} × ${m.cpuModel}, load ${m.loadavgAtStart.join('/')}; QEMU ${bench.qemu.version} ${bench.qemu.accelerator})`));
console.log(output);
