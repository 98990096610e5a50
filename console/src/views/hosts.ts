import { html } from 'lit-html';
import type { HostInfo } from '@motus/sdk';
import type { AppContext } from '../app-context.js';
import { mib } from '../format.js';

type Facts = Record<string, unknown> & { datastores?: Array<{ name?: string }>; networks?: Array<{ name?: string }>; baseline?: { cpu: string; ok: boolean; missing: string[] }; modelName?: string };

/** Datastores and networks a host's plugins report, whatever plugin reports them. */
export function hostResources(host: HostInfo): { datastores: string[]; networks: string[] } {
  const datastores = new Set<string>();
  const networks = new Set<string>();
  for (const facts of Object.values(host.plugins ?? {}) as Facts[]) {
    if (!facts || typeof facts !== 'object') continue;
    for (const ds of Array.isArray(facts.datastores) ? facts.datastores : []) if (typeof ds?.name === 'string') datastores.add(ds.name);
    for (const net of Array.isArray(facts.networks) ? facts.networks : []) if (typeof net?.name === 'string') networks.add(net.name);
  }
  return { datastores: [...datastores].sort(), networks: [...networks].sort() };
}

/** The CPU baseline fit cpu-compat reports, else the host's CPU model, else that no CPU plugin runs. */
export function cpuBaseline(host: HostInfo): string {
  const cpu = host.plugins?.['@motus/cpu-compat'] as Facts | undefined;
  if (cpu?.baseline) return `${cpu.baseline.cpu} ${cpu.baseline.ok ? '✓' : `✗ missing ${cpu.baseline.missing.join(', ')}`}`;
  if (typeof cpu?.modelName === 'string') return `${cpu.modelName} (no baseline set)`;
  return 'no CPU plugin';
}

export function hostsView(app: AppContext) {
  const hosts = [...app.state.hosts.values()].sort((a, b) => a.name.localeCompare(b.name));
  return html`<section data-view="hosts">
    <h2>Hosts</h2>
    <table>
      <thead><tr><th>host</th><th>state</th><th>CPU baseline</th><th>memory in use</th><th>datastores</th><th>networks</th><th>hypervisor</th></tr></thead>
      <tbody>
        ${hosts.map((h) => {
          const { datastores, networks } = hostResources(h);
          const used = h.memoryTotalMiB > 0 ? h.memoryUsedMiB / h.memoryTotalMiB : 0;
          return html`<tr data-host=${h.name}>
            <td>${h.name}</td>
            <td><span class="state state-${h.state}">${h.state}</span></td>
            <td>${cpuBaseline(h)}</td>
            <td><div class="meter" title=${`${h.memoryUsedMiB} of ${h.memoryTotalMiB} MiB`}><div style=${`width:${Math.round(used * 100)}%`}></div></div>
              <span class="mem-used">${mib(h.memoryUsedMiB * 1048576)}</span> / ${mib(h.memoryTotalMiB * 1048576)}</td>
            <td>${datastores.join(', ') || '—'}</td>
            <td>${networks.join(', ') || '—'}</td>
            <td>${h.hypervisor ? `${h.hypervisor.kind} ${h.hypervisor.version} (${h.hypervisor.accelerator})` : '—'}</td>
          </tr>`;
        })}
      </tbody>
    </table>
  </section>`;
}
