import type { Priority } from '@motus/sdk';
import type { ResourceLedger } from './resource-ledger.js';

/** What the dispatcher needs to know of a task. */
export interface Dispatchable {
  readonly id: string;
  readonly priority: Priority;
  /** Arrival order; lower goes first within a priority. */
  readonly seq: number;
  /** The resource keys the task holds one slot of while it runs. */
  readonly keys: readonly string[];
}

export interface DispatcherOptions {
  /**
   * The no-starvation rule: after this many high-priority tasks in a row were
   * started while a normal task that could start was waiting, the oldest such
   * normal task goes next.
   */
  highPriorityBurst: number;
}

/**
 * The queue and its dispatch rule. High tasks go before normal ones, first come
 * first served within a level, except for the no-starvation rule. A task that does
 * not fit is parked on the resource that is full. When that resource frees a slot,
 * its best parked task (same order, same rule) comes back, one at a time until the
 * slot is taken: each dispatch costs work for the few tasks that might start, not
 * for the whole queue.
 */
export class Dispatcher<T extends Dispatchable> {
  private readonly ready: Record<Priority, MinHeap<T>> = { high: new MinHeap(), normal: new MinHeap() };
  private readonly parked = new Map<string, Record<Priority, MinHeap<T>>>();
  private readonly parkedOn = new Map<string, string>();
  /** The key whose freed slot brought a task back to the ready heaps. */
  private readonly wokenBy = new Map<string, string>();
  private readonly queued = new Map<string, T>();
  private normalQueued = 0;
  private highRun = 0;

  constructor(
    private readonly ledger: ResourceLedger,
    private readonly options: DispatcherOptions,
  ) {}

  get size(): number {
    return this.queued.size;
  }

  enqueue(task: T): void {
    this.queued.set(task.id, task);
    if (task.priority === 'normal') this.normalQueued += 1;
    this.ready[task.priority].push(task);
  }

  /** Takes a queued task out (cancel); false when it is not queued. */
  remove(id: string): boolean {
    const task = this.queued.get(id);
    if (!task) return false;
    // Heaps drop it lazily when they meet it.
    this.forget(task);
    return true;
  }

  /** The resource key a queued task waits for, if it was found blocked. */
  waitingFor(id: string): string | undefined {
    return this.queued.has(id) ? this.parkedOn.get(id) : undefined;
  }

  /** Starts every task that fits now, in dispatch order; their resources are held until finished(). */
  takeReady(): T[] {
    const started: T[] = [];
    for (;;) {
      const normalReady = this.peekLive(this.ready.normal) !== undefined;
      const highReady = this.peekLive(this.ready.high) !== undefined;
      if (!normalReady && !highReady) break;
      const level: Priority = highReady && !(normalReady && this.highRun >= this.options.highPriorityBurst) ? 'high' : 'normal';
      const task = this.ready[level].pop()!;
      const wokenBy = this.wokenBy.get(task.id);
      this.wokenBy.delete(task.id);
      const blocker = this.ledger.blocker(task.keys);
      if (blocker !== undefined) {
        this.park(task, blocker);
        // The slot it was woken for is still free: offer it to the next task parked there.
        if (wokenBy !== undefined && wokenBy !== blocker) this.wakeOne(wokenBy);
        continue;
      }
      this.ledger.acquire(task.keys);
      this.forget(task);
      started.push(task);
      if (level === 'normal') this.highRun = 0;
      else if (this.normalQueued > 0) this.highRun += 1;
      if (wokenBy !== undefined && this.ledger.blocker([wokenBy]) === undefined) this.wakeOne(wokenBy);
    }
    return started;
  }

  /** Holds the slots of a task that runs without having been dispatched here (found running after a restart). */
  hold(task: T): void {
    this.ledger.acquire(task.keys);
  }

  /** A started task ended: its slots free up and the tasks parked on them may start. */
  finished(task: T): void {
    for (const key of this.ledger.release(task.keys)) this.wakeOne(key);
  }

  /** A key's capacity grew (a host came back, a limit was raised): every task parked on it gets another look. */
  capacityChanged(key: string): void {
    const heaps = this.parked.get(key);
    if (!heaps) return;
    this.parked.delete(key);
    for (const level of ['high', 'normal'] as const) {
      for (let task = heaps[level].pop(); task !== undefined; task = heaps[level].pop()) {
        if (this.queued.get(task.id) === task) this.ready[task.priority].push(task);
      }
    }
  }

  private park(task: T, key: string): void {
    let heaps = this.parked.get(key);
    if (!heaps) this.parked.set(key, (heaps = { high: new MinHeap(), normal: new MinHeap() }));
    heaps[task.priority].push(task);
    this.parkedOn.set(task.id, key);
  }

  /** Brings back the task parked on `key` that the dispatch rule would pick first. */
  private wakeOne(key: string): void {
    const heaps = this.parked.get(key);
    if (!heaps) return;
    const high = this.peekLive(heaps.high);
    const normal = this.peekLive(heaps.normal);
    const level: Priority | undefined = high && !(normal && this.highRun >= this.options.highPriorityBurst) ? 'high' : normal ? 'normal' : undefined;
    if (level === undefined) {
      this.parked.delete(key);
      return;
    }
    const task = heaps[level].pop()!;
    this.wokenBy.set(task.id, key);
    this.ready[task.priority].push(task);
  }

  private forget(task: T): void {
    this.queued.delete(task.id);
    this.parkedOn.delete(task.id);
    if (task.priority === 'normal') this.normalQueued -= 1;
  }

  /** The heap's first task still queued; a task dropped on the way that had been woken passes its turn on. */
  private peekLive(heap: MinHeap<T>): T | undefined {
    for (;;) {
      const top = heap.peek();
      if (top === undefined || this.queued.get(top.id) === top) return top;
      heap.pop();
      const wokenBy = this.wokenBy.get(top.id);
      if (wokenBy !== undefined) {
        this.wokenBy.delete(top.id);
        this.wakeOne(wokenBy);
      }
    }
  }
}
/** Binary min-heap by seq. */
class MinHeap<T extends { seq: number }> {
  private readonly items: T[] = [];

  push(item: T): void {
    const a = this.items;
    a.push(item);
    let i = a.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (a[parent]!.seq <= item.seq) break;
      a[i] = a[parent]!;
      i = parent;
    }
    a[i] = item;
  }

  peek(): T | undefined {
    return this.items[0];
  }

  pop(): T | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length === 0 || last === undefined) return top;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= a.length) break;
      const r = l + 1;
      const child = r < a.length && a[r]!.seq < a[l]!.seq ? r : l;
      if (a[child]!.seq >= last.seq) break;
      a[i] = a[child]!;
      i = child;
    }
    a[i] = last;
    return top;
  }
}
