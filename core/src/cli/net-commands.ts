import { writeFileSync } from 'node:fs';
import type { HostNetworkStats } from '@motus/sdk';
import { mib, table } from './format.js';
import { usage } from './motus-cli.js';
import type { CommandContext } from './task-commands.js';

const MAX_DURATION_S = 300;

/** `motus net show` and `motus net capture TARGET --out FILE --duration S [--host H]`. */
export async function netCommand({ client, values, out, positionals }: CommandContext): Promise<number> {
  const [, sub, target] = positionals;
  if (sub === 'show' || sub === undefined) {
    const stats = await client.netStats();
    out(stats, () => showStats(stats));
    return 0;
  }
  if (sub === 'capture') {
    const file = values.out;
    const host = values.host;
    if (!target || typeof file !== 'string' || values.duration === undefined) throw usage('motus net capture NETWORK|PORT|uplink --out FILE --duration S [--host H]');
    const seconds = Number(values.duration);
    if (!(seconds > 0 && seconds <= MAX_DURATION_S)) throw usage(`--duration is a number of seconds above 0, at most ${MAX_DURATION_S}`);
    const result = await client.netCapture({ target, durationMs: Math.round(seconds * 1000), ...(typeof host === 'string' ? { host } : {}) });
    const pcap = Buffer.from(result.pcapBase64, 'base64');
    writeFileSync(file, pcap);
    const { pcapBase64: _, ...summary } = result;
    out({ ...summary, file, bytes: pcap.length }, () =>
      `${result.frames} frames of ${result.kind} ${target} on ${result.hosts.join(', ')} written to ${file}` + (result.truncated > 0 ? ` (${result.truncated} more over the size limit not written)` : ''),
    );
    return 0;
  }
  throw usage(`unknown net command '${sub}'`);
}

function showStats(stats: HostNetworkStats[]): string {
  const rows: string[][] = [];
  for (const s of stats) {
    if (!s.switch) {
      rows.push([s.host, '-', '-', '-', '-', '-', '-', '-', `${s.error?.code}: ${s.error?.message}`]);
      continue;
    }
    for (const p of s.switch.ports) {
      const c = p.counters;
      rows.push([s.host, p.id, p.network, `${c.rxFrames}/${mib(c.rxBytes)}`, `${c.txFrames}/${mib(c.txBytes)}`, String(c.rxDropped + c.dropped), String(c.queuedFrames), p.connected ? 'yes' : 'no', p.mac ?? '']);
    }
    const u = s.switch.uplink;
    if (u) rows.push([s.host, 'uplink', `peers ${u.peers.join(',') || '-'}`, `${u.rxFrames}/${mib(u.rxBytes)}`, `${u.txFrames}/${mib(u.txBytes)}`, String(u.rxDropped), '-', '-', '']);
    rows.push([s.host, 'mac-table', '-', '-', '-', '-', '-', '-', `${s.switch.macTable.entries} entries`]);
  }
  return table(['HOST', 'PORT', 'NETWORK', 'RX FRAMES/BYTES', 'TX FRAMES/BYTES', 'DROPS', 'QUEUED', 'CONNECTED', 'MAC / NOTE'], rows);
}
