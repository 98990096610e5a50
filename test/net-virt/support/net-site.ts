import { readFileSync } from 'node:fs';
import type { HostInfo, MigrationEvent, VmInfo, VmSpec } from '@motus/sdk';
import type { HostSwitchFacts } from '@motus/net-virt';
import { guestKit } from '../../support/index.js';
import type { TestSite } from '../../support/site.js';
import { parseTcpSerial, type TcpSerial } from './guest.js';

export const SERVER_MAC = '52:54:00:00:02:0a';
export const CLIENT_MAC = '52:54:00:00:02:0c';
export const SERVER_WORKLOAD = ['motus.ip=169.254.0.10/16', 'motus.tcp=server:7000'];
export const CLIENT_WORKLOAD = ['motus.ip=169.254.0.12/16', 'motus.tcp=client:169.254.0.10:7000:20'];

/** An all-in-one site file with hv-qemu and net-virt, one VXLAN endpoint per host on loopback. */
export function netSiteYaml(hosts: string[], vteps: Record<string, number>, announceTimeoutMs: number, extra: Record<string, number> = {}): string {
  return `
site: net-virt
migration:
  maxBandwidthMiBps: 256
# All hosts share one loaded machine: CPU "overload" must not evacuate the guests under test.
placement:
  health:
    onDegraded: report
hosts:
${hosts.map((h) => `  - name: ${h}\n    memoryMiB: 1024`).join('\n')}
plugins:
  - package: '@motus/hv-qemu'
  - package: '@motus/net-virt'
    config:
      networks:
        prod: { vni: 5001 }
      hosts:
${hosts.map((h) => `        ${h}: { vtep: '127.0.0.1:${vteps[h]}' }`).join('\n')}
      announceTimeoutMs: ${announceTimeoutMs}
${Object.entries(extra).map(([k, v]) => `      ${k}: ${v}
`).join('')}`;
}

export function kitVm(name: string, mac: string, workloads: string[]): VmSpec {
  const kit = guestKit();
  return {
    name,
    memoryMiB: 160,
    vcpus: 1,
    boot: { kind: 'kernel', kernel: kit.kernel, initrd: kit.initrd, cmdline: kit.cmdline({ extra: workloads }) },
    nics: [{ id: 'n0', mac, network: 'prod' }],
  };
}

export async function vmInfo(site: TestSite, name: string): Promise<VmInfo> {
  const vm = (await site.client.vms()).find((v) => v.name === name);
  if (!vm) throw new Error(`VM ${name} is not in the inventory`);
  return vm;
}

export function switchFacts(host: HostInfo): HostSwitchFacts | undefined {
  return host.plugins['@motus/net-virt'] as HostSwitchFacts | undefined;
}

export function tcpOf(vm: VmInfo): TcpSerial {
  return parseTcpSerial(readFileSync(vm.serialLog!, 'latin1'));
}

/** Runs one migration through the API and returns all its events. */
export async function migrate(site: TestSite, vm: string, destination: string): Promise<MigrationEvent[]> {
  const summary = await site.client.migrate({ vm, destination });
  const events: MigrationEvent[] = [];
  for await (const event of site.client.migrationEvents(summary.id)) events.push(event);
  return events;
}
