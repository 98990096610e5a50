import type { EvacuationInfo, Ranking } from '@motus/sdk';
import { table } from './format.js';
import { usage } from './motus-cli.js';
import type { CommandContext } from './task-commands.js';

/** `motus migrate VM --recommend`: every host ranked, with its reasons; hosts that cannot take the VM, with theirs. */
export function rankingText(ranking: Ranking): string {
  const lines = [
    ranking.initial
      ? `hosts for new VM ${ranking.vm} (initial placement; each cluster scored against its own imbalance):`
      : `destinations for ${ranking.vm} (on ${ranking.source}, cluster ${ranking.cluster}, imbalance ${ranking.imbalanceBefore.toFixed(3)}):`,
  ];
  if (ranking.candidates.length === 0) lines.push('  none: every host breaks a hard constraint');
  ranking.candidates.forEach((c, i) => {
    lines.push(`  ${i + 1}. ${c.host}  score ${c.score.toFixed(1)}${i === 0 ? '  (best)' : ''}`);
    for (const reason of c.reasons) lines.push(`       ${reason}`);
  });
  const refused = ranking.refused.filter((r) => r.host !== ranking.source);
  if (refused.length > 0) {
    lines.push('cannot take it:');
    for (const r of refused) lines.push(`  ${r.host}: ${r.refusals.map((x) => x.reason).join('; ')}`);
  }
  return lines.join('\n');
}

function evacuationText(e: EvacuationInfo): string {
  const lines = [`${e.why === 'maintenance' ? 'maintenance of' : 'evacuation of'} ${e.host}: ${e.state}${e.error ? ` (${e.error})` : ''}`];
  for (const m of e.moves) lines.push(`  ${m.vm} -> ${m.to}  score ${m.score.toFixed(1)}, ~${m.costSeconds.toFixed(1)} s  ${m.task ?? ''} ${m.state ?? ''}`.trimEnd());
  for (const s of e.stuck) lines.push(`  ${s.vm} stays: ${s.refused.map((r) => `${r.host}: ${r.reasons.join('; ')}`).join(' | ') || 'no other host'}`);
  if (e.leftRunning.length > 0) lines.push(`  left running on ${e.host}: ${e.leftRunning.join(', ')}`);
  return lines.join('\n');
}

/** motus host maintenance enter|exit HOST, motus host health|usage HOST. */
export async function hostCommand({ client, values, out, positionals, io, json }: CommandContext): Promise<number> {
  const [, sub, action, name] = positionals;
  switch (sub) {
    case 'maintenance': {
      if ((action !== 'enter' && action !== 'exit') || !name) throw usage('motus host maintenance enter|exit HOST [--allow-running] [--no-wait]');
      if (action === 'exit') {
        const host = await client.exitMaintenance(name);
        out(host, () => `host ${host.name} is ${host.state}`);
        return 0;
      }
      let evacuation = await client.enterMaintenance(name, values['allow-running'] === true);
      if (!json) io.stdout.write(evacuationText(evacuation) + '\n');
      if (values['no-wait']) {
        if (json) io.stdout.write(JSON.stringify(evacuation) + '\n');
        return 0;
      }
      const deadline = Date.now() + 3_600_000;
      while (evacuation.state === 'evacuating' && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 500));
        evacuation = await client.evacuation(name);
      }
      out(evacuation, () => evacuationText(evacuation));
      return evacuation.state === 'done' ? 0 : 1;
    }
    case 'health': {
      if (!action) throw usage('motus host health HOST');
      const health = await client.hostHealth(action);
      out(health, () => [`${health.host}: ${health.state}${health.degradedAt ? ` since ${health.degradedAt}` : ''}`, ...health.signals.map((s) => `  ${s.kind}: ${s.detail} (since ${s.since})`)].join('\n'));
      return 0;
    }
    case 'usage': {
      if (!action) throw usage('motus host usage HOST');
      const samples = await client.hostUsage(action);
      out(samples, () =>
        table(
          ['AT', 'CPU USED', 'MEMORY USED', 'VMS (cpu, rss, dirty)'],
          samples.slice(-10).map((s) => [
            s.at.slice(11, 19),
            `${s.cpuUsed.toFixed(2)}/${s.cpus}`,
            `${s.memoryUsedMiB}/${s.memoryTotalMiB} MiB`,
            s.vms.map((v) => `${v.name} ${v.cpuUsed.toFixed(2)} ${v.rssMiB}M${v.dirtyBytesPerSec === undefined ? '' : ` ${(v.dirtyBytesPerSec / 1048576).toFixed(1)}M/s`}`).join(', '),
          ]),
        ),
      );
      return 0;
    }
    default:
      throw usage('motus host maintenance enter|exit HOST | motus host health HOST | motus host usage HOST');
  }
}

/** motus cluster [list] | balance NAME [--apply] | set NAME [--mode M] [--threshold N] [--interval S]. */
export async function clusterCommand({ client, values, out, positionals }: CommandContext): Promise<number> {
  const [, sub, name] = positionals;
  switch (sub ?? 'list') {
    case 'list': {
      const clusters = await client.clusters();
      out(clusters, () =>
        clusters
          .map((c) =>
            [
              `${c.name}: ${c.mode}, threshold ${c.threshold}, every ${c.intervalSeconds} s, imbalance ${c.imbalance.toFixed(3)}`,
              table(['  HOST', 'STATE', 'LOAD', 'CPU', 'MEMORY'], c.hosts.map((h) => [`  ${h.name}`, h.state, pct(h.load), pct(h.cpu), pct(h.memory)])),
            ].join('\n'),
          )
          .join('\n\n'),
      );
      return 0;
    }
    case 'balance': {
      if (!name) throw usage('motus cluster balance NAME [--apply]');
      const plan = await client.balance(name, values.apply === true);
      out(plan, () =>
        [
          `cluster ${plan.cluster}, threshold ${plan.threshold} (tolerates ${plan.tolerance.toFixed(3)}): imbalance ${plan.imbalanceBefore.toFixed(3)} -> ${plan.imbalanceAfter.toFixed(3)}; ${plan.stoppedBecause}`,
          ...plan.moves.map((m) => `  ${(m.vms ?? [m.vm]).join(' + ')}: ${m.from} -> ${m.to}  gain ${m.gain.toFixed(3)}, ~${m.costSeconds.toFixed(1)} s  ${m.reason}${m.task ? `  task${m.tasks ? `s ${m.tasks.join(', ')}` : ` ${m.task}`}` : ''}`),
        ].join('\n'),
      );
      return 0;
    }
    case 'set': {
      if (!name) throw usage('motus cluster set NAME [--mode manual|partial|automatic] [--threshold 1-5] [--interval SECONDS]');
      const change: { mode?: 'manual' | 'partial' | 'automatic'; threshold?: number; intervalSeconds?: number } = {};
      if (values.mode !== undefined) {
        if (values.mode !== 'manual' && values.mode !== 'partial' && values.mode !== 'automatic') throw usage('--mode is manual, partial or automatic');
        change.mode = values.mode;
      }
      if (values.threshold !== undefined) change.threshold = Number(values.threshold);
      if (values.interval !== undefined) change.intervalSeconds = Number(values.interval);
      const cluster = await client.configureCluster(name, change);
      out(cluster, () => `${cluster.name}: ${cluster.mode}, threshold ${cluster.threshold}, every ${cluster.intervalSeconds} s`);
      return 0;
    }
    default:
      throw usage(`unknown cluster command '${sub ?? ''}'`);
  }
}

function pct(x: number): string {
  return `${Math.round(x * 100)}%`;
}
