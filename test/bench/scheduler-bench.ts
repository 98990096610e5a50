/**
 * Scheduler benchmark (node test/dist/bench/scheduler-bench.js): 10,000 queued
 * migration tasks dispatched against the concurrency limits of 1,000 simulated
 * hosts (per host, per migration network, per datastore), the scheduler alone: no
 * orchestrator, no I/O. A task ends when the oldest running one ends, which frees
 * its slots and lets the scheduler start more, until the queue is empty.
 *
 * Anchor, in the same run: a dispatcher that re-scans the whole waiting list in
 * priority and arrival order after every change (the obvious implementation), on
 * the same ledger and the same workload. Prints overhead per task and the ratio,
 * and writes bench-results/scheduler.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Priority } from '@motus/sdk';
import { Dispatcher, MigrationResources, ResourceLedger, validateSite, type Dispatchable } from '@motus/core';
import { repoRoot, seededRandom } from '../support/index.js';

const TASKS = Number(process.env.MOTUS_BENCH_TASKS ?? 10_000);
const HOSTS = 1_000;
const NETWORKS = 50;
const DATASTORES = 200;
const RUNS = Number(process.env.MOTUS_BENCH_RUNS ?? 5);

interface Task extends Dispatchable {
  id: string;
  priority: Priority;
  seq: number;
  keys: string[];
}

interface Scheduler {
  enqueue(task: Task): void;
  takeReady(): Task[];
  finished(task: Task): void;
}

/** Re-scans every waiting task, high before normal and oldest first, after each change. */
class LinearScanDispatcher implements Scheduler {
  private waiting: Task[] = [];
  private sorted = true;
  constructor(private readonly ledger: ResourceLedger) {}
  enqueue(task: Task): void {
    this.waiting.push(task);
    this.sorted = false;
  }
  takeReady(): Task[] {
    if (!this.sorted) {
      this.waiting.sort((a, b) => (a.priority === b.priority ? a.seq - b.seq : a.priority === 'high' ? -1 : 1));
      this.sorted = true;
    }
    const started: Task[] = [];
    const still: Task[] = [];
    for (const task of this.waiting) {
      if (this.ledger.blocker(task.keys) === undefined) {
        this.ledger.acquire(task.keys);
        started.push(task);
      } else {
        still.push(task);
      }
    }
    this.waiting = still;
    return started;
  }
  finished(task: Task): void {
    this.ledger.release(task.keys);
  }
}


const site = validateSite({
  hosts: Array.from({ length: HOSTS }, (_, i) => ({ name: `h${i}`, migrationNetwork: `net${i % NETWORKS}`, ...(i % 10 === 0 ? { maxMigrations: 4 } : {}) })),
  networks: Array.from({ length: NETWORKS }, (_, i) => ({ name: `net${i}`, gbps: i % 2 ? 10 : 1 })),
  datastores: Array.from({ length: DATASTORES }, (_, i) => ({ name: `ds${i}`, pathPrefix: `/ds${i}/`, maxMigrations: 16 })),
  tasks: { maxPerHost: 2 },
});
const resources = new MigrationResources(site, () => true);

function workload(): Task[] {
  const random = seededRandom(42);
  return Array.from({ length: TASKS }, (_, i) => {
    const source = Math.floor(random() * HOSTS);
    let destination = Math.floor(random() * (HOSTS - 1));
    if (destination >= source) destination += 1;
    const ds = Math.floor(random() * DATASTORES);
    return {
      id: `t${i}`,
      priority: random() < 0.1 ? 'high' : 'normal',
      seq: i + 1,
      keys: resources.keysFor({ disks: [{ id: 'd0', path: `/ds${ds}/vm${i}.qcow2`, format: 'qcow2' }] }, `h${source}`, `h${destination}`),
    };
  });
}

interface Result {
  ms: number;
  usPerTask: number;
  dispatches: number;
  peakRunning: number;
}

function run(make: (ledger: ResourceLedger) => Scheduler, tasks: Task[]): Result {
  const ledger = new ResourceLedger((key) => resources.capacity(key));
  const scheduler = make(ledger);
  const running: Task[] = [];
  let head = 0;
  let dispatches = 0;
  let peakRunning = 0;
  const t0 = performance.now();
  for (const task of tasks) scheduler.enqueue(task);
  for (const task of scheduler.takeReady()) running.push(task);
  dispatches = running.length;
  while (head < running.length) {
    const done = running[head++]!;
    scheduler.finished(done);
    const started = scheduler.takeReady();
    dispatches += started.length;
    for (const task of started) running.push(task);
    peakRunning = Math.max(peakRunning, running.length - head);
  }
  const ms = performance.now() - t0;
  if (dispatches !== tasks.length) throw new Error(`only ${dispatches} of ${tasks.length} tasks were dispatched`);
  return { ms, usPerTask: (ms * 1000) / tasks.length, dispatches, peakRunning };
}

/** Replays a dispatch order against the limits, outside the timed part: no key may ever be over its limit. */
function checkLimits(make: (ledger: ResourceLedger) => Scheduler, tasks: Task[]): void {
  const used = new Map<string, number>();
  const ledger = new ResourceLedger((key) => resources.capacity(key));
  const scheduler = make(ledger);
  for (const task of tasks) scheduler.enqueue(task);
  const running: Task[] = [];
  let head = 0;
  const start = (list: Task[]) => {
    for (const task of list) {
      for (const key of task.keys) {
        const n = (used.get(key) ?? 0) + 1;
        if (n > resources.capacity(key)) throw new Error(`${key} over its limit (${n} > ${resources.capacity(key)})`);
        used.set(key, n);
      }
      running.push(task);
    }
  };
  start(scheduler.takeReady());
  while (head < running.length) {
    const done = running[head++]!;
    for (const key of done.keys) used.set(key, used.get(key)! - 1);
    scheduler.finished(done);
    start(scheduler.takeReady());
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

const motus = (ledger: ResourceLedger) => new Dispatcher<Task>(ledger, { highPriorityBurst: site.tasks.highPriorityBurst });
const naive = (ledger: ResourceLedger) => new LinearScanDispatcher(ledger);

const tasks = workload();
checkLimits(motus, tasks);
checkLimits(naive, tasks);
run(motus, tasks);
const ours: Result[] = [];
const anchor: Result[] = [];
for (let i = 0; i < RUNS; i++) {
  ours.push(run(motus, tasks));
  anchor.push(run(naive, tasks));
}
const oursMs = median(ours.map((r) => r.ms));
const anchorMs = median(anchor.map((r) => r.ms));
console.log(`scheduler benchmark: ${TASKS} tasks, ${HOSTS} hosts (limit 2, every tenth 4), ${NETWORKS} networks, ${DATASTORES} datastores (limit 16), 10% high; median of ${RUNS} runs`);
console.log('');
console.log('scheduler                  | total ms | per task | peak running');
console.log('---------------------------|----------|----------|-------------');
console.log(`Motus (parked by resource) | ${oursMs.toFixed(1).padStart(8)} | ${((oursMs * 1000) / TASKS).toFixed(2).padStart(5)} µs | ${ours[0]!.peakRunning}`);
console.log(`anchor (linear re-scan)    | ${anchorMs.toFixed(1).padStart(8)} | ${((anchorMs * 1000) / TASKS).toFixed(2).padStart(5)} µs | ${anchor[0]!.peakRunning}`);
console.log('');
console.log(`ratio (anchor / Motus): ×${(anchorMs / oursMs).toFixed(1)}; every dispatch order checked against every limit`);
const outDir = join(repoRoot, 'bench-results');
mkdirSync(outDir, { recursive: true });
const file = join(outDir, 'scheduler.json');
writeFileSync(
  file,
  JSON.stringify({ at: new Date().toISOString(), tasks: TASKS, hosts: HOSTS, networks: NETWORKS, datastores: DATASTORES, runs: RUNS, motus: { ms: oursMs, usPerTask: (oursMs * 1000) / TASKS }, anchor: { ms: anchorMs, usPerTask: (anchorMs * 1000) / TASKS }, ratio: anchorMs / oursMs }, null, 2) + '\n',
);
console.log(`JSON: ${file}`);
