/**
 * The forwarding plane of one host: ports grouped into networks, one MAC table
 * per VNI keyed by (MAC, VLAN), flooding, and the VXLAN uplink to the other
 * hosts' switches. Transport-free: ports write to FrameSinks and the uplink is an
 * interface, so the logic is tested without sockets.
 */
import { encodeFrame } from './frame-codec.js';
import { isGroupAddress, parseEthernet, popVlanTag, pushVlanTag } from './ethernet.js';
import { MacTable, type MacTableStats } from './mac-table.js';
import { PortQueue, type FrameSink, type PortQueueCounters, type PortQueueLimits } from './port-queue.js';

export interface NetworkDefinition {
  name: string;
  vni: number;
  /** 802.1Q id carried on the uplink; ports of the network see untagged frames. */
  vlan?: number;
}

/** Sends frames to the other hosts' switches (VXLAN in production). */
export interface UplinkTransport {
  peers(): readonly string[];
  send(host: string, vni: number, frame: Buffer): void;
}

/** Something that sees every frame a port or the uplink carries (a pcap writer). */
export type FrameTap = (frame: Buffer, direction: 'rx' | 'tx') => void;

export interface SwitchOptions {
  networks: NetworkDefinition[];
  macTableSize: number;
  macAgingMs: number;
  queue: PortQueueLimits;
  uplink?: UplinkTransport;
  now?: () => number;
}

export interface PortCounters extends PortQueueCounters {
  rxFrames: number;
  rxBytes: number;
  /** Frames from the port the switch refused (tagged on an access port, bad source MAC, malformed framing). */
  rxDropped: number;
}

export interface PortInfo {
  id: string;
  network: string;
  connected: boolean;
  counters: PortCounters;
}

export interface UplinkCounters {
  txFrames: number;
  txBytes: number;
  rxFrames: number;
  rxBytes: number;
  /** Frames from a peer for a (VNI, VLAN) this switch has no network for. */
  rxUnknownSegment: number;
  rxDropped: number;
}

interface Port {
  id: string;
  network: NetworkDefinition;
  queue: PortQueue;
  connected: boolean;
  rx: { frames: number; bytes: number; dropped: number };
  taps: Set<FrameTap>;
}

const segmentKey = (vni: number, vlan: number) => `${vni}/${vlan}`;

export class VirtualSwitch {
  private readonly networks = new Map<string, NetworkDefinition>();
  private readonly ports = new Map<string, Port>();
  /** Ports by segment (VNI, VLAN), in attach order. */
  private readonly segments = new Map<string, Set<Port>>();
  private readonly tables = new Map<number, MacTable>();
  private readonly uplinkCounters: UplinkCounters = { txFrames: 0, txBytes: 0, rxFrames: 0, rxBytes: 0, rxUnknownSegment: 0, rxDropped: 0 };
  private readonly uplinkTaps = new Set<FrameTap>();

  constructor(private readonly options: SwitchOptions) {
    for (const network of options.networks) {
      this.networks.set(network.name, network);
      const key = segmentKey(network.vni, network.vlan ?? 0);
      if (this.segments.has(key)) throw new RangeError(`networks share VNI ${network.vni} and VLAN ${network.vlan ?? 'none'}; each needs its own`);
      this.segments.set(key, new Set());
      if (!this.tables.has(network.vni)) {
        this.tables.set(network.vni, new MacTable({ maxEntries: options.macTableSize, agingMs: options.macAgingMs, ...(options.now ? { now: options.now } : {}) }));
      }
    }
  }

  networkNames(): string[] {
    return [...this.networks.keys()];
  }

  network(name: string): NetworkDefinition | undefined {
    return this.networks.get(name);
  }

  hasPort(id: string): boolean {
    return this.ports.has(id);
  }

  addPort(id: string, networkName: string): void {
    const network = this.networks.get(networkName);
    if (!network) throw new RangeError(`no network '${networkName}' on this switch`);
    if (this.ports.has(id)) throw new RangeError(`port ${id} exists already`);
    const port: Port = { id, network, queue: new PortQueue(this.options.queue, encodeFrame), connected: false, rx: { frames: 0, bytes: 0, dropped: 0 }, taps: new Set() };
    this.ports.set(id, port);
    this.segments.get(segmentKey(network.vni, network.vlan ?? 0))!.add(port);
  }

  removePort(id: string): void {
    const port = this.ports.get(id);
    if (!port) return;
    port.queue.setSink(undefined);
    this.ports.delete(id);
    this.segments.get(segmentKey(port.network.vni, port.network.vlan ?? 0))?.delete(port);
    this.tables.get(port.network.vni)?.flushLocation(`local:${id}`);
  }

  /** A socket connected to (or, with undefined, left) the port. */
  connectPort(id: string, sink: FrameSink | undefined): void {
    const port = this.ports.get(id);
    if (!port) return;
    port.queue.setSink(sink);
    port.connected = sink !== undefined;
  }

  /** The port's socket emitted 'drain'. */
  drainPort(id: string): void {
    this.ports.get(id)?.queue.drain();
  }

  /** Counts frames from a port that never reached forwarding (bad framing). */
  countPortRxError(id: string, count = 1): void {
    const port = this.ports.get(id);
    if (port) port.rx.dropped += count;
  }

  fromPort(id: string, frame: Buffer): void {
    const port = this.ports.get(id);
    if (!port) return;
    port.rx.frames++;
    port.rx.bytes += frame.length;
    for (const tap of port.taps) tap(frame, 'rx');
    const eth = parseEthernet(frame);
    // An access port carries untagged frames only; a tag from a guest would let it hop VLANs.
    if (!eth || eth.vlan !== undefined || (frame[6]! & 1) === 1) {
      port.rx.dropped++;
      return;
    }
    const { vni } = port.network;
    const vlan = port.network.vlan ?? 0;
    const table = this.tables.get(vni)!;
    table.learn(eth.src, vlan, `local:${id}`);
    const target = isGroupAddress(frame) ? undefined : table.lookup(eth.dst, vlan);
    if (target === undefined) {
      for (const other of this.segments.get(segmentKey(vni, vlan))!) if (other !== port) this.deliver(other, frame);
      this.toUplinks(undefined, vni, vlan, frame);
    } else if (target.startsWith('local:')) {
      const other = this.ports.get(target.slice(6));
      if (other && other !== port) this.deliver(other, frame);
    } else {
      this.toUplinks(target.slice(7), vni, vlan, frame);
    }
  }

  /** A frame a peer switch sent over the uplink. */
  fromUplink(peer: string, vni: number, frame: Buffer): void {
    this.uplinkCounters.rxFrames++;
    this.uplinkCounters.rxBytes += frame.length;
    for (const tap of this.uplinkTaps) tap(frame, 'rx');
    const eth = parseEthernet(frame);
    if (!eth || (frame[6]! & 1) === 1) {
      this.uplinkCounters.rxDropped++;
      return;
    }
    const vlan = eth.vlan ?? 0;
    const members = this.segments.get(segmentKey(vni, vlan));
    const table = this.tables.get(vni);
    if (!members || !table) {
      this.uplinkCounters.rxUnknownSegment++;
      return;
    }
    const inner = eth.vlan === undefined ? frame : popVlanTag(frame);
    table.learn(eth.src, vlan, `uplink:${peer}`);
    const target = isGroupAddress(frame) ? undefined : table.lookup(eth.dst, vlan);
    // Split horizon: the uplinks form a full mesh, so nothing goes back out of one.
    if (target === undefined) {
      for (const port of members) this.deliver(port, inner);
    } else if (target.startsWith('local:')) {
      const port = this.ports.get(target.slice(6));
      if (port) this.deliver(port, inner);
    }
  }

  /** Where the switch reaches `mac`, in the network's table; any network when none is named. */
  locate(mac: string, networkName?: string): string | undefined {
    const networks = networkName === undefined ? [...this.networks.values()] : [this.networks.get(networkName)].filter((n) => n !== undefined);
    for (const network of networks) {
      const location = this.tables.get(network.vni)?.lookup(mac, network.vlan ?? 0);
      if (location !== undefined) return location;
    }
    return undefined;
  }

  /** Drops aged entries from every table. */
  sweep(): number {
    let removed = 0;
    for (const table of this.tables.values()) removed += table.sweep();
    return removed;
  }

  tap(target: { port: string } | 'uplink', fn: FrameTap): () => void {
    const set = target === 'uplink' ? this.uplinkTaps : this.ports.get(target.port)?.taps;
    if (!set) throw new RangeError(`no port ${(target as { port: string }).port} on this switch`);
    set.add(fn);
    return () => set.delete(fn);
  }

  portInfo(): PortInfo[] {
    return [...this.ports.values()].map((p) => ({
      id: p.id,
      network: p.network.name,
      connected: p.connected,
      counters: { rxFrames: p.rx.frames, rxBytes: p.rx.bytes, rxDropped: p.rx.dropped, ...p.queue.stats() },
    }));
  }

  uplinkStats(): UplinkCounters {
    return { ...this.uplinkCounters };
  }

  tableStats(): Record<number, MacTableStats> {
    return Object.fromEntries([...this.tables.entries()].map(([vni, t]) => [vni, t.stats()]));
  }

  macEntries(): Array<{ vni: number; mac: string; vlan: number; location: string; ageMs: number }> {
    const now = (this.options.now ?? Date.now)();
    return [...this.tables.entries()].flatMap(([vni, t]) =>
      t
        .entries()
        .filter((e) => now - e.lastSeen < this.options.macAgingMs)
        .map((e) => ({ vni, mac: e.mac, vlan: e.vlan, location: e.location, ageMs: now - e.lastSeen })),
    );
  }

  private deliver(port: Port, frame: Buffer): void {
    for (const tap of port.taps) tap(frame, 'tx');
    port.queue.offer(frame);
  }

  private toUplinks(peer: string | undefined, vni: number, vlan: number, frame: Buffer): void {
    const uplink = this.options.uplink;
    if (!uplink) return;
    const peers = peer === undefined ? uplink.peers() : [peer];
    if (peers.length === 0) return;
    const outer = vlan === 0 ? frame : pushVlanTag(frame, vlan);
    for (const host of peers) {
      this.uplinkCounters.txFrames++;
      this.uplinkCounters.txBytes += outer.length;
      for (const tap of this.uplinkTaps) tap(outer, 'tx');
      uplink.send(host, vni, outer);
    }
  }
}
