/**
 * The forwarding plane of one host: ports grouped into networks, one MAC table
 * per VNI keyed by (MAC, VLAN), flooding, and the VXLAN uplink to the other
 * hosts' switches. Transport-free: ports write to FrameSinks and the uplink is an
 * interface, so the logic is tested without sockets.
 */
import { encodeFrame } from './frame-codec.js';
import { isGroupAddress, macToString, parseEthernet, popVlanTag, pushVlanTag } from './ethernet.js';
import { MacTable, type MacTableStats } from './mac-table.js';
import { PortQueue, type FrameSink, type PortQueueCounters, type PortQueueLimits } from './port-queue.js';
import { holdKey, SwitchoverHolds, unsent, type Hold, type HoldCounters } from './switchover-hold.js';

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
  /** How long frames for a VM stopped to move are held while its MAC has not shown up elsewhere (default 10 s; 0: never held, as a plain switch). */
  switchoverHoldMs?: number;
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
  /** The MAC of the vNIC behind the port, when the switch was told (a VM arriving by migration owns it before it speaks). */
  mac: string | undefined;
  queue: PortQueue;
  connected: boolean;
  rx: { frames: number; bytes: number; dropped: number };
  taps: Set<FrameTap>;
}

const segmentKey = (vni: number, vlan: number) => `${vni}/${vlan}`;
/** Sent frames are remembered this long while a VM's migration runs: far more than the hypervisor's stop event takes to arrive. */
const RECORD_MS = 2_000;

export class VirtualSwitch {
  private readonly networks = new Map<string, NetworkDefinition>();
  private readonly ports = new Map<string, Port>();
  /** Ports by segment (VNI, VLAN), in attach order. */
  private readonly segments = new Map<string, Set<Port>>();
  private readonly tables = new Map<number, MacTable>();
  private readonly uplinkCounters: UplinkCounters = { txFrames: 0, txBytes: 0, rxFrames: 0, rxBytes: 0, rxUnknownSegment: 0, rxDropped: 0 };
  private readonly uplinkTaps = new Set<FrameTap>();
  /** Per network: taps that see every frame its local ports send (each frame once per switch). */
  private readonly networkTaps = new Map<string, Set<FrameTap>>();
  private readonly holds: SwitchoverHolds;

  constructor(private readonly options: SwitchOptions) {
    const holdMs = options.switchoverHoldMs ?? 10_000;
    this.holds = new SwitchoverHolds(
      { maxFrames: options.queue.maxFrames, maxBytes: options.queue.maxBytes, recordMs: RECORD_MS, holdMs, redirectMs: holdMs },
      options.now ?? Date.now,
    );
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

  addPort(id: string, networkName: string, mac?: string): void {
    const network = this.networks.get(networkName);
    if (!network) throw new RangeError(`no network '${networkName}' on this switch`);
    if (this.ports.has(id)) throw new RangeError(`port ${id} exists already`);
    const port: Port = { id, network, mac, queue: new PortQueue(this.options.queue, encodeFrame), connected: false, rx: { frames: 0, bytes: 0, dropped: 0 }, taps: new Set() };
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
    if (this.networkTaps.size > 0) for (const tap of this.networkTaps.get(port.network.name) ?? []) tap(frame, 'rx');
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
    const group = isGroupAddress(frame);
    if (this.holds.active) {
      this.relearned(vni, vlan, eth.src, `local:${id}`);
      const hold = group ? undefined : this.holds.offer(holdKey(vni, vlan, eth.dst), frame);
      if (hold) return this.sendAhead(hold);
    }
    const target = group ? undefined : table.lookup(eth.dst, vlan);
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
    const group = isGroupAddress(frame);
    if (this.holds.active) {
      this.relearned(vni, vlan, eth.src, `uplink:${peer}`);
      const hold = group ? undefined : this.holds.offer(holdKey(vni, vlan, eth.dst), inner);
      if (hold) return this.sendAhead(hold, peer);
    }
    const target = group ? undefined : table.lookup(eth.dst, vlan);
    // Split horizon: the uplinks form a full mesh, so nothing goes back out of one —
    // except a frame for a MAC that just moved from here to another host, which a
    // peer that has not yet seen the move still sends here.
    if (target === undefined) {
      for (const port of members) this.deliver(port, inner);
    } else if (target.startsWith('local:')) {
      const port = this.ports.get(target.slice(6));
      if (port) this.deliver(port, inner);
    } else if (target === `uplink:${peer}`) {
      // A peer sends a frame for a MAC it reaches itself only when it hands over the
      // frames of a VM stopped there to move: the port waiting for that VM here takes
      // them (its QEMU reads them once the VM runs). The table stays as it is until
      // the VM speaks from here.
      const arriving = this.arrivingPort(members, eth.dst);
      if (arriving) this.deliver(arriving, inner);
    } else if (this.holds.active) {
      const to = this.holds.redirect(holdKey(vni, vlan, eth.dst));
      if (to === target) this.toUplinks(to.slice(7), vni, vlan, inner);
    }
  }

  /**
   * The VM on `portId` (whose vNIC has `mac`) is about to be migrated away:
   * remember the unicast frames handed to the port, so the ones it will not read
   * once stopped can be delivered again.
   */
  recordPort(portId: string, mac: string): void {
    const port = this.ports.get(portId);
    if (port && this.options.switchoverHoldMs !== 0) this.holds.startRecording(portId, holdKey(port.network.vni, port.network.vlan ?? 0, mac));
  }

  /**
   * The VM on `portId` stopped at `since` (ms since the epoch, the hypervisor's
   * clock) for its switchover: frames for `mac` handed to the port since then or
   * still queued for it, and those arriving from now on, wait until the MAC shows
   * up on another port or uplink, and go there.
   */
  holdPort(portId: string, mac: string, since: number): void {
    const port = this.ports.get(portId);
    if (!port || this.options.switchoverHoldMs === 0) return;
    const vni = port.network.vni;
    const vlan = port.network.vlan ?? 0;
    const pending = port.queue.takePending((frame) => frame.length >= 6 && (frame[0]! & 1) === 0 && macToString(frame, 0) === mac);
    this.sendAhead(this.holds.hold(portId, { vni, vlan, mac }, since, pending));
  }

  /** The VM left without a stop being reported (or recording was never needed): forget what was remembered. */
  stopRecording(portId: string): void {
    this.holds.stopRecording(portId);
  }

  /** The VM stays on `portId` (its migration failed or was cancelled): what was held for it goes to it now. */
  releasePort(portId: string): void {
    for (const hold of this.holds.release(portId)) {
      const port = this.ports.get(portId);
      if (!port) {
        this.holds.countDropped(hold.frames.length);
        continue;
      }
      for (const frame of hold.frames) this.deliver(port, frame);
      this.holds.countRedelivered(hold.frames.length);
    }
  }

  /** Ends holds nobody resolved in time: their frames go where the table now reaches the MAC, or are dropped. */
  expireHolds(): void {
    for (const hold of this.holds.expired()) {
      const location = this.tables.get(hold.vni)?.lookup(hold.mac, hold.vlan);
      if (location === undefined || !this.sendTo(location, hold.vni, hold.vlan, unsent(hold, location))) this.holds.countDropped(hold.frames.length);
      else this.holds.countRedelivered(hold.frames.length);
    }
  }

  /** How many holds are waiting for their MAC to move. */
  holdsPending(): number {
    return this.holds.holding;
  }

  holdStats(): HoldCounters & { holding: number } {
    return { ...this.holds.counters, holding: this.holds.holding };
  }

  /**
   * Sends the frames of `hold` not yet sent to every uplink peer but `from` (where
   * the newest came from), as a switch floods unknown unicast: the peer where the VM
   * is arriving has a port for its MAC and takes them; the others drop them by split
   * horizon.
   */
  private sendAhead(hold: Hold, from?: string): void {
    const peers = this.options.uplink?.peers().filter((p) => p !== from) ?? [];
    if (peers.length === 0) return;
    for (const frame of this.holds.handOff(hold)) for (const peer of peers) this.toUplinks(peer, hold.vni, hold.vlan, frame);
  }

  private arrivingPort(members: Set<Port>, mac: string): Port | undefined {
    for (const port of members) if (port.mac === mac) return port;
    return undefined;
  }

  private relearned(vni: number, vlan: number, mac: string, location: string): void {
    const frames = this.holds.learned(holdKey(vni, vlan, mac), location);
    if (frames && !this.sendTo(location, vni, vlan, frames)) this.holds.countDropped(frames.length);
  }

  /** Delivers frames, in order, to a table location; false when it no longer exists. */
  private sendTo(location: string, vni: number, vlan: number, frames: Buffer[]): boolean {
    if (location.startsWith('uplink:')) {
      for (const frame of frames) this.toUplinks(location.slice(7), vni, vlan, frame);
      return true;
    }
    const port = this.ports.get(location.slice(6));
    if (!port) return false;
    for (const frame of frames) this.deliver(port, frame);
    return true;
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

  tap(target: { port: string } | { network: string } | 'uplink', fn: FrameTap): () => void {
    if (target !== 'uplink' && 'network' in target) {
      if (!this.networks.has(target.network)) throw new RangeError(`no network ${target.network} on this switch`);
      let set = this.networkTaps.get(target.network);
      if (!set) this.networkTaps.set(target.network, (set = new Set()));
      set.add(fn);
      return () => {
        set.delete(fn);
        if (set.size === 0) this.networkTaps.delete(target.network);
      };
    }
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
    if (this.holds.active && this.holds.isRecording(port.id) && (frame[0]! & 1) === 0) {
      this.holds.recorded(port.id, holdKey(port.network.vni, port.network.vlan ?? 0, macToString(frame, 0)), frame);
    }
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
