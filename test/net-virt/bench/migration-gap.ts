/**
 * What a TCP client sees of a move: the longest wait for an echo (client guest on
 * host-c, one 8-byte echo every 20 ms over one connection) against QEMU's downtime,
 * for each move of the server guest between host-a and host-b on an all-in-one
 * site. Run twice in the same process: first with the switchover hold off
 * (`switchoverHoldMs: 0`, the anchor: frames for the stopped source are lost as on
 * a plain switch), then with Motus's hold on. Prints both tables, the ratios, and
 * writes bench-results/net-virt-migration.json.
 *
 * The client's longest gap covers the whole move and the echoes after it, so on a
 * loaded machine it catches stalls of the client guest that have nothing to do
 * with the move. Next to it: the wire gap at the client's switch port (a capture
 * of `cli.n0` across the move: the wait between the two echo segments sent to the
 * client around the moment the destination reported running), what the server
 * guest itself saw (its heartbeat's pause), and how much host CPU the destination
 * QEMU got in the second after it resumed (from /proc/<pid>/task/<tid>/schedstat:
 * time run, and time runnable but waiting for a CPU), so a gap longer than the
 * switchover can be told apart from a loss in the network.
 *
 *   npx tsc -b && node test/dist/net-virt/bench/migration-gap.js [moves-per-mode]
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { readPcap } from '@motus/net-virt';
import { join } from 'node:path';
import type { MigrationEvent } from '@motus/sdk';
import { guestKit, requireCommand, sleep, tempDir, waitFor } from '../../support/index.js';
import { repoRoot, startSite } from '../../support/site.js';
import { CLIENT_MAC, CLIENT_WORKLOAD, kitVm, netSiteYaml, SERVER_MAC, SERVER_WORKLOAD, switchFacts, tcpOf, vmInfo } from '../support/net-site.js';
import { freeUdpPort } from '../support/udp.js';

const HOSTS = ['host-a', 'host-b', 'host-c'];
const moves = Number(process.argv[2] ?? 4);

interface Row {
  mode: 'hold off' | 'hold on';
  move: string;
  downtimeMs: number;
  clientGapMs: number;
  /** From the source VM's stop to the held frames leaving for the destination (the network's share), hold on only. */
  holdMs: number | null;
  held: number;
  announcedMs: number;
  totalTimeMs: number;
  ratio: number;
  /** The guest's own heartbeat pause (the kernel's guestPauseMs). */
  guestPauseMs: number | null;
  /** Destination QEMU, all threads, in the second after `resumed`: ms on a CPU, and ms runnable but waiting for one. */
  destCpu: { ranMs: number; waitedMs: number } | null;
  /** At the client's switch port: the wait between the echo segments sent to the client just before and just after the destination reported running. */
  wireGapMs: number | null;
}

/** Long enough for a move and its 100 echoes under TCG on a loaded machine; a resume outside it leaves the wire gap unknown. */
const CAPTURE_MS = 45_000;

/** Times (ms) of the frames from `src` to `dst` carrying TCP payload, in a capture. */
async function tcpDataTimes(file: string, src: string, dst: string): Promise<number[]> {
  const mac = (b: Buffer, o: number) => [...b.subarray(o, o + 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
  const times: number[] = [];
  for (const p of (await readPcap(file)).packets) {
    const f = p.data;
    if (f.length < 54 || mac(f, 0) !== dst || mac(f, 6) !== src || f.readUInt16BE(12) !== 0x0800 || f[23] !== 6) continue;
    const ihl = (f[14]! & 15) * 4;
    const payload = f.readUInt16BE(16) - ihl - (f[14 + ihl + 12]! >> 4) * 4;
    if (payload > 0) times.push(p.timeMs);
  }
  return times;
}

/** The site's QEMU processes of VM `vm` (its state folder is on their command line). */
function qemuPids(stateDir: string, vm: string): number[] {
  return execFileSync('ps', ['-eo', 'pid=,args='])
    .toString()
    .split('\n')
    .filter((l) => l.includes('qemu-system') && !l.includes('setpriv') && l.includes(stateDir) && new RegExp(` -name (guest=)?${vm}(,|\\s|$)`).test(l))
    .map((l) => Number(l.trim().split(/\s+/)[0]));
}

/** Sums schedstat over a process's threads: [ms run, ms waiting on a run queue]; undefined once it is gone. */
function schedstat(pid: number): [number, number] | undefined {
  try {
    let run = 0;
    let wait = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const [r, w] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ');
      run += Number(r) / 1e6;
      wait += Number(w) / 1e6;
    }
    return [run, wait];
  } catch {
    return undefined;
  }
}

async function measure(mode: Row['mode']): Promise<Row[]> {
  const vteps: Record<string, number> = {};
  for (const host of HOSTS) vteps[host] = await freeUdpPort();
  const scratch = tempDir('nv-gap');
  const site = await startSite(netSiteYaml(HOSTS, vteps, 15_000, { switchoverHoldMs: mode === 'hold on' ? 10_000 : 0 }));
  const rows: Row[] = [];
  try {
    await site.client.startVm(kitVm('srv', SERVER_MAC, SERVER_WORKLOAD), 'host-a');
    await site.client.startVm(kitVm('cli', CLIENT_MAC, CLIENT_WORKLOAD), 'host-c');
    const client = await vmInfo(site, 'cli');
    await waitFor('50 echoes', () => ((tcpOf(client).stats.at(-1)?.echoed ?? 0) >= 50 ? true : undefined), 180_000, 250);
    let from = 'host-a';
    for (let i = 0; i < moves; i++) {
      const to = from === 'host-a' ? 'host-b' : 'host-a';
      const before = tcpOf(client);
      const heldBefore = switchFacts((await site.client.hosts()).find((h) => h.name === from)!)!.switchover.held;
      const known = new Set(qemuPids(site.stateDir, 'srv'));
      // Settled into a value at once: a failed capture must not end the run as an unhandled rejection.
      const capture = site.client.netCapture({ target: 'cli.n0', durationMs: CAPTURE_MS }).catch((err: Error) => err);
      // The capture starts when host-c's agent gets the call.
      await sleep(1_000);
      const summary = await site.client.migrate({ vm: 'srv', destination: to });
      const events: MigrationEvent[] = [];
      let destCpu: Row['destCpu'] = null;
      let atResume: Promise<void> | undefined;
      for await (const event of site.client.migrationEvents(summary.id)) {
        events.push(event);
        if (event.type !== 'resumed') continue;
        const pid = qemuPids(site.stateDir, 'srv').find((p) => !known.has(p));
        const start = pid === undefined ? undefined : schedstat(pid);
        if (pid === undefined || !start) continue;
        atResume = new Promise((resolve) =>
          setTimeout(() => {
            const end = schedstat(pid);
            if (end) destCpu = { ranMs: Math.round(end[0] - start[0]), waitedMs: Math.round(end[1] - start[1]) };
            resolve();
          }, 1_000),
        );
      }
      await atResume;
      const completed = events.at(-1) as Extract<MigrationEvent, { type: 'completed' }>;
      if (completed.type !== 'completed') throw new Error(`move ${from} → ${to} ended ${completed.type}: ${JSON.stringify(events.filter((e) => e.type !== 'progress'))}`);
      const announced = events.find((e) => e.type === 'announced') as Extract<MigrationEvent, { type: 'announced' }> | undefined;
      await waitFor('100 more echoes', () => ((tcpOf(client).stats.at(-1)?.echoed ?? 0) >= before.stats.at(-1)!.echoed + 100 ? true : undefined), 60_000, 250);
      const after = tcpOf(client);
      if (after.errors.length > 0) throw new Error(`the client's connection broke: ${after.errors.join('; ')}`);
      const source = switchFacts((await site.client.hosts()).find((h) => h.name === from)!)!.switchover;
      const gap = Math.max(20, ...after.gaps.slice(before.gaps.length));
      const resumedAt = Date.parse(events.find((e) => e.type === 'resumed')!.at);
      const pcap = join(scratch.path, `move-${rows.length}.pcap`);
      const captured = await capture;
      if (captured instanceof Error) throw new Error(`the capture of cli.n0 across move ${from} → ${to} failed: ${captured.message}`);
      writeFileSync(pcap, Buffer.from(captured.pcapBase64, 'base64'));
      const echoes = await tcpDataTimes(pcap, SERVER_MAC, CLIENT_MAC);
      const next = echoes.findIndex((t) => t > resumedAt);
      const wireGapMs = next > 0 ? Math.round(echoes[next]! - echoes[next - 1]!) : null;
      rows.push({
        mode,
        move: `${from} → ${to}`,
        downtimeMs: completed.downtimeMs,
        clientGapMs: gap,
        holdMs: mode === 'hold on' ? source.lastHoldMs : null,
        held: source.held - heldBefore,
        announcedMs: announced?.ms ?? -1,
        totalTimeMs: completed.totalTimeMs,
        ratio: gap / Math.max(1, completed.downtimeMs),
        guestPauseMs: completed.guestPauseMs,
        destCpu,
        wireGapMs,
      });
      from = to;
    }
    await site.client.stopVm('srv');
    await site.client.stopVm('cli');
  } finally {
    await site.stop();
    scratch.remove();
  }
  return rows;
}

requireCommand('qemu-system-x86_64', 'qemu-system-x86');
guestKit();
const rows = [...(await measure('hold off')), ...(await measure('hold on'))];
console.log('mode      move               downtime ms  client gap ms  hold ms  held  announced ms  total ms  gap/downtime  wire gap ms  guest pause ms  dest CPU 1st s: ran/waited ms');
for (const r of rows) {
  console.log(
    `${r.mode.padEnd(9)} ${r.move.padEnd(18)} ${String(r.downtimeMs).padStart(11)} ${String(r.clientGapMs).padStart(14)} ${String(r.holdMs ?? '-').padStart(8)} ${String(r.held).padStart(5)} ${String(r.announcedMs).padStart(13)} ${String(r.totalTimeMs).padStart(9)} ${r.ratio.toFixed(1).padStart(13)} ${String(r.wireGapMs ?? '-').padStart(12)} ${String(r.guestPauseMs ?? '-').padStart(15)} ${(r.destCpu ? `${r.destCpu.ranMs}/${r.destCpu.waitedMs}` : '-').padStart(30)}`,
  );
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
const summary = (['hold off', 'hold on'] as const).map((mode) => {
  const of = rows.filter((r) => r.mode === mode);
  const wire = of.map((r) => r.wireGapMs).filter((g): g is number => g !== null);
  return {
    mode,
    medianGapMs: median(of.map((r) => r.clientGapMs)),
    medianWireGapMs: wire.length > 0 ? median(wire) : null,
    medianDowntimeMs: median(of.map((r) => r.downtimeMs)),
    medianGapOverDowntime: median(of.map((r) => r.ratio)),
  };
});
for (const s of summary) {
  console.log(`${s.mode}: median client gap ${s.medianGapMs} ms, median wire gap ${s.medianWireGapMs ?? '-'} ms, median QEMU downtime ${s.medianDowntimeMs} ms, median gap/downtime ${s.medianGapOverDowntime.toFixed(1)}`);
}
const improvement = summary[0]!.medianGapMs / summary[1]!.medianGapMs;
console.log(`ratio median gap hold off / hold on: ${improvement.toFixed(2)}`);
const outDir = join(repoRoot, 'bench-results');
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'net-virt-migration.json'), `${JSON.stringify({ at: new Date().toISOString(), moves, rows, summary, gapRatioOffOverOn: improvement }, null, 2)}\n`);
