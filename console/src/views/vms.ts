import { html } from 'lit-html';
import type { VmInfo } from '@motus/sdk';
import type { AppContext } from '../app-context.js';
import { mib } from '../format.js';

/** The datastores a VM's disks live on, as the hosts' plugins name them; the disk path when none claims it. */
function vmDatastores(app: AppContext, vm: VmInfo): string[] {
  const known = new Map<string, string>();
  for (const host of app.state.hosts.values()) {
    for (const facts of Object.values(host.plugins ?? {}) as Array<{ datastores?: Array<{ name?: string; url?: string; path?: string }> }>) {
      for (const ds of facts?.datastores ?? []) if (ds?.name) known.set(ds.name, ds.url ?? ds.path ?? '');
    }
  }
  return (vm.spec.disks ?? []).map((disk) => {
    for (const [name, url] of known) if ((url && disk.path.startsWith(url)) || disk.path.includes(`/${name}/`) || disk.path.startsWith(`${name}:`)) return name;
    return disk.path;
  });
}

export function vmsView(app: AppContext) {
  const vms = [...app.state.vms.values()].sort((a, b) => a.name.localeCompare(b.name));
  return html`<section data-view="vms">
    <h2>Virtual machines</h2>
    <table>
      <thead><tr><th>VM</th><th>host</th><th>state</th><th>memory</th><th>vCPUs</th><th>CPU model</th><th>datastores</th><th>MACs</th></tr></thead>
      <tbody>
        ${vms.map(
          (vm) => html`<tr data-vm=${vm.name}>
            <td>${vm.name}</td>
            <td class="vm-host">${vm.host}</td>
            <td><span class="state state-${vm.state}">${vm.state}</span></td>
            <td>${mib(vm.spec.memoryMiB * 1048576)}</td>
            <td>${vm.spec.vcpus}</td>
            <td>${vm.spec.cpuModel ?? 'hypervisor default'}</td>
            <td>${vmDatastores(app, vm).join(', ') || '—'}</td>
            <td>${(vm.spec.nics ?? []).map((n) => `${n.mac} (${n.network})`).join(', ') || '—'}</td>
          </tr>`,
        )}
      </tbody>
    </table>
  </section>`;
}
