import type { HostMetricsSample, VmMetrics } from '@motus/sdk';

/** The last N metric samples of each host (a ring per host), and averages over the newest of them. */
export class MetricsHistory {
  private readonly rings = new Map<string, HostMetricsSample[]>();

  constructor(private readonly size: number) {}

  push(host: string, sample: HostMetricsSample): void {
    const ring = this.rings.get(host) ?? [];
    if (ring.at(-1)?.at === sample.at) return;
    ring.push(sample);
    if (ring.length > this.size) ring.splice(0, ring.length - this.size);
    this.rings.set(host, ring);
  }

  /** Oldest first. */
  samples(host: string): readonly HostMetricsSample[] {
    return this.rings.get(host) ?? [];
  }

  latest(host: string): HostMetricsSample | undefined {
    return this.rings.get(host)?.at(-1);
  }

  /**
   * Averages over the newest `count` samples (DRS smooths demand the same way, so
   * one busy second does not move VMs): host CPU, and each VM's CPU, RSS and dirty rate.
   */
  average(host: string, count: number): { cpuUsed: number; vms: Map<string, VmMetrics> } | undefined {
    const recent = (this.rings.get(host) ?? []).slice(-count);
    if (recent.length === 0) return undefined;
    const vms = new Map<string, { sum: VmMetrics; n: number; dirtyN: number }>();
    for (const sample of recent) {
      for (const vm of sample.vms) {
        const acc = vms.get(vm.name) ?? { sum: { name: vm.name, cpuUsed: 0, rssMiB: 0, dirtyBytesPerSec: 0 }, n: 0, dirtyN: 0 };
        acc.sum.cpuUsed += vm.cpuUsed;
        acc.sum.rssMiB += vm.rssMiB;
        if (vm.dirtyBytesPerSec !== undefined) {
          acc.sum.dirtyBytesPerSec! += vm.dirtyBytesPerSec;
          acc.dirtyN += 1;
        }
        acc.n += 1;
        vms.set(vm.name, acc);
      }
    }
    const out = new Map<string, VmMetrics>();
    for (const [name, { sum, n, dirtyN }] of vms) {
      out.set(name, { name, cpuUsed: sum.cpuUsed / n, rssMiB: Math.round(sum.rssMiB / n), ...(dirtyN > 0 ? { dirtyBytesPerSec: sum.dirtyBytesPerSec! / dirtyN } : {}) });
    }
    return { cpuUsed: recent.reduce((s, x) => s + x.cpuUsed, 0) / recent.length, vms: out };
  }

  forget(host: string): void {
    this.rings.delete(host);
  }
}
