import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { definePlugin, MotusError, NETWORK_CAPTURE_METHOD, NETWORK_STATS_METHOD, NetworkProviderToken, type SwitchCaptureAnswer, type SwitchCaptureCall } from '@motus/sdk';
import { netVirtConfigSchema, type NetVirtConfig } from './config.js';
import { HostSwitch } from './host-switch.js';
import { confirmRelocation } from './relocation.js';
import { destinationVeto } from './destination-check.js';
import { publishSwitchMetrics } from './switch-metrics.js';

export { netVirtConfigSchema, type NetVirtConfig } from './config.js';
export { FrameDecoder, encodeFrame, MAX_FRAME_BYTES, MAX_SKIP_BYTES, MIN_FRAME_BYTES, type FrameDecodeError, type FrameDecodeResult } from './frame-codec.js';
export { parseEthernet, isGroupAddress, macToString, macToBytes, normalizeMac, pushVlanTag, popVlanTag, type EthernetHeader } from './ethernet.js';
export { encodeVxlan, decodeVxlan, VXLAN_HEADER_BYTES, type VxlanDecodeResult } from './vxlan.js';
export { MacTable, type MacEntry, type MacTableOptions, type MacTableStats, type LearnOutcome } from './mac-table.js';
export { PortQueue, type FrameSink, type PortQueueLimits, type PortQueueCounters } from './port-queue.js';
export { VirtualSwitch, type NetworkDefinition, type SwitchOptions, type UplinkTransport, type PortInfo, type PortCounters, type UplinkCounters } from './virtual-switch.js';
export { PortSocket } from './port-socket.js';
export { VxlanUplink, parseEndpoint, type Endpoint } from './vxlan-uplink.js';
export { PcapWriter, pcapGlobalHeader, pcapRecord } from './pcap-writer.js';
export { readPcap, type PcapPacket } from './pcap-reader.js';
export { HostSwitch, type HostSwitchFacts, type CaptureResult } from './host-switch.js';
export { confirmRelocation, type ConfirmOptions, type Disagreement } from './relocation.js';
export { destinationVeto } from './destination-check.js';
export { publishSwitchMetrics } from './switch-metrics.js';

export const PLUGIN_NAME = '@motus/net-virt';

interface LocatePayload {
  mac: string;
  network?: string;
}

function payloadError(method: string, expected: string): MotusError {
  return new MotusError('MOTUS_E_INVALID_REQUEST', `net-virt ${method}: the payload must be ${expected}`, { method });
}

export default definePlugin<NetVirtConfig>({
  name: PLUGIN_NAME,
  version: '0.1.0',
  apiVersion: 1,
  provides: [NetworkProviderToken],
  configSchema: netVirtConfigSchema,
  async setup(ctx) {
    if (ctx.role === 'agent') {
      const host = ctx.host ?? 'local';
      const hostSwitch = await HostSwitch.start(host, ctx.config, ctx.stateDir);
      ctx.onDispose(() => hostSwitch.stop());
      ctx.provide(NetworkProviderToken, hostSwitch);
      ctx.reportFacts(() => hostSwitch.facts());
      publishSwitchMetrics(ctx.metrics, hostSwitch.sw);
      ctx.handle('locate', async (payload) => {
        const p = payload as Partial<LocatePayload> | null;
        if (typeof p?.mac !== 'string' || (p.network !== undefined && typeof p.network !== 'string')) throw payloadError('locate', '{ mac: string, network?: string }');
        return { host, location: hostSwitch.locateIn(p.mac, p.network) ?? null };
      });
      ctx.handle(NETWORK_STATS_METHOD, async () => hostSwitch.facts());
      ctx.handle('mac-table', async () => hostSwitch.sw.macEntries());
      let captures = 0;
      ctx.handle(NETWORK_CAPTURE_METHOD, async (payload): Promise<SwitchCaptureAnswer> => {
        const p = payload as Partial<SwitchCaptureCall> | null;
        const inline = p?.inline === true;
        const name = p?.name ?? (inline ? `inline-${process.pid}-${captures++}.pcap` : undefined);
        if (typeof p?.target !== 'string' || typeof name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(name) || typeof p.durationMs !== 'number' || (p.inline !== undefined && typeof p.inline !== 'boolean')) {
          throw payloadError('capture', '{ target: string, durationMs: number, name: a plain file name (unless inline), inline?: boolean }');
        }
        // The server names the file only: an agent call must not write anywhere on the host.
        mkdirSync(join(ctx.stateDir, 'captures'), { recursive: true });
        const path = join(ctx.stateDir, 'captures', name);
        const result = await hostSwitch.capture(p.target, path, p.durationMs);
        if (!inline) return result;
        try {
          return { frames: result.frames, truncated: result.truncated, pcapBase64: readFileSync(path).toString('base64') };
        } finally {
          rmSync(path, { force: true });
        }
      });
      if (!ctx.config.hosts[host] && Object.keys(ctx.config.hosts).length > 0) {
        ctx.logger.warn('this host has no VXLAN endpoint in the net-virt config: its switch has no uplink', { host });
      }
      return;
    }
    const uplinks = Object.keys(ctx.config.hosts).length > 0;
    ctx.hooks.validate.tapPromise(PLUGIN_NAME, async (mctx) => destinationVeto(PLUGIN_NAME, mctx.vm, mctx.destination, uplinks));
    ctx.hooks.announce.tapPromise(PLUGIN_NAME, async (mctx) => {
      const nics = (mctx.vm.spec.nics ?? []).filter((nic) => nic.network in ctx.config.networks);
      if (nics.length === 0) return;
      // An endpoint that is no Motus host (a hardware VTEP, a gateway) has no switch to ask.
      const siteHosts = new Set((await ctx.hosts()).map((h) => h.name));
      const configured = Object.keys(ctx.config.hosts).filter((h) => siteHosts.has(h));
      const hosts = configured.includes(mctx.destination.name) ? configured : [mctx.destination.name];
      const result = await confirmRelocation({
        nics,
        destination: mctx.destination.name,
        hosts,
        timeoutMs: ctx.config.announceTimeoutMs,
        pollMs: ctx.config.announcePollMs,
        signal: mctx.signal,
        locate: async (host, mac, network) => {
          const answer = (await ctx.callAgent(host, 'locate', { mac, network })) as { location: string | null } | null;
          return answer?.location ?? undefined;
        },
      });
      ctx.logger.info('vNIC location confirmed on every switch', { vm: mctx.vm.name, destination: mctx.destination.name, ms: result.ms, polls: result.polls, hosts });
    });
  },
});
