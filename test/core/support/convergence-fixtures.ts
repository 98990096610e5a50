import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { MigrationProgress } from '@motus/sdk';

/** A progress series recorded from a real QEMU migration by the convergence benchmark (see the fixture's `how`). */
export interface RecordedSeries {
  recorded: string;
  how: string;
  machine: { cpus: number; cpuModel: string };
  qemu: { version: string; accelerator: string };
  workload: { name: string; describe: string };
  linkMiBps: number;
  memoryMiB: number;
  /** The link probe the live migration's plan started from (its max-bandwidth), where it matters to the test. */
  linkProbe?: { bytesPerSec: number; probeBytes: number; probeMs: number; lateMs: number };
  /** The policy that steered the recorded migration, and the steps it took then. */
  policyLive: string;
  stepsLive: Array<{ t: number; action: string }>;
  samples: MigrationProgress[];
}

/** Reads test/core/fixtures/convergence/<name>.json from the source tree. */
export function recordedSeries(name: string): RecordedSeries {
  return JSON.parse(readFileSync(fileURLToPath(new URL(`../../../core/fixtures/convergence/${name}.json`, import.meta.url)), 'utf8')) as RecordedSeries;
}
