/**
 * Migration benchmark (npm run bench): five migrations of an idle 256 MiB guest and
 * five with the dirtier at 20 MB/s, through a whole Motus site (API → server → agents
 * → QEMU), against the anchor: the same QEMU migrations driven directly over QMP with
 * no control plane, in the same run. Prints a table with the ratios and writes JSON.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { MigrationEvent, VmSpec } from '@motus/sdk';
import { QemuDriver } from '@motus/hv-qemu';
import { guestKit, parseHeartbeats, repoRoot, requireCommand, startSite, tempDir, waitFor } from '../support/index.js';

const RUNS = Number(process.env.MOTUS_BENCH_RUNS ?? 5);
const BANDWIDTH_MIBPS = 1024;
const DOWNTIME_LIMIT_MS = 300;

interface Sample {
  downtimeMs: number;
  totalTimeMs: number;
  bytes: number;
  controlPlaneMs?: number;
}

interface Scenario {
  name: string;
  dirty?: { dirtyMBps: number; workingSetMiB: number };
}

const scenarios: Scenario[] = [{ name: 'idle 256 MiB' }, { name: 'dirtier 20 MB/s', dirty: { dirtyMBps: 20, workingSetMiB: 64 } }];

function spec(name: string, scenario: Scenario): VmSpec {
  const kit = guestKit();
  return { name, memoryMiB: 256, vcpus: 1, boot: { kind: 'kernel', kernel: kit.kernel, initrd: kit.initrd, cmdline: kit.cmdline(scenario.dirty ?? {}) } };
}

async function waitBooted(serialLog: string): Promise<void> {
  await waitFor('the guest to boot', () => (parseHeartbeats(readFileSync(serialLog, 'utf8')).length >= 3 ? true : undefined), 120_000, 200);
}

async function motusRuns(scenario: Scenario): Promise<Sample[]> {
  const site = await startSite(
    `site: bench\nmigration:\n  maxBandwidthMiBps: ${BANDWIDTH_MIBPS}\n  downtimeLimitMs: ${DOWNTIME_LIMIT_MS}\nhosts:\n  - name: host-a\n    memoryMiB: 2048\n  - name: host-b\n    memoryMiB: 2048\n`,
  );
  try {
    const vm = await site.client.startVm(spec('bench', scenario), 'host-a');
    await waitBooted(vm.serialLog!);
    const samples: Sample[] = [];
    for (let i = 0; i < RUNS; i++) {
      const summary = await site.client.migrate({ vm: 'bench', destination: i % 2 === 0 ? 'host-b' : 'host-a' });
      let completed: Extract<MigrationEvent, { type: 'completed' }> | undefined;
      for await (const event of site.client.migrationEvents(summary.id)) if (event.type === 'completed') completed = event;
      if (!completed) throw new Error(`Motus migration ${summary.id} did not complete`);
      samples.push({ downtimeMs: completed.downtimeMs, totalTimeMs: completed.totalTimeMs, bytes: completed.bytes, controlPlaneMs: completed.controlPlaneMs });
    }
    await site.client.stopVm('bench');
    return samples;
  } finally {
    await site.stop();
  }
}

/** The anchor: two QEMU processes and QMP, nothing else; timed from the launch of the destination. */
async function qemuRuns(scenario: Scenario): Promise<Sample[]> {
  const dir = tempDir('bench-anchor');
  const driver = new QemuDriver({});
  try {
    let source = await driver.launch(spec('anchor', scenario), { runDir: join(dir.path, 'run-0') });
    await waitBooted(source.serialLog);
    const samples: Sample[] = [];
    for (let i = 0; i < RUNS; i++) {
      const t0 = performance.now();
      const destination = await driver.launch(spec('anchor', scenario), { runDir: join(dir.path, `run-${i + 1}`), incoming: true });
      const uri = await destination.listenForMigration('127.0.0.1', 0);
      await source.startMigration(uri, { maxBandwidthBytesPerSec: BANDWIDTH_MIBPS * 1024 * 1024, downtimeLimitMs: DOWNTIME_LIMIT_MS, capabilities: { events: true } });
      let progress = await source.migrationProgress();
      while (progress.status !== 'completed') {
        if (progress.status === 'failed' || progress.status === 'cancelled') throw new Error(`anchor migration ${progress.status}: ${progress.error ?? ''}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
        progress = await source.migrationProgress();
      }
      await waitFor('the anchor destination to run', async () => ((await destination.runState()) === 'running' ? true : undefined), 10_000, 10);
      samples.push({ downtimeMs: progress.downtimeMs ?? 0, totalTimeMs: performance.now() - t0, bytes: progress.transferredBytes });
      await source.stop(2_000);
      source = destination;
    }
    await source.stop(2_000);
    return samples;
  } finally {
    await driver.dispose();
    dir.remove();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

interface Row {
  scenario: string;
  motus: Sample & { controlPlaneMs: number };
  qemuDirect: Sample;
  ratio: { totalTime: number; downtime: number };
  samples: { motus: Sample[]; qemuDirect: Sample[] };
}

function medians(samples: Sample[]): Sample & { controlPlaneMs: number } {
  return {
    downtimeMs: median(samples.map((s) => s.downtimeMs)),
    totalTimeMs: median(samples.map((s) => s.totalTimeMs)),
    bytes: median(samples.map((s) => s.bytes)),
    controlPlaneMs: median(samples.map((s) => s.controlPlaneMs ?? 0)),
  };
}

async function main(): Promise<void> {
  requireCommand('qemu-system-x86_64', 'qemu-system-x86');
  const kit = guestKit();
  const facts = await new QemuDriver({}).probe();
  console.log(`migration benchmark: ${RUNS} runs per scenario, QEMU ${facts.version} (${facts.accelerator}), kernel ${kit.kernel}`);
  const rows: Row[] = [];
  for (const scenario of scenarios) {
    const motus = await motusRuns(scenario);
    const anchor = await qemuRuns(scenario);
    const m = medians(motus);
    const { controlPlaneMs: _unused, ...a } = medians(anchor);
    rows.push({
      scenario: scenario.name,
      motus: m,
      qemuDirect: a,
      ratio: { totalTime: m.totalTimeMs / a.totalTimeMs, downtime: m.downtimeMs / Math.max(1, a.downtimeMs) },
      samples: { motus, qemuDirect: anchor },
    });
  }
  const ms = (n: number, width: number) => `${n.toFixed(0)} ms`.padStart(width);
  console.log('');
  console.log('scenario         | Motus downtime | QEMU downtime | Motus total | QEMU total | total ratio | MiB sent | control plane');
  console.log('-----------------|----------------|---------------|-------------|------------|-------------|----------|--------------');
  for (const row of rows) {
    console.log(
      [
        row.scenario.padEnd(16),
        ms(row.motus.downtimeMs, 14),
        ms(row.qemuDirect.downtimeMs, 13),
        ms(row.motus.totalTimeMs, 11),
        ms(row.qemuDirect.totalTimeMs, 10),
        `x${row.ratio.totalTime.toFixed(2)}`.padStart(11),
        (row.motus.bytes / (1 << 20)).toFixed(1).padStart(8),
        ms(row.motus.controlPlaneMs, 12),
      ].join(' | '),
    );
  }
  const outDir = join(repoRoot, 'bench-results');
  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, 'migration.json');
  writeFileSync(file, JSON.stringify({ at: new Date().toISOString(), runs: RUNS, qemu: facts, rows }, null, 2) + '\n');
  console.log(`\nmedians of ${RUNS} runs; total ratio = Motus total time / direct QEMU total time. JSON: ${file}`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
