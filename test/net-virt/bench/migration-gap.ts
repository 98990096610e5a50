/**
 * What a TCP client sees of a move: the longest wait for an echo (client guest on
 * host-c, one 8-byte echo every 20 ms over one connection) against QEMU's downtime,
 * for each move of the server guest between host-a and host-b on an all-in-one
 * site. Run twice in the same process: first with the switchover hold off
 * (`switchoverHoldMs: 0`, the anchor: frames for the stopped source are lost as on
 * a plain switch), then with Motus's hold on. Prints both tables, the ratios, and
 * writes bench-results/net-virt-migration.json.
 *
 *   npx tsc -b && node test/dist/net-virt/bench/migration-gap.js [moves-per-mode]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MigrationEvent } from '@motus/sdk';
import { guestKit, requireCommand, waitFor } from '../../support/index.js';
import { repoRoot, startSite } from '../../support/site.js';
import { CLIENT_MAC, CLIENT_WORKLOAD, kitVm, migrate, netSiteYaml, SERVER_MAC, SERVER_WORKLOAD, switchFacts, tcpOf, vmInfo } from '../support/net-site.js';
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
}

async function measure(mode: Row['mode']): Promise<Row[]> {
  const vteps: Record<string, number> = {};
  for (const host of HOSTS) vteps[host] = await freeUdpPort();
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
      const events = await migrate(site, 'srv', to);
      const completed = events.at(-1) as Extract<MigrationEvent, { type: 'completed' }>;
      if (completed.type !== 'completed') throw new Error(`move ${from} → ${to} ended ${completed.type}: ${JSON.stringify(events.filter((e) => e.type !== 'progress'))}`);
      const announced = events.find((e) => e.type === 'announced') as Extract<MigrationEvent, { type: 'announced' }> | undefined;
      await waitFor('100 more echoes', () => ((tcpOf(client).stats.at(-1)?.echoed ?? 0) >= before.stats.at(-1)!.echoed + 100 ? true : undefined), 60_000, 250);
      const after = tcpOf(client);
      if (after.errors.length > 0) throw new Error(`the client's connection broke: ${after.errors.join('; ')}`);
      const source = switchFacts((await site.client.hosts()).find((h) => h.name === from)!)!.switchover;
      const gap = Math.max(20, ...after.gaps.slice(before.gaps.length));
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
      });
      from = to;
    }
    await site.client.stopVm('srv');
    await site.client.stopVm('cli');
  } finally {
    await site.stop();
  }
  return rows;
}

requireCommand('qemu-system-x86_64', 'qemu-system-x86');
guestKit();
const rows = [...(await measure('hold off')), ...(await measure('hold on'))];
console.log('mode      move               downtime ms  client gap ms  hold ms  held  announced ms  total ms  gap/downtime');
for (const r of rows) {
  console.log(
    `${r.mode.padEnd(9)} ${r.move.padEnd(18)} ${String(r.downtimeMs).padStart(11)} ${String(r.clientGapMs).padStart(14)} ${String(r.holdMs ?? '-').padStart(8)} ${String(r.held).padStart(5)} ${String(r.announcedMs).padStart(13)} ${String(r.totalTimeMs).padStart(9)} ${r.ratio.toFixed(1).padStart(13)}`,
  );
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
const summary = (['hold off', 'hold on'] as const).map((mode) => {
  const of = rows.filter((r) => r.mode === mode);
  return { mode, medianGapMs: median(of.map((r) => r.clientGapMs)), medianDowntimeMs: median(of.map((r) => r.downtimeMs)), medianGapOverDowntime: median(of.map((r) => r.ratio)) };
});
for (const s of summary) console.log(`${s.mode}: median client gap ${s.medianGapMs} ms, median QEMU downtime ${s.medianDowntimeMs} ms, median gap/downtime ${s.medianGapOverDowntime.toFixed(1)}`);
const improvement = summary[0]!.medianGapMs / summary[1]!.medianGapMs;
console.log(`ratio median gap hold off / hold on: ${improvement.toFixed(2)}`);
const outDir = join(repoRoot, 'bench-results');
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'net-virt-migration.json'), `${JSON.stringify({ at: new Date().toISOString(), moves, rows, summary, gapRatioOffOverOn: improvement }, null, 2)}\n`);
