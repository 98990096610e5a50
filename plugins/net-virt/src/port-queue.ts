/**
 * A bounded transmit queue in front of one port's socket. The switch never waits
 * on a port: when the socket does not drain (a destination QEMU waiting for its
 * incoming migration does not read), frames wait here up to the limits, and past
 * them are dropped for this port alone and counted.
 */

/** What a queue writes to: a stream socket in the switch, a recorder in tests. */
export interface FrameSink {
  /** Writes one encoded frame; false when the sink wants no more until it drains. */
  write(data: Buffer): boolean;
  /** Whether a previous write is still waiting for 'drain'. */
  readonly writableNeedDrain: boolean;
  /** Optional batching (net.Socket has both): writes between them go out in one writev. */
  cork?(): void;
  uncork?(): void;
}

export interface PortQueueLimits {
  maxFrames: number;
  maxBytes: number;
}

export interface PortQueueCounters {
  txFrames: number;
  txBytes: number;
  dropped: number;
  queuedFrames: number;
  queuedBytes: number;
}

export class PortQueue {
  private queue: Buffer[] = [];
  private head = 0;
  private queuedBytes = 0;
  private sink: FrameSink | undefined;
  private corked = false;
  private counters = { txFrames: 0, txBytes: 0, dropped: 0 };

  constructor(
    private readonly limits: PortQueueLimits,
    private readonly encode: (frame: Buffer) => Buffer,
  ) {}

  /** Attaches (or with undefined, detaches) the socket; frames queued for a previous one are dropped. */
  setSink(sink: FrameSink | undefined): void {
    this.counters.dropped += this.queue.length - this.head;
    this.queue = [];
    this.head = 0;
    this.queuedBytes = 0;
    this.sink = sink;
  }

  /** Queues or writes a frame; false when it was dropped. */
  offer(frame: Buffer): boolean {
    const sink = this.sink;
    if (!sink) {
      this.counters.dropped++;
      return false;
    }
    if (this.head === this.queue.length && !sink.writableNeedDrain) {
      // Frames forwarded while one input chunk is processed leave in one system call.
      if (!this.corked && sink.cork && sink.uncork) {
        this.corked = true;
        sink.cork();
        queueMicrotask(() => {
          this.corked = false;
          sink.uncork!();
        });
      }
      this.counters.txFrames++;
      this.counters.txBytes += frame.length;
      sink.write(this.encode(frame));
      return true;
    }
    const pending = this.queue.length - this.head;
    if (pending >= this.limits.maxFrames || this.queuedBytes + frame.length > this.limits.maxBytes) {
      this.counters.dropped++;
      return false;
    }
    this.queue.push(frame);
    this.queuedBytes += frame.length;
    return true;
  }

  /** Call on the sink's 'drain': writes what waits until the sink pushes back again. */
  drain(): void {
    const sink = this.sink;
    if (!sink) return;
    while (this.head < this.queue.length && !sink.writableNeedDrain) {
      const frame = this.queue[this.head]!;
      this.queue[this.head++] = EMPTY;
      this.queuedBytes -= frame.length;
      this.counters.txFrames++;
      this.counters.txBytes += frame.length;
      sink.write(this.encode(frame));
    }
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
  }

  /** Removes the frames still waiting that `wanted` picks, in order; they were never written. */
  takePending(wanted: (frame: Buffer) => boolean): Buffer[] {
    const taken: Buffer[] = [];
    const kept: Buffer[] = [];
    for (let i = this.head; i < this.queue.length; i++) {
      const frame = this.queue[i]!;
      if (wanted(frame)) {
        taken.push(frame);
        this.queuedBytes -= frame.length;
      } else kept.push(frame);
    }
    this.queue = kept;
    this.head = 0;
    return taken;
  }

  stats(): PortQueueCounters {
    return { ...this.counters, queuedFrames: this.queue.length - this.head, queuedBytes: this.queuedBytes };
  }
}

const EMPTY = Buffer.alloc(0);
