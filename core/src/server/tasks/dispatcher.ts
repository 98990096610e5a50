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
 * not fit is parked on the resource that is full, and comes back only when that
 * resource frees a slot; so each dispatch costs work for the tasks that might
 * start, not for the whole queue.
 */
export class Dispatcher<T extends Dispatchable> {
  private readonly ready: Record<Priority, MinHeap<T>> = { high: new MinHeap(), normal: new MinHeap() };
  private readonly parked = new Map<string, T[]>();
  private readonly parkedOn = new Map<string, string>();
  private readonly queued = new Map<string, T>();
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
    this.ready[task.priority].push(task);
  }

  /** Takes a queued task out (cancel); false when it is not queued. */
  remove(id: string): boolean {
    // Heaps and parking lists drop it lazily when they meet it.
    return this.queued.delete(id);
  }

  /** The resource key a queued task waits for, if it was found blocked. */
  waitingFor(id: string): string | undefined {
    return this.queued.has(id) ? this.parkedOn.get(id) : undefined;
  }

  /** Starts every task that fits now, in dispatch order; their resources are held until finished(). */
  takeReady(): T[] {
    const started: T[] = [];
    for (;;) {
      const normalWaiting = this.peekLive('normal') !== undefined;
      const highWaiting = this.peekLive('high') !== undefined;
      if (!normalWaiting && !highWaiting) break;
      const level: Priority = highWaiting && !(normalWaiting && this.highRun >= this.options.highPriorityBurst) ? 'high' : 'normal';
      const task = this.ready[level].pop()!;
      const blocker = this.ledger.blocker(task.keys);
      if (blocker !== undefined) {
        this.park(task, blocker);
        continue;
      }
      this.ledger.acquire(task.keys);
      this.queued.delete(task.id);
      this.parkedOn.delete(task.id);
      started.push(task);
      if (level === 'normal') this.highRun = 0;
      else if (normalWaiting) this.highRun += 1;
    }
    return started;
  }

  /** Holds the slots of a task that runs without having been dispatched here (found running after a restart). */
  hold(task: T): void {
    this.ledger.acquire(task.keys);
  }

  /** A started task ended: its slots free up and the tasks parked on them may start. */
  finished(task: T): void {
    for (const key of this.ledger.release(task.keys)) this.wake(key);
  }

  /** A key's capacity grew (a host came back, a limit was raised): its parked tasks may start. */
  capacityChanged(key: string): void {
    this.wake(key);
  }

  private park(task: T, key: string): void {
    let list = this.parked.get(key);
    if (!list) this.parked.set(key, (list = []));
    list.push(task);
    this.parkedOn.set(task.id, key);
  }

  private wake(key: string): void {
    const list = this.parked.get(key);
    if (!list) return;
    this.parked.delete(key);
    for (const task of list) {
      if (this.queued.get(task.id) === task) this.ready[task.priority].push(task);
    }
  }

  private peekLive(level: Priority): T | undefined {
    const heap = this.ready[level];
    for (;;) {
      const top = heap.peek();
      if (top === undefined || this.queued.get(top.id) === top) return top;
      heap.pop();
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
