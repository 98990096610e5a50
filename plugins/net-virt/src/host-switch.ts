/**
 * The agent side: one VirtualSwitch per host with its unix socket ports and its
 * VXLAN uplink, offered to the agent as the NetworkProvider of the configured
 * networks.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { MotusError, type NetworkProvider, type NicAttachment, type NicSpec } from '@motus/sdk';
import type { NetVirtConfig } from './config.js';
import { normalizeMac } from './ethernet.js';
import { PcapWriter } from './pcap-writer.js';
import { PortSocket } from './port-socket.js';
import type { HoldCounters } from './switchover-hold.js';
import { VirtualSwitch, type PortInfo, type UplinkCounters } from './virtual-switch.js';
import { parseEndpoint, VxlanUplink, type Endpoint, type VxlanCounters } from './vxlan-uplink.js';

export interface HostSwitchFacts {
  host: string;
  vtep?: string;
  networks: Array<{ name: string; vni: number; vlan?: number }>;
  ports: Array<PortInfo & { vm: string; nic: string; mac: string }>;
  uplink: (UplinkCounters & VxlanCounters & { peers: string[] }) | undefined;
  macTable: { entries: number; learned: number; moved: number; evicted: number; aged: number };
  /** Frames held for VMs stopped here to move, delivered at their new location, dropped, redirected; holds still waiting. */
  switchover: HoldCounters & { holding: number };
  /** The first MAC_FACTS_LIMIT entries (all of a small site's); the agent's 'mac-table' method returns every one. */
  macs: Array<{ vni: number; vlan: number; mac: string; location: string; ageMs: number }>;
}

const MAC_FACTS_LIMIT = 256;

export interface CaptureResult {
  path: string;
  frames: number;
  truncated: number;
}

const MAX_CAPTURE_MS = 3_600_000;
/** A capture file stops growing here (frames past it are counted, not written). */
export const MAX_CAPTURE_BYTES = 64 << 20;

export class HostSwitch implements NetworkProvider {
  readonly kind = 'net-virt';
  private readonly portsDir: string;
  private readonly sockets = new Map<string, PortSocket>();
  private readonly nics = new Map<string, { vm: string; nic: string; mac: string }>();
  private nextPort = 0;
  private sweeper: NodeJS.Timeout | undefined;
  private holdTimer: NodeJS.Timeout | undefined;

  private constructor(
    readonly host: string,
    private readonly config: NetVirtConfig,
    readonly sw: VirtualSwitch,
    private readonly uplink: VxlanUplink | undefined,
    stateDir: string,
  ) {
    this.portsDir = join(stateDir, 'ports');
    mkdirSync(this.portsDir, { recursive: true });
    const agingMs = config.macAgingSeconds * 1000;
    this.sweeper = setInterval(() => this.sw.sweep(), Math.min(60_000, Math.max(1_000, agingMs / 4)));
    this.sweeper.unref();
  }

  static async start(host: string, config: NetVirtConfig, stateDir: string): Promise<HostSwitch> {
    const networks = Object.entries(config.networks).map(([name, n]) => ({ name, vni: n.vni, ...(n.vlan !== undefined ? { vlan: n.vlan } : {}) }));
    const own = config.hosts[host];
    let uplink: VxlanUplink | undefined;
    let sw: VirtualSwitch | undefined;
    if (own) {
      const peers = new Map<string, Endpoint>();
      for (const [name, h] of Object.entries(config.hosts)) if (name !== host) peers.set(name, parseEndpoint(h.vtep)!);
      uplink = await VxlanUplink.bind(parseEndpoint(own.vtep)!, peers, (peer, vni, frame) => sw?.fromUplink(peer, vni, frame));
    }
    sw = new VirtualSwitch({
      networks,
      macTableSize: config.macTableSize,
      macAgingMs: config.macAgingSeconds * 1000,
      queue: { maxFrames: config.portQueueFrames, maxBytes: config.portQueueBytes },
      switchoverHoldMs: config.switchoverHoldMs,
      ...(uplink ? { uplink } : {}),
    });
    return new HostSwitch(host, config, sw, uplink, stateDir);
  }

  async networks(): Promise<string[]> {
    return this.sw.networkNames();
  }

  async attach(vm: string, nic: NicSpec): Promise<NicAttachment> {
    const mac = normalizeMac(nic.mac);
    if (!mac) throw new MotusError('MOTUS_E_INVALID_REQUEST', `NIC ${nic.id} of VM ${vm} has MAC '${nic.mac}', not six hex bytes`, { vm, nic: nic.id, mac: nic.mac });
    if (!this.sw.network(nic.network)) {
      throw new MotusError('MOTUS_E_INVALID_REQUEST', `network '${nic.network}' does not exist on host ${this.host}`, { network: nic.network, host: this.host });
    }
    const portId = `${vm}.${nic.id}`;
    if (this.sw.hasPort(portId)) await this.detach(vm, nic.id);
    // Short file names keep the path inside sun_path's 108 bytes.
    const path = join(this.portsDir, `${(this.nextPort++).toString(36)}.sock`);
    this.sw.addPort(portId, nic.network, mac);
    try {
      this.sockets.set(portId, await PortSocket.listen(this.sw, portId, path));
    } catch (err) {
      this.sw.removePort(portId);
      throw err;
    }
    this.nics.set(portId, { vm, nic: nic.id, mac });
    const reconnect = this.config.reconnectMs > 0 ? `,reconnect-ms=${this.config.reconnectMs}` : '';
    return { nicId: nic.id, netdev: `stream,id=net-${nic.id},server=off,addr.type=unix,addr.path=${path.replace(/,/g, ',,')}${reconnect}` };
  }

  async detach(vm: string, nicId: string): Promise<void> {
    const portId = `${vm}.${nicId}`;
    const socket = this.sockets.get(portId);
    this.sockets.delete(portId);
    this.nics.delete(portId);
    this.sw.removePort(portId);
    await socket?.close();
  }

  async locate(mac: string): Promise<string | undefined> {
    const normal = normalizeMac(mac);
    return normal === undefined ? undefined : this.sw.locate(normal);
  }

  locateIn(mac: string, network: string | undefined): string | undefined {
    const normal = normalizeMac(mac);
    return normal === undefined ? undefined : this.sw.locate(normal, network);
  }

  migrationStarted(vm: string): void {
    for (const [portId, nic] of this.nics) if (nic.vm === vm) this.sw.recordPort(portId, nic.mac);
  }

  migrationStopped(vm: string, stoppedAt: number): void {
    for (const [portId, nic] of this.nics) if (nic.vm === vm) this.sw.holdPort(portId, nic.mac, stoppedAt);
    // Holds end when the MAC moves; this only expires the ones nobody ends.
    this.holdTimer ??= setInterval(() => {
      this.sw.expireHolds();
      if (this.sw.holdsPending() === 0) {
        clearInterval(this.holdTimer);
        this.holdTimer = undefined;
      }
    }, 250);
    this.holdTimer.unref();
  }

  migrationEnded(vm: string, left: boolean): void {
    for (const [portId, nic] of this.nics) {
      if (nic.vm !== vm) continue;
      if (left) this.sw.stopRecording(portId);
      else this.sw.releasePort(portId);
    }
  }

  /**
   * Records to a pcap file for `durationMs`: a port's frames (both directions), the
   * uplink's inner frames ('uplink'), or every frame the local ports of a network
   * send ('network:<name>', each frame once).
   */
  async capture(target: string, path: string, durationMs: number, signal?: AbortSignal): Promise<CaptureResult> {
    if (!(durationMs > 0 && durationMs <= MAX_CAPTURE_MS)) {
      throw new MotusError('MOTUS_E_INVALID_REQUEST', `a capture lasts between 1 ms and ${MAX_CAPTURE_MS} ms, not ${durationMs}`, { durationMs });
    }
    const network = target.startsWith('network:') ? target.slice(8) : undefined;
    const where = target === 'uplink' ? ('uplink' as const) : network !== undefined ? { network } : { port: target };
    if (network !== undefined && !this.sw.network(network)) {
      throw new MotusError('MOTUS_E_NOT_FOUND', `no network ${network} on host ${this.host}`, { target, host: this.host });
    }
    if (where !== 'uplink' && network === undefined && !this.sw.hasPort(target)) {
      throw new MotusError('MOTUS_E_NOT_FOUND', `no port ${target} on host ${this.host}; ports are <vm>.<nic>, 'uplink' or 'network:<name>'`, { target, host: this.host });
    }
    const writer = new PcapWriter(path, MAX_CAPTURE_BYTES);
    const untap = this.sw.tap(where, (frame) => writer.write(frame));
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, durationMs);
      signal?.addEventListener('abort', () => {
        clearTimeout(timer);
        resolve();
      }, { once: true });
    });
    untap();
    await writer.close();
    return { path, frames: writer.frames, truncated: writer.truncated };
  }

  facts(): HostSwitchFacts {
    const tables = Object.values(this.sw.tableStats());
    const sum = (k: keyof (typeof tables)[number]) => tables.reduce((s, t) => s + t[k], 0);
    const vtep = this.config.hosts[this.host]?.vtep;
    return {
      host: this.host,
      ...(vtep ? { vtep } : {}),
      networks: Object.entries(this.config.networks).map(([name, n]) => ({ name, ...n })),
      ports: this.sw.portInfo().map((p) => ({ ...p, ...this.nics.get(p.id)! })),
      uplink: this.uplink ? { peers: [...this.uplink.peers()], ...this.sw.uplinkStats(), ...this.uplink.stats() } : undefined,
      macTable: { entries: sum('entries'), learned: sum('learned'), moved: sum('moved'), evicted: sum('evicted'), aged: sum('aged') },
      switchover: this.sw.holdStats(),
      macs: this.sw.macEntries().slice(0, MAC_FACTS_LIMIT),
    };
  }

  async stop(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
    if (this.holdTimer) clearInterval(this.holdTimer);
    this.holdTimer = undefined;
    for (const [portId, socket] of [...this.sockets]) {
      this.sockets.delete(portId);
      this.sw.removePort(portId);
      await socket.close();
    }
    await this.uplink?.close();
  }
}
