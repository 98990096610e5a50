/**
 * MAC learning table of one switch, keyed by (MAC, VLAN). Locations are the
 * strings NetworkProvider.locate() returns: 'local:<port>' or 'uplink:<host>'.
 *
 * Eviction is fair: when the table is full, the entry that goes is the least
 * recently seen one of the location holding the most entries. A port that floods
 * random source MACs therefore recycles its own entries and cannot push out the
 * MACs learned on other ports (Open vSwitch's mac-learning makes the same choice).
 */

export interface MacTableOptions {
  maxEntries: number;
  agingMs: number;
  now?: () => number;
}

export interface MacEntry {
  mac: string;
  vlan: number;
  location: string;
  lastSeen: number;
}

export type LearnOutcome = 'new' | 'refreshed' | 'moved';

export interface MacTableStats {
  entries: number;
  learned: number;
  moved: number;
  evicted: number;
  aged: number;
}

const keyOf = (mac: string, vlan: number) => `${vlan}/${mac}`;

export class MacTable {
  private readonly entries_ = new Map<string, MacEntry>();
  /** Per location, its entries in least-recently-seen-first order. */
  private readonly byLocation = new Map<string, Map<string, MacEntry>>();
  private readonly now: () => number;
  private readonly counters = { learned: 0, moved: 0, evicted: 0, aged: 0 };

  constructor(private readonly options: MacTableOptions) {
    if (!(options.maxEntries >= 1)) throw new RangeError(`maxEntries must be at least 1, got ${options.maxEntries}`);
    this.now = options.now ?? Date.now;
  }

  get size(): number {
    return this.entries_.size;
  }

  stats(): MacTableStats {
    return { entries: this.entries_.size, ...this.counters };
  }

  learn(mac: string, vlan: number, location: string): LearnOutcome {
    const key = keyOf(mac, vlan);
    const now = this.now();
    const entry = this.entries_.get(key);
    if (entry) {
      if (entry.location === location) {
        entry.lastSeen = now;
        const list = this.byLocation.get(location)!;
        list.delete(key);
        list.set(key, entry);
        return 'refreshed';
      }
      // Relocation takes effect at once: the MAC was just seen somewhere else.
      this.unlink(key, entry);
      entry.location = location;
      entry.lastSeen = now;
      this.link(key, entry);
      this.counters.moved++;
      return 'moved';
    }
    if (this.entries_.size >= this.options.maxEntries) {
      this.sweep();
      if (this.entries_.size >= this.options.maxEntries) this.evictFromLargest();
    }
    const fresh: MacEntry = { mac, vlan, location, lastSeen: now };
    this.entries_.set(key, fresh);
    this.link(key, fresh);
    this.counters.learned++;
    return 'new';
  }

  lookup(mac: string, vlan: number): string | undefined {
    const key = keyOf(mac, vlan);
    const entry = this.entries_.get(key);
    if (!entry) return undefined;
    if (this.now() - entry.lastSeen >= this.options.agingMs) {
      this.remove(key, entry);
      this.counters.aged++;
      return undefined;
    }
    return entry.location;
  }

  /** Forgets every MAC learned at a location (a port went away). */
  flushLocation(location: string): number {
    const list = this.byLocation.get(location);
    if (!list) return 0;
    const count = list.size;
    for (const key of list.keys()) this.entries_.delete(key);
    this.byLocation.delete(location);
    return count;
  }

  /** Removes aged entries; returns how many. */
  sweep(): number {
    const cutoff = this.now() - this.options.agingMs;
    let removed = 0;
    for (const list of [...this.byLocation.values()]) {
      for (const [key, entry] of list) {
        // Each list is oldest first, so the first fresh entry ends the scan.
        if (entry.lastSeen > cutoff) break;
        this.remove(key, entry);
        removed++;
      }
    }
    this.counters.aged += removed;
    return removed;
  }

  entries(): MacEntry[] {
    return [...this.entries_.values()].map((e) => ({ ...e }));
  }

  private evictFromLargest(): void {
    let largest: Map<string, MacEntry> | undefined;
    for (const list of this.byLocation.values()) if (!largest || list.size > largest.size) largest = list;
    const oldest = largest?.entries().next().value;
    if (!oldest) return;
    this.remove(oldest[0], oldest[1]);
    this.counters.evicted++;
  }

  private link(key: string, entry: MacEntry): void {
    let list = this.byLocation.get(entry.location);
    if (!list) this.byLocation.set(entry.location, (list = new Map()));
    list.set(key, entry);
  }

  private unlink(key: string, entry: MacEntry): void {
    const list = this.byLocation.get(entry.location);
    if (!list) return;
    list.delete(key);
    if (list.size === 0) this.byLocation.delete(entry.location);
  }

  private remove(key: string, entry: MacEntry): void {
    this.entries_.delete(key);
    this.unlink(key, entry);
  }
}
