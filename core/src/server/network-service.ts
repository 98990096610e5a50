/**
 * `motus net`: the switches' counters and captures, asked of every host's network
 * plugin through the agent methods the SDK names (NETWORK_STATS_METHOD,
 * NETWORK_CAPTURE_METHOD), so the server needs no knowledge of the plugin itself.
 */
import {
  MotusError,
  NETWORK_CAPTURE_METHOD,
  NETWORK_STATS_METHOD,
  type HostInfo,
  type HostNetworkStats,
  type NetCaptureRequest,
  type NetCaptureResult,
  type SwitchCaptureAnswer,
  type SwitchCaptureCall,
  type SwitchStats,
  type VmInfo,
} from '@motus/sdk';
import type { HostLink } from '../agent/host-link.js';
import { mergePcaps } from './pcap-merge.js';

const STATS_TIMEOUT_MS = 5_000;
/** Beyond the capture itself: the agent writes, reads back and sends the file. */
const CAPTURE_SLACK_MS = 30_000;
export const MAX_NET_CAPTURE_MS = 300_000;

export interface NetworkServiceDeps {
  /** Registered hosts with their links. */
  hosts(): Array<{ info: HostInfo; link: HostLink }>;
  vms(): VmInfo[];
  /** Plugins whose manifest provides networks. */
  plugins: string[];
}

export class NetworkService {
  constructor(private readonly deps: NetworkServiceDeps) {}

  async stats(): Promise<HostNetworkStats[]> {
    const calls = this.deps.hosts().flatMap(({ info, link }) =>
      this.deps.plugins.map(async (plugin): Promise<HostNetworkStats> => {
        if (info.state === 'disconnected') return { host: info.name, plugin, error: { code: 'MOTUS_E_HOST_DOWN', message: `host ${info.name} is down (its agent does not answer)` } };
        try {
          return { host: info.name, plugin, switch: (await link.pluginCall(plugin, NETWORK_STATS_METHOD, null, STATS_TIMEOUT_MS)) as SwitchStats };
        } catch (err) {
          const error = MotusError.from(err, 'MOTUS_E_AGENT_UNREACHABLE');
          return { host: info.name, plugin, error: { code: error.code, message: error.message } };
        }
      }),
    );
    return (await Promise.all(calls)).sort((a, b) => a.host.localeCompare(b.host) || a.plugin.localeCompare(b.plugin));
  }

  async capture(request: NetCaptureRequest): Promise<NetCaptureResult> {
    const plugin = this.deps.plugins[0];
    if (!plugin) throw new MotusError('MOTUS_E_NOT_FOUND', 'no plugin of this site provides networks (add @motus/net-virt to the site file)', {});
    const { target, durationMs } = request;
    const hosts = new Map(this.deps.hosts().map((h) => [h.info.name, h]));
    if (request.host !== undefined && !hosts.has(request.host)) throw new MotusError('MOTUS_E_HOST_NOT_FOUND', `no host named ${request.host}`, { host: request.host });
    let kind: NetCaptureResult['kind'];
    let agentTarget: string;
    let on: string[];
    const vm = this.deps.vms().find((v) => (v.spec.nics ?? []).some((n) => `${v.name}.${n.id}` === target));
    if (target === 'uplink') {
      if (request.host === undefined) throw new MotusError('MOTUS_E_INVALID_REQUEST', 'an uplink capture names its host (--host)', { field: 'host' });
      [kind, agentTarget, on] = ['uplink', 'uplink', [request.host]];
    } else if (vm) {
      [kind, agentTarget, on] = ['port', target, [request.host ?? vm.host]];
    } else {
      const withNetwork = [...hosts.values()].filter((h) => networksOf(h.info, plugin).includes(target)).map((h) => h.info.name).sort();
      if (withNetwork.length === 0) {
        throw new MotusError('MOTUS_E_NOT_FOUND', `no port (<vm>.<nic>) or network named ${target}; networks: ${[...new Set([...hosts.values()].flatMap((h) => networksOf(h.info, plugin)))].join(', ') || 'none'}`, { target });
      }
      if (request.host !== undefined && !withNetwork.includes(request.host)) {
        throw new MotusError('MOTUS_E_NOT_FOUND', `host ${request.host} has no network ${target}`, { target, host: request.host });
      }
      [kind, agentTarget, on] = ['network', `network:${target}`, request.host !== undefined ? [request.host] : withNetwork];
    }
    const call: SwitchCaptureCall = { target: agentTarget, durationMs, inline: true };
    const answers = await Promise.all(
      on.map(async (host) => {
        const entry = hosts.get(host)!;
        if (entry.info.state === 'disconnected') throw new MotusError('MOTUS_E_HOST_DOWN', `host ${host} is down (its agent does not answer)`, { host });
        const answer = (await entry.link.pluginCall(plugin, NETWORK_CAPTURE_METHOD, call, durationMs + CAPTURE_SLACK_MS)) as SwitchCaptureAnswer;
        return { host, answer };
      }),
    );
    const merged = mergePcaps(answers.map(({ host, answer }) => ({ label: `the capture of ${host}`, pcap: Buffer.from(answer.pcapBase64 ?? '', 'base64') })));
    if (!merged.ok) throw new MotusError('MOTUS_E_INTERNAL', `a host sent a capture that cannot be read: ${merged.reason}`, { target });
    return {
      target,
      kind,
      hosts: on,
      frames: merged.records,
      truncated: answers.reduce((sum, { answer }) => sum + (answer.truncated ?? 0), 0),
      pcapBase64: merged.pcap.toString('base64'),
    };
  }
}

/** The networks a host's plugin reports in its facts. */
function networksOf(info: HostInfo, plugin: string): string[] {
  const facts = info.plugins[plugin] as Partial<SwitchStats> | undefined;
  return Array.isArray(facts?.networks) ? facts.networks.map((n) => n.name) : [];
}
