import type { CpuBaselineChange, CpuCheck, CpuMatrix, CpuVerdict } from '@motus/sdk';
import { table } from './format.js';
import { EXIT, usage } from './motus-cli.js';
import type { CommandContext } from './task-commands.js';

const CPU_PLUGIN = '@motus/cpu-compat';

/**
 * `motus cpu baseline`, `motus cpu check VM --to HOST` and `motus cpu matrix
 * [--host H,…]`: the cpu-compat plugin's cluster baseline and dry runs through the API, with nothing started.
 */
export async function cpuCommand({ client, values, out, positionals }: CommandContext): Promise<number> {
  const [, sub, vm] = positionals;
  switch (sub) {
    case 'check': {
      if (!vm || typeof values.to !== 'string') throw usage('motus cpu check VM --to HOST');
      const check = await client.pluginCall<CpuCheck>(CPU_PLUGIN, 'check', { vm, to: values.to });
      out(check, () => `${check.compatible ? 'yes' : `no (${check.code ?? 'refused'})`}: ${check.message}`);
      // A refusal is an answer, not a failure of the command; scripts read it from the exit code.
      return check.compatible ? EXIT.ok : EXIT.refused;
    }
    case 'baseline': {
      if (values['dry-run'] !== undefined) {
        if (typeof values['dry-run'] !== 'string' || values['dry-run'] === '') throw usage('motus cpu baseline --dry-run MODEL|auto');
        const change = await client.pluginCall<CpuBaselineChange>(CPU_PLUGIN, 'baseline-impact', { baseline: values['dry-run'] });
        out(change, () => baselineChangeText(change));
        return EXIT.ok;
      }
      const baseline = await client.pluginCall<{ cpu: string; features: string[]; refused: CpuVerdict[] }>(CPU_PLUGIN, 'baseline');
      out(baseline, () =>
        [`cluster baseline: ${baseline.cpu} (${baseline.features.length} features)`, ...baseline.refused.map((r) => `refused: ${r.message}`)].join('\n'),
      );
      return EXIT.ok;
    }
    case 'matrix': {
      const hosts = typeof values.host === 'string' ? values.host.split(',').filter((h) => h !== '') : undefined;
      const matrix = await client.pluginCall<CpuMatrix>(CPU_PLUGIN, 'matrix', hosts ? { hosts } : {});
      out(matrix, () => matrixText(matrix));
      return EXIT.ok;
    }
    default:
      throw usage(`unknown cpu command '${sub ?? ''}' (motus cpu baseline | check VM --to HOST | matrix [--host H,…])`);
  }
}

function baselineChangeText(c: CpuBaselineChange): string {
  const lines = [`baseline ${c.from} -> ${c.to} (dry run: nothing changes)`];
  if (c.added.length > 0) lines.push(`  adds: ${c.added.join(' ')}`);
  if (c.removed.length > 0) lines.push(`  removes: ${c.removed.join(' ')}`);
  for (const r of c.refused) lines.push(`  refused: ${r.message}`);
  for (const v of c.beyond) lines.push(`  ${v.vm} (${v.cpu}) keeps running but may then move only to hosts with: ${v.features.join(' ')}`);
  for (const v of c.couldGain) lines.push(`  ${v.vm} (${v.cpu}) would gain after a restart: ${v.features.join(' ')}`);
  lines.push(c.unaffected.length > 0 ? `  unaffected: ${c.unaffected.join(', ')}` : '  unaffected: none');
  return lines.join('\n');
}

/** One row per VM, one column per host: `ok`, or the count of missing features (`-3`), or `no`. */
function matrixText(matrix: CpuMatrix): string {
  const cells = matrix.rows.map((row) => [
    row.vm,
    row.cpu,
    ...matrix.hosts.map((host) => {
      if (row.allowed.includes(host)) return host === row.runsOn ? 'ok*' : 'ok';
      const refused = row.refused.find((r) => r.host === host);
      return refused && refused.missing.length > 0 ? `-${refused.missing.length}` : 'no';
    }),
  ]);
  const lines = [table(['VM', 'CPU', ...matrix.hosts], cells), '(ok* where the VM runs; -N: N CPU features missing there; no: see below)'];
  for (const u of matrix.unavailable) lines.push(`${u.host}: ${u.code}: ${u.reason}`);
  for (const row of matrix.rows) {
    for (const r of row.refused) if (!matrix.unavailable.some((u) => u.host === r.host)) lines.push(`${row.vm} -> ${r.host}: ${r.message}`);
  }
  return lines.join('\n');
}
