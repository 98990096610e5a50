/**
 * Soak (npm run soak -- [migrations]): two guests migrate back and forth between two
 * hosts of an all-in-one site, back to back, until `migrations` (200 by default) have
 * run. Every migration must complete; afterwards exactly the two guests' QEMU
 * processes are left, the site's processes are the ones it started with, and their
 * open file descriptors and resident memory grew by no more than the bounds below
 * (measured after a warm-up of 10 migrations, so first-use allocations do not count).
 * Prints the figures and writes bench-results/soak.json; exits 1 on any breach.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MigrationEvent, VmSpec } from '@motus/sdk';
import { alive, guestKit, parseHeartbeats, qemuPidsOf, repoRoot, requireCommand, startSite, twoHostSiteYaml, waitFor } from '../support/index.js';

/** Growth allowed between the warm-up and the end, per process. */
const FD_BOUND = 16;
const RSS_BOUND_MIB = 64;
const WARMUP = 10;

const total = Number(process.argv[2] ?? process.env.MOTUS_SOAK_MIGRATIONS ?? 200);
if (!Number.isInteger(total) || total < WARMUP + 2) {
  console.error(`usage: npm run soak -- [migrations ≥ ${WARMUP + 2}] (got ${process.argv[2]})`);
  process.exit(2);
}

interface Usage {
  fds: number;
  rssMiB: number;
}

function usage(pid: number): Usage {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return { fds: readdirSync(`/proc/${pid}/fd`).length, rssMiB: Math.round(rssKiB / 1024) };
}

function spec(name: string): VmSpec {
  const kit = guestKit();
  return { name, memoryMiB: 128, vcpus: 1, boot: { kind: 'kernel', kernel: kit.kernel, initrd: kit.initrd, cmdline: kit.cmdline() } };
}

requireCommand('qemu-system-x86_64', 'qemu-system-x86');
const site = await startSite(`${twoHostSiteYaml('soak', 512)}plugins:
  - package: '@motus/hv-qemu'
# Only the soak's own migrations run: no balancing, and a loaded machine's health
# verdict evacuates nothing.
placement:
  clusters:
    - name: soak
      hosts: [host-a, host-b]
      balancing:
        mode: manual
  health:
    onDegraded: report
`);
const failures: string[] = [];
let done = 0;
let baseline: Map<string, Usage> | undefined;
const processes = () => new Map([['server', site.serverPid], ...[...site.agentPids].map(([h, pid]) => [`agent ${h}`, pid] as [string, number])]);
const started = Date.now();
const downtimes: number[] = [];
try {
  const guests = ['soak1', 'soak2'];
  for (const [i, name] of guests.entries()) {
    const vm = await site.client.startVm(spec(name), i === 0 ? 'host-a' : 'host-b');
    await waitFor(`${name} to boot`, () => (parseHeartbeats(readFileSync(vm.serialLog!, 'utf8')).length >= 3 ? true : undefined), 180_000, 250);
  }
  // Each guest goes back and forth on its own; both run at once, back to back.
  await Promise.all(
    guests.map(async (name) => {
      while (done < total) {
        done += 1;
        const n = done;
        const where = (await site.client.vms()).find((v) => v.name === name)!.host;
        const destination = where === 'host-a' ? 'host-b' : 'host-a';
        const summary = await site.client.migrate({ vm: name, destination });
        const events: MigrationEvent[] = [];
        for await (const event of site.client.migrationEvents(summary.id)) events.push(event);
        const last = events.at(-1)!;
        if (last.type !== 'completed') failures.push(`#${n} ${name} → ${destination}: ${last.type} ${JSON.stringify(events.find((e) => e.type === 'failed') ?? last)}`);
        else downtimes.push(last.downtimeMs);
        if (n === WARMUP) baseline = new Map([...processes()].map(([label, pid]) => [label, usage(pid)]));
        if (n % 20 === 0) console.log(`  ${n}/${total} migrations, ${failures.length} failed, ${Math.round((Date.now() - started) / 1000)} s`);
      }
    }),
  );
  const pids = await qemuPidsOf('soak1').then(async (a) => [...a, ...(await qemuPidsOf('soak2'))]);
  if (pids.length !== 2) failures.push(`expected 2 QEMU processes at the end, found ${pids.length}`);
  const rows = [...processes()].map(([label, pid]) => {
    if (!alive(pid)) {
      failures.push(`${label} (pid ${pid}) is gone`);
      return { label, pid };
    }
    const before = baseline!.get(label)!;
    const after = usage(pid);
    if (after.fds - before.fds > FD_BOUND) failures.push(`${label}: ${after.fds - before.fds} more fds (bound ${FD_BOUND})`);
    if (after.rssMiB - before.rssMiB > RSS_BOUND_MIB) failures.push(`${label}: RSS grew ${after.rssMiB - before.rssMiB} MiB (bound ${RSS_BOUND_MIB})`);
    return { label, pid, before, after };
  });
  const sorted = [...downtimes].sort((a, b) => a - b);
  const report = {
    at: new Date().toISOString(),
    migrations: total,
    failed: failures.length,
    seconds: Math.round((Date.now() - started) / 1000),
    downtimeMs: { median: sorted[Math.floor(sorted.length / 2)] ?? null, max: sorted.at(-1) ?? null },
    bounds: { fds: FD_BOUND, rssMiB: RSS_BOUND_MIB, warmupMigrations: WARMUP },
    processes: rows,
    qemuProcessesAtEnd: pids.length,
    failures,
  };
  console.log(`\nsoak: ${total} migrations of 2 guests in ${report.seconds} s, ${failures.length} problems; downtime median ${report.downtimeMs.median} ms, max ${report.downtimeMs.max} ms`);
  console.log('process            fds before → after   RSS MiB before → after');
  for (const r of rows) if ('after' in r) console.log(`${r.label.padEnd(18)} ${String(r.before!.fds).padStart(4)} → ${String(r.after!.fds).padEnd(12)} ${String(r.before!.rssMiB).padStart(4)} → ${r.after!.rssMiB}`);
  for (const f of failures) console.log(`  problem: ${f}`);
  mkdirSync(join(repoRoot, 'bench-results'), { recursive: true });
  writeFileSync(join(repoRoot, 'bench-results', 'soak.json'), `${JSON.stringify(report, null, 2)}\n`);
} finally {
  await site.stop();
}
process.exit(failures.length === 0 ? 0 : 1);
