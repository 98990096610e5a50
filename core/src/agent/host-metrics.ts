import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { HostMetricsSample, Logger, VmGuestStats, VmMetrics } from '@motus/sdk';

/** A VM process the sampler measures. */
export interface SampledVm {
  name: string;
  pid: number;
  /** Only for VMs running here (not an incoming copy, not one being sent away). */
  guestStats?: () => Promise<VmGuestStats>;
}

export interface HostMetricsOptions {
  /** /proc, or another root for tests. */
  procRoot?: string;
  intervalMs: number;
  cpus: number;
  vms(): SampledVm[];
  /**
   * Test hook: a JSON file that, when present, replaces measured figures —
   * `{ "cpuUsed": 3.5, "vms": { "vm1": { "cpuUsed": 1.9, "dirtyBytesPerSec": 0 } } }` —
   * so a test can make a host look overloaded without burning the machine's CPU.
   */
  overridePath?: string;
  logger: Logger;
}

interface CpuTimes {
  busy: number;
  total: number;
}

/** USER_HZ: the unit of /proc/<pid>/stat times, 100 on every Linux architecture Motus runs on. */
const TICKS_PER_SECOND = 100;

/**
 * Samples the host's and each VM's CPU and memory use every few seconds from /proc
 * (host: /proc/stat, /proc/meminfo; VM: its QEMU process's /proc/<pid>/stat and
 * status) and asks QEMU for the guest's dirty rate and balloon; the latest sample
 * travels with the agent's facts.
 */
export class HostMetricsSampler {
  private readonly procRoot: string;
  private timer: NodeJS.Timeout | undefined;
  private lastHost: CpuTimes | undefined;
  private lastAt = 0;
  private readonly lastVm = new Map<number, number>();
  private latest: HostMetricsSample | undefined;
  private sampling = false;

  constructor(private readonly options: HostMetricsOptions) {
    this.procRoot = options.procRoot ?? '/proc';
  }

  start(): void {
    void this.sample();
    this.timer = setInterval(() => void this.sample(), this.options.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  current(): HostMetricsSample | undefined {
    return this.latest;
  }

  /** Takes one sample now (the timer calls it; tests may too). */
  async sample(): Promise<HostMetricsSample | undefined> {
    if (this.sampling) return this.latest;
    this.sampling = true;
    try {
      const now = Date.now();
      const seconds = this.lastAt > 0 ? (now - this.lastAt) / 1000 : 0;
      const host = this.hostCpu();
      const cpuUsed = this.lastHost && host && host.total > this.lastHost.total ? ((host.busy - this.lastHost.busy) / (host.total - this.lastHost.total)) * this.options.cpus : 0;
      if (host) this.lastHost = host;
      const memory = this.memory();
      const vms: VmMetrics[] = [];
      const seen = new Set<number>();
      for (const vm of this.options.vms()) {
        seen.add(vm.pid);
        const ticks = this.processTicks(vm.pid);
        const before = this.lastVm.get(vm.pid);
        if (ticks !== undefined) this.lastVm.set(vm.pid, ticks);
        const metrics: VmMetrics = {
          name: vm.name,
          cpuUsed: ticks !== undefined && before !== undefined && seconds > 0 ? Math.max(0, (ticks - before) / TICKS_PER_SECOND / seconds) : 0,
          rssMiB: this.rssMiB(vm.pid) ?? 0,
        };
        const guest = await vm.guestStats?.().catch(() => undefined);
        if (guest?.dirtyBytesPerSec !== undefined) metrics.dirtyBytesPerSec = guest.dirtyBytesPerSec;
        if (guest?.balloonBytes !== undefined) metrics.balloonBytes = guest.balloonBytes;
        vms.push(metrics);
      }
      for (const pid of this.lastVm.keys()) if (!seen.has(pid)) this.lastVm.delete(pid);
      this.lastAt = now;
      const sample: HostMetricsSample = { at: new Date(now).toISOString(), cpus: this.options.cpus, cpuUsed, memoryTotalMiB: memory.total, memoryUsedMiB: memory.used, vms };
      this.latest = this.applyOverride(sample);
      return this.latest;
    } finally {
      this.sampling = false;
    }
  }

  private hostCpu(): CpuTimes | undefined {
    const line = this.read('stat')?.split('\n').find((l) => l.startsWith('cpu '));
    if (!line) return undefined;
    const fields = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest times are inside user).
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = fields;
    const idleAll = idle + iowait;
    const total = user + nice + system + idleAll + irq + softirq + steal;
    return { busy: total - idleAll, total };
  }

  private memory(): { total: number; used: number } {
    const text = this.read('meminfo') ?? '';
    const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? 0);
    const total = kib('MemTotal');
    const available = kib('MemAvailable');
    return { total: Math.round(total / 1024), used: Math.round((total - available) / 1024) };
  }

  /** utime + stime of a process; the command name may hold spaces, so fields are counted after its ')'. */
  private processTicks(pid: number): number | undefined {
    const text = this.read(join(String(pid), 'stat'));
    if (!text) return undefined;
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return Number.isFinite(utime) && Number.isFinite(stime) ? utime + stime : undefined;
  }

  private rssMiB(pid: number): number | undefined {
    const match = /^VmRSS:\s+(\d+)/m.exec(this.read(join(String(pid), 'status')) ?? '');
    return match ? Math.round(Number(match[1]) / 1024) : undefined;
  }

  private read(path: string): string | undefined {
    try {
      return readFileSync(join(this.procRoot, path), 'utf8');
    } catch {
      return undefined;
    }
  }

  private applyOverride(sample: HostMetricsSample): HostMetricsSample {
    if (!this.options.overridePath) return sample;
    let text: string;
    try {
      text = readFileSync(this.options.overridePath, 'utf8');
    } catch {
      return sample;
    }
    try {
      const override = JSON.parse(text) as { cpuUsed?: number; vms?: Record<string, { cpuUsed?: number; rssMiB?: number; dirtyBytesPerSec?: number }> };
      const vms = sample.vms.map((vm) => ({ ...vm, ...(override.vms?.[vm.name] ?? {}) }));
      const vmCpu = (list: VmMetrics[]) => list.reduce((s, v) => s + v.cpuUsed, 0);
      // A VM's extra load shows on the host too, as it would if the guest really burned CPU.
      const cpuUsed = override.cpuUsed ?? sample.cpuUsed + vmCpu(vms) - vmCpu(sample.vms);
      return { ...sample, cpuUsed, vms, overridden: true };
    } catch (err) {
      this.options.logger.warn('metrics override file is not valid JSON; ignored', { path: this.options.overridePath, error: (err as Error).message });
      return sample;
    }
  }
}
