/**
 * What the switch does for a VM that stops on this host to move to another one.
 *
 * While the source QEMU is stopped for the switchover it still reads its socket,
 * but only into its NIC's queue, and that queue dies with the process: every
 * frame the switch hands the port after the stop is lost, and a TCP peer waits
 * for its retransmission timer (200 ms at the least, doubling) before it tries
 * again. So, per port of the moving VM:
 *
 * 1. from the start of the outgoing migration the switch remembers, for a short
 *    while, the unicast frames it hands the port for the VM's MAC (`record`);
 * 2. when the hypervisor reports the stop (`hold`, with the stop's own timestamp),
 *    the frames handed over since that instant and those still waiting in the
 *    port's queue are taken back, and frames for the MAC that arrive later are
 *    held instead of being handed to the dead port — in order, bounded;
 * 3. every held frame is also sent ahead at once to the other hosts' switches
 *    (`handOff`); the one where the VM is arriving puts it in the waiting
 *    destination port, whose QEMU reads it the moment the VM runs. Waiting for
 *    the destination's self-announce RARP to travel to this switch first cost a
 *    round trip through two busy agents (measured 36–370 ms after the destination
 *    resumed). When the MAC shows up somewhere else (that RARP, or any frame) the
 *    hold ends: frames not yet sent there go there, and for a short time frames
 *    that peers still send here for the MAC are passed on to its new host
 *    (`redirect`) instead of being dropped by split horizon;
 * 4. if the VM stays (the migration failed or was cancelled) `release` gives the
 *    held frames back to the port; a hold nobody ends expires.
 *
 * This file keeps the state; VirtualSwitch calls it on its forwarding path.
 */

export interface HoldLimits {
  maxFrames: number;
  maxBytes: number;
  /** How long sent frames are remembered while recording. */
  recordMs: number;
  /** How long a hold waits for the MAC to show up elsewhere. */
  holdMs: number;
  /** How long a switch passes on frames for a MAC that left it. */
  redirectMs: number;
}

export interface HoldCounters {
  /** Frames taken back or held for a moving VM. */
  held: number;
  /** Held frames delivered to the MAC's new location (or back to the port). */
  redelivered: number;
  /** Frames over the hold's limits, or left when a hold expired with nowhere to go. */
  dropped: number;
  /** Frames passed on from one uplink to another for a MAC that moved away. */
  redirected: number;
  /** Held frames sent ahead to the other hosts' switches while the VM was still moving (each frame counted once). */
  handedOff: number;
  /** The last hold that ended with its MAC showing up elsewhere: ms from the VM's stop to its frames going there (the network's share of the pause). */
  lastHoldMs: number | null;
}

interface Recorded {
  frame: Buffer;
  at: number;
}

export interface Hold {
  portId: string;
  key: string;
  vni: number;
  vlan: number;
  mac: string;
  frames: Buffer[];
  bytes: number;
  expiresAt: number;
  /** When the VM stopped (the hypervisor's timestamp). */
  since: number;
  /** How many of `frames` (from the first) were sent ahead to every uplink peer. */
  handedOff: number;
}

export const holdKey = (vni: number, vlan: number, mac: string) => `${vni}/${vlan}/${mac}`;

export class SwitchoverHolds {
  private readonly recording = new Map<string, { key: string; frames: Recorded[] }>();
  private readonly holds = new Map<string, Hold>();
  private readonly redirects = new Map<string, { location: string; until: number }>();
  readonly counters: HoldCounters = { held: 0, redelivered: 0, dropped: 0, redirected: 0, handedOff: 0, lastHoldMs: null };

  constructor(
    private readonly limits: HoldLimits,
    private readonly now: () => number,
  ) {}

  /** Whether anything is going on, so the forwarding path can skip the rest cheaply. */
  get active(): boolean {
    return this.recording.size > 0 || this.holds.size > 0 || this.redirects.size > 0;
  }

  get holding(): number {
    return this.holds.size;
  }

  startRecording(portId: string, key: string): void {
    if (!this.recording.has(portId)) this.recording.set(portId, { key, frames: [] });
  }

  stopRecording(portId: string): void {
    this.recording.delete(portId);
  }

  /** The switch hands `frame` (unicast to `key`'s MAC) to a recorded port. */
  recorded(portId: string, key: string, frame: Buffer): void {
    const rec = this.recording.get(portId);
    if (!rec || rec.key !== key) return;
    const at = this.now();
    rec.frames.push({ frame, at });
    const cutoff = at - this.limits.recordMs;
    let drop = 0;
    while (drop < rec.frames.length && (rec.frames[drop]!.at < cutoff || rec.frames.length - drop > this.limits.maxFrames)) drop++;
    if (drop > 0) rec.frames.splice(0, drop);
  }

  /**
   * Starts holding for `key` at port `portId`: the recorded frames handed over at
   * or after `since`, then `pending` (the port's unwritten queue, already filtered to
   * the MAC), in the order the switch forwarded them.
   */
  hold(portId: string, segment: { vni: number; vlan: number; mac: string }, since: number, pending: Buffer[]): Hold {
    const key = holdKey(segment.vni, segment.vlan, segment.mac);
    const rec = this.recording.get(portId);
    this.recording.delete(portId);
    const existing = this.holds.get(key);
    const hold: Hold = existing ?? { portId, key, ...segment, frames: [], bytes: 0, expiresAt: 0, since, handedOff: 0 };
    hold.expiresAt = this.now() + this.limits.holdMs;
    const queued = new Set(pending);
    const sent = (rec?.frames ?? []).filter((r) => r.at >= since && !queued.has(r.frame)).map((r) => r.frame);
    for (const frame of [...sent, ...pending]) this.add(hold, frame);
    this.holds.set(key, hold);
    this.redirects.delete(key);
    return hold;
  }

  isRecording(portId: string): boolean {
    return this.recording.has(portId);
  }

  /** Holds a unicast frame for `key`'s MAC if a hold is on for it (the hold, else undefined); whatever the table says, it must not reach the stopped port. */
  offer(key: string, frame: Buffer): Hold | undefined {
    const hold = this.holds.get(key);
    if (!hold) return undefined;
    this.add(hold, frame);
    return hold;
  }

  /** The frames of `hold` not yet sent ahead, now marked as sent (the caller sends them to every uplink peer). */
  handOff(hold: Hold): Buffer[] {
    const frames = hold.frames.slice(hold.handedOff);
    hold.handedOff = hold.frames.length;
    this.counters.handedOff += frames.length;
    return frames;
  }

  /**
   * The switch learned `key`'s MAC at `location`. When that is not the held port,
   * the hold ends: the frames that location has not had yet are returned for
   * delivery there (an uplink peer already has those sent ahead), and peers'
   * frames for the MAC are redirected there for a while. A MAC learned on a local
   * port ends any redirect for it.
   */
  learned(key: string, location: string): Buffer[] | undefined {
    if (location.startsWith('local:')) this.redirects.delete(key);
    const hold = this.holds.get(key);
    if (!hold || location === `local:${hold.portId}`) return undefined;
    this.holds.delete(key);
    if (location.startsWith('uplink:')) this.redirects.set(key, { location, until: this.now() + this.limits.redirectMs });
    this.counters.redelivered += hold.frames.length;
    this.counters.lastHoldMs = Math.max(0, this.now() - hold.since);
    return unsent(hold, location);
  }

  /** Where a frame from a peer for `key`'s MAC goes instead of being dropped, if anywhere. */
  redirect(key: string): string | undefined {
    const entry = this.redirects.get(key);
    if (!entry) return undefined;
    if (this.now() >= entry.until) {
      this.redirects.delete(key);
      return undefined;
    }
    this.counters.redirected++;
    return entry.location;
  }

  /** The VM stays on the port (its migration failed): its held frames go back to it. */
  release(portId: string): Hold[] {
    this.recording.delete(portId);
    const released = [...this.holds.values()].filter((h) => h.portId === portId);
    for (const hold of released) this.holds.delete(hold.key);
    return released;
  }

  /** Holds past their time, removed; the caller delivers them where the table says or drops them. */
  expired(): Hold[] {
    const now = this.now();
    for (const [key, r] of this.redirects) if (now >= r.until) this.redirects.delete(key);
    const gone = [...this.holds.values()].filter((h) => now >= h.expiresAt);
    for (const hold of gone) this.holds.delete(hold.key);
    return gone;
  }

  countRedelivered(n: number): void {
    this.counters.redelivered += n;
  }

  countDropped(n: number): void {
    this.counters.dropped += n;
  }

  private add(hold: Hold, frame: Buffer): void {
    if (hold.frames.length >= this.limits.maxFrames || hold.bytes + frame.length > this.limits.maxBytes) {
      this.counters.dropped++;
      return;
    }
    hold.frames.push(frame);
    hold.bytes += frame.length;
    this.counters.held++;
  }
}

/** The frames of a hold that `location` has not had: an uplink peer has every frame sent ahead. */
export function unsent(hold: Hold, location: string): Buffer[] {
  return location.startsWith('uplink:') ? hold.frames.slice(hold.handedOff) : hold.frames;
}
