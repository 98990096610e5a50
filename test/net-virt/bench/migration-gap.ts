/**
 * What a TCP client sees of a move: the longest wait for an echo (client guest on
 * host-c, 20 ms period) against QEMU's downtime, for each move of the server
 * guest between host-a and host-b on an all-in-one site. Prints a table with the
 * ratio and writes build/bench/net-virt-migration.json.
 *
 *   npx tsc -b test/net-virt && node test/dist/net-virt/bench/migration-gap.js [moves]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MigrationEvent } from '@motus/sdk';
import { guestKit, requireCommand, waitFor } from '../../support/index.js';
import { repoRoot, startSite } from '../../support/site.js';
import { CLIENT_MAC, CLIENT_WORKLOAD, kitVm, migrate, netSiteYaml, SERVER_MAC, SERVER_WORKLOAD, tcpOf, vmInfo } from '../support/net-site.js';
import { freeUdpPort } from '../support/udp.js';

const HOSTS = ['host-a', 'host-b', 'host-c'];
const moves = Number(process.argv[2] ?? 4);
requireCommand('qemu-system-x86_64', 'qemu-system-x86');
guestKit();
const vteps: Record<string, number> = {};
for (const host of HOSTS) vteps[host] = await freeUdpPort();
const site = await startSite(netSiteYaml(HOSTS, vteps, 15_000));
const rows: Array<{ move: string; downtimeMs: number; clientGapMs: number; announcedMs: number; totalTimeMs: number; ratio: number }> = [];
try {
  await site.client.startVm(kitVm('srv', SERVER_MAC, SERVER_WORKLOAD), 'host-a');
  await site.client.startVm(kitVm('cli', CLIENT_MAC, CLIENT_WORKLOAD), 'host-c');
  const client = await vmInfo(site, 'cli');
  await waitFor('50 echoes', () => ((tcpOf(client).stats.at(-1)?.echoed ?? 0) >= 50 ? true : undefined), 180_000, 250);
  let from = 'host-a';
  for (let i = 0; i < moves; i++) {
    const to = from === 'host-a' ? 'host-b' : 'host-a';
    const before = tcpOf(client);
    const events = await migrate(site, 'srv', to);
    const completed = events.at(-1) as Extract<MigrationEvent, { type: 'completed' }>;
    if (completed.type !== 'completed') throw new Error(`move ${from} → ${to} ended ${completed.type}: ${JSON.stringify(events.filter((e) => e.type !== 'progress'))}`);
    const announced = events.find((e) => e.type === 'announced') as Extract<MigrationEvent, { type: 'announced' }> | undefined;
    await waitFor('100 more echoes', () => ((tcpOf(client).stats.at(-1)?.echoed ?? 0) >= before.stats.at(-1)!.echoed + 100 ? true : undefined), 60_000, 250);
    const after = tcpOf(client);
    if (after.errors.length > 0) throw new Error(`the client's connection broke: ${after.errors.join('; ')}`);
    const gap = Math.max(20, ...after.gaps.slice(before.gaps.length));
    rows.push({ move: `${from} → ${to}`, downtimeMs: completed.downtimeMs, clientGapMs: gap, announcedMs: announced?.ms ?? -1, totalTimeMs: completed.totalTimeMs, ratio: gap / completed.downtimeMs });
    from = to;
  }
  await site.client.stopVm('srv');
  await site.client.stopVm('cli');
} finally {
  await site.stop();
}
console.log('move               downtime ms  client gap ms  announced ms  total ms  gap/downtime');
for (const r of rows) {
  console.log(`${r.move.padEnd(18)} ${String(r.downtimeMs).padStart(11)} ${String(r.clientGapMs).padStart(14)} ${String(r.announcedMs).padStart(13)} ${String(r.totalTimeMs).padStart(9)} ${r.ratio.toFixed(1).padStart(13)}`);
}
const outDir = join(repoRoot, 'build', 'bench');
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'net-virt-migration.json'), `${JSON.stringify({ at: new Date().toISOString(), rows }, null, 2)}\n`);
