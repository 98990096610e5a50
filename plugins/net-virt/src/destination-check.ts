/**
 * The validate step: a VM may move only to a host whose switch offers every
 * network its NICs are on and, when the site has uplinks, has one itself —
 * otherwise the VM would arrive cut off from the peers it talks to.
 */
import type { HostInfo, VmInfo, Veto } from '@motus/sdk';
import type { HostSwitchFacts } from './host-switch.js';

export function destinationVeto(plugin: string, vm: VmInfo, destination: HostInfo, sitesUplinks: boolean): Veto | undefined {
  const nics = vm.spec.nics ?? [];
  if (nics.length === 0) return undefined;
  const facts = destination.plugins[plugin] as Partial<HostSwitchFacts> | undefined;
  const veto = (reason: string, data: Record<string, unknown>): Veto => ({
    plugin,
    code: 'MOTUS_E_NET_NOT_ON_HOST',
    reason,
    data: { host: destination.name, vm: vm.name, ...data },
  });
  if (!facts?.networks) return veto(`host ${destination.name} reports no virtual switch yet (its agent has not sent net-virt facts)`, {});
  for (const nic of nics) {
    if (!facts.networks.some((n) => n.name === nic.network)) {
      return veto(`host ${destination.name} has no network '${nic.network}', which NIC ${nic.id} of VM ${vm.name} is on`, { network: nic.network, nic: nic.id });
    }
  }
  if (sitesUplinks && !facts.uplink) {
    return veto(`host ${destination.name} has no VXLAN uplink (no 'hosts.${destination.name}.vtep' in the net-virt config): VM ${vm.name} would be cut off from the other hosts`, {});
  }
  return undefined;
}
