/**
 * Turns one run of a convergence benchmark JSON into a recorded progress series
 * for the policy's unit tests (test/core/fixtures/convergence/<name>.json):
 *
 *   node test/dist/bench/convergence/extract-fixture.js bench-results/convergence.json <workload> <policy> <name> "<how it was run>"
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../../support/index.js';
import type { RunResult } from './runner.js';

interface BenchJson {
  at: string;
  machine: unknown;
  qemu: { version: string; accelerator: string };
  workloads: Array<{ name: string; describe: string }>;
  linkMiBps: number;
  memoryMiB: number;
  runs: Array<{ workload: string; runs: RunResult[] }>;
}

const [file, workload, policy, name, how] = process.argv.slice(2);
if (!file || !workload || !policy || !name || !how) {
  console.error('usage: extract-fixture.js <bench json> <workload> <policy> <fixture name> "<bench command that recorded it>"');
  process.exit(2);
}
const { readFileSync } = await import('node:fs');
const bench = JSON.parse(readFileSync(file, 'utf8')) as BenchJson;
const run = bench.runs.find((r) => r.workload === workload)?.runs.find((r) => r.policy === policy);
if (!run) {
  console.error(`no run of ${policy} on ${workload} in ${file}`);
  process.exit(1);
}
const fixture = {
  recorded: bench.at,
  how: `${how}; query-migrate every 250 ms mapped by @motus/hv-qemu toMigrationProgress`,
  machine: bench.machine,
  qemu: { version: bench.qemu.version, accelerator: bench.qemu.accelerator },
  workload: bench.workloads.find((w) => w.name === workload),
  linkMiBps: bench.linkMiBps,
  memoryMiB: bench.memoryMiB,
  policyLive: policy,
  stepsLive: run.steps.map((s) => ({ t: s.t, action: s.action })),
  samples: run.samples.map((s) => s.progress),
};
const out = join(repoRoot, 'test', 'core', 'fixtures', 'convergence', `${name}.json`);
// One sample per line: reviewable diffs, small files.
writeFileSync(out, JSON.stringify(fixture).replace(/\},\{"status"/g, '},\n{"status"') + '\n');
console.log(`${out}: ${fixture.samples.length} samples`);
