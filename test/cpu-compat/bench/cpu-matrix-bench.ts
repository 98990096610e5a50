/**
 * Baselines and the verdict matrix for 1,000 hosts × 10,000 VMs over fourteen CPU
 * generations (QEMU's own feature sets, from the recorded replies), against the
 * anchor: one full verdict (judge) per cell, timed on a slice and scaled.
 *   node test/dist/cpu-compat/bench/cpu-matrix-bench.js [out.json]
 */
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { computeBaseline, effectiveCpu, judge, verdictMatrix } from '@motus/cpu-compat';
import type { HostCpuFacts } from '@motus/sdk';
import { modelledHost, recordedModels } from '../support/fixtures.js';

const INTEL = ['Nehalem-v2', 'Westmere-v2', 'SandyBridge-v2', 'IvyBridge-v2', 'Haswell-v4', 'Broadwell-v4', 'Skylake-Server-v5', 'Cascadelake-Server-v5', 'Icelake-Server-v7', 'SapphireRapids-v3'];
const AMD = ['EPYC-v4', 'EPYC-Rome-v4', 'EPYC-Milan-v2', 'EPYC-Genoa-v1'];
const HOSTS = 1_000;
const VMS = 10_000;

const models = recordedModels();
const gens = [...INTEL, ...AMD];
const profiles = new Map(gens.map((g) => [g, modelledHost(g, g)]));
const hosts: HostCpuFacts[] = Array.from({ length: HOSTS }, (_, i) => ({ ...profiles.get(gens[i % gens.length]!)!, host: `host-${i}` }));

// One cluster per vendor, each with an auto baseline; VMs take a baseline CPU with
// a mask, or a generation's own model.
const t0 = performance.now();
const intelHosts = hosts.filter((h) => h.vendor === 'GenuineIntel');
const amdHosts = hosts.filter((h) => h.vendor === 'AuthenticAMD');
const intel = computeBaseline('auto', intelHosts, models);
const amd = computeBaseline('auto', amdHosts, models);
const baselineMs = performance.now() - t0;

const masks = [undefined, { hide: ['aes'] }, { hide: ['avx'] }, { hide: ['pclmulqdq', 'popcnt'] }];
const vms = Array.from({ length: VMS }, (_, i) => {
  if (i % 3 === 0) return { name: `vm-${i}`, cpuModel: gens[i % gens.length]! };
  const b = i % 2 === 0 ? intel : amd;
  return { name: `vm-${i}`, cpuModel: effectiveCpu(b, masks[i % masks.length], models) };
});

const t1 = performance.now();
const matrix = verdictMatrix(models, vms, hosts, 'qemu64');
const matrixMs = performance.now() - t1;
let allowed = 0;
for (const cell of matrix.allowed) allowed += cell;

// Anchor: a full verdict per cell, on 100 VMs × all hosts, scaled to the whole matrix.
const slice = 100;
const t2 = performance.now();
let agree = 0;
for (let v = 0; v < slice; v++) {
  for (let h = 0; h < HOSTS; h++) if (judge(models, vms[v]!.cpuModel, hosts[h]!).compatible === matrix.can(v, h)) agree++;
}
const anchorMs = ((performance.now() - t2) * VMS) / slice;
if (agree !== slice * HOSTS) throw new Error(`the matrix and the per-cell verdicts disagree on ${slice * HOSTS - agree} cells`);

const result = {
  hosts: HOSTS,
  vms: VMS,
  generations: gens.length,
  baselines: { intel: intel.cpu, amd: amd.cpu, ms: Math.round(baselineMs * 10) / 10 },
  matrix: { ms: Math.round(matrixMs), cells: VMS * HOSTS, allowed, distinctCpus: matrix.distinctCpus, distinctHosts: matrix.distinctHosts },
  anchor: { what: 'judge() per cell, 100 VMs × 1,000 hosts timed, scaled ×100', ms: Math.round(anchorMs) },
  speedup: Math.round((anchorMs / matrixMs) * 10) / 10,
};
console.log('| what | time |');
console.log('| --- | --- |');
console.log(`| auto baselines (Intel ${intel.cpu}, AMD ${amd.cpu}) over ${HOSTS} hosts | ${result.baselines.ms} ms |`);
console.log(`| verdict matrix ${VMS} VMs × ${HOSTS} hosts (${matrix.distinctCpus} CPUs × ${matrix.distinctHosts} profiles), ${allowed} cells allowed | ${result.matrix.ms} ms |`);
console.log(`| anchor: one full verdict per cell (scaled) | ${result.anchor.ms} ms |`);
console.log(`| ratio anchor / matrix | ${result.speedup}× |`);
if (process.argv[2]) writeFileSync(process.argv[2], JSON.stringify(result, null, 2) + '\n');
