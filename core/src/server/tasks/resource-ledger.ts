/**
 * Counts what running migrations hold: a slot of each resource key they use
 * (`host:NAME`, `net:NAME`, `ds:NAME`, `up:NAME`). Capacities come from a
 * function, so a key's capacity may change (a host going down has capacity 0).
 */
export class ResourceLedger {
  private readonly used = new Map<string, number>();

  constructor(private readonly capacityOf: (key: string) => number) {}

  /** The first key with no free slot, or undefined when all of them have room. */
  blocker(keys: readonly string[]): string | undefined {
    for (const key of keys) {
      if ((this.used.get(key) ?? 0) >= this.capacityOf(key)) return key;
    }
    return undefined;
  }

  acquire(keys: readonly string[]): void {
    for (const key of keys) this.used.set(key, (this.used.get(key) ?? 0) + 1);
  }

  /** Frees one slot of each key; returns the keys that had been full, whose waiters may now start. */
  release(keys: readonly string[]): string[] {
    const freed: string[] = [];
    for (const key of keys) {
      const n = this.used.get(key) ?? 0;
      if (n >= this.capacityOf(key)) freed.push(key);
      if (n <= 1) this.used.delete(key);
      else this.used.set(key, n - 1);
    }
    return freed;
  }

  inUse(key: string): number {
    return this.used.get(key) ?? 0;
  }
}
