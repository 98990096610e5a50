import type { Refusal } from '@motus/sdk';
import type { ClusterModel, PlacementHost, PlacementVm, PoolModel, VmHostMode } from './cluster-model.js';


interface HostSlot {
  host: PlacementHost;
  vms: Set<string>;
  cpu: number;
  mem: number;
  committedMiB: number;
  load: number;
}

interface ClusterStats {
  n: number;
  sum: number;
  sumSq: number;
}

/**
 * An indexed, mutable copy of a cluster model: per-host sums, each cluster's load
 * statistics and the rules by VM, so that "what would the imbalance be if this VM
 * went there" is O(1) and a move updates only the two hosts involved.
 *
 * A host's normalized load is the mean of its CPU entitlement over its cores and its
 * memory entitlement over its memory (DRS's normalized entitlement); a cluster's
 * imbalance is the population standard deviation of the loads of its hosts in
 * service (connected).
 */
export class ClusterState {
  private readonly slots = new Map<string, HostSlot>();
  private readonly vms = new Map<string, PlacementVm>();
  private readonly cpuEnt = new Map<string, number>();
  private readonly memEnt = new Map<string, number>();
  private readonly stats = new Map<string, ClusterStats>();
  private readonly pools = new Map<string, PoolModel>();
  private readonly antiOf = new Map<string, Array<{ name: string; vms: string[] }>>();
  private readonly affinityOf = new Map<string, Array<{ name: string; vms: string[] }>>();
  private readonly vmHostOf = new Map<string, Array<{ name: string; hosts: Set<string>; mode: VmHostMode }>>();

  constructor(readonly model: ClusterModel) {
    for (const pool of model.pools) this.pools.set(pool.name, pool);
    for (const host of model.hosts) this.slots.set(host.name, { host, vms: new Set(), cpu: 0, mem: 0, committedMiB: 0, load: 0 });
    for (const vm of model.vms) this.vms.set(vm.name, { ...vm });
    this.computeEntitlements();
    for (const vm of this.vms.values()) {
      const slot = this.slots.get(vm.host);
      if (!slot) continue;
      slot.vms.add(vm.name);
      slot.cpu += this.cpuEnt.get(vm.name)!;
      slot.mem += this.memEnt.get(vm.name)!;
      slot.committedMiB += vm.memoryMiB;
    }
    for (const slot of this.slots.values()) {
      slot.load = this.loadOf(slot.host, slot.cpu, slot.mem);
      this.account(slot, 1);
    }
    const index = <T extends { vms: string[] }>(list: T[], into: Map<string, T[]>) => {
      for (const rule of list) for (const vm of rule.vms) listIn(into, vm).push(rule);
    };
    index(model.rules.antiAffinity, this.antiOf);
    index(model.rules.affinity, this.affinityOf);
    for (const rule of model.rules.vmHost) {
      const hosts = new Set(rule.hosts);
      for (const vm of rule.vms) listIn(this.vmHostOf, vm).push({ name: rule.name, hosts, mode: rule.mode });
    }
  }

  host(name: string): PlacementHost | undefined {
    return this.slots.get(name)?.host;
  }

  hosts(): PlacementHost[] {
    return [...this.slots.values()].map((s) => s.host);
  }

  vm(name: string): PlacementVm | undefined {
    return this.vms.get(name);
  }

  allVms(): PlacementVm[] {
    return [...this.vms.values()];
  }

  vmsOn(host: string): PlacementVm[] {
    return [...(this.slots.get(host)?.vms ?? [])].map((name) => this.vms.get(name)!);
  }

  pool(name: string): PoolModel | undefined {
    return this.pools.get(name);
  }

  clusters(): string[] {
    return [...new Set(this.hosts().map((h) => h.cluster))].sort();
  }

  load(host: string): number {
    return this.slots.get(host)?.load ?? 0;
  }

  /** CPU entitlement over cores, memory entitlement over memory. */
  loadParts(host: string): { cpu: number; memory: number } {
    const slot = this.slots.get(host)!;
    return { cpu: (slot.host.baseCpu + slot.cpu) / Math.max(slot.host.cpus, 1), memory: slot.mem / Math.max(slot.host.memoryTotalMiB, 1) };
  }

  freeMiB(host: string): number {
    const slot = this.slots.get(host)!;
    return slot.host.memoryTotalMiB - slot.committedMiB - slot.host.reservedMiB;
  }

  vmLoadOn(vm: string, host: string): number {
    const h = this.slots.get(host)!.host;
    return 0.5 * (this.cpuEnt.get(vm) ?? 0) / Math.max(h.cpus, 1) + 0.5 * (this.memEnt.get(vm) ?? 0) / Math.max(h.memoryTotalMiB, 1);
  }

  imbalance(cluster: string): number {
    const s = this.stats.get(cluster);
    if (!s || s.n === 0) return 0;
    const mean = s.sum / s.n;
    return Math.sqrt(Math.max(0, s.sumSq / s.n - mean * mean));
  }

  meanLoad(cluster: string): number {
    const s = this.stats.get(cluster);
    return s && s.n > 0 ? s.sum / s.n : 0;
  }

  /** The cluster's imbalance if `vm` moved to `to`, computed from the sums in O(1). */
  imbalanceIfMoved(vm: string, to: string): number {
    const v = this.vms.get(vm)!;
    const from = this.slots.get(v.host);
    const dest = this.slots.get(to)!;
    const cluster = dest.host.cluster;
    const s = this.stats.get(cluster) ?? { n: 0, sum: 0, sumSq: 0 };
    let { n, sum, sumSq } = s;
    const swap = (slot: HostSlot, next: number) => {
      if (slot.host.cluster !== cluster || slot.host.state !== 'connected') return;
      sum += next - slot.load;
      sumSq += next * next - slot.load * slot.load;
    };
    if (from) swap(from, from.load - this.vmLoadOn(vm, from.host.name));
    swap(dest, dest.load + this.vmLoadOn(vm, to));
    if (n === 0) return 0;
    const mean = sum / n;
    return Math.sqrt(Math.max(0, sumSq / n - mean * mean));
  }

  /**
   * The cluster's imbalance if every VM of `vms` moved to `to` (an affinity group
   * moving as one); O(size of the group).
   */
  imbalanceIfMovedAll(vms: readonly string[], to: string): number {
    const dest = this.slots.get(to)!;
    const cluster = dest.host.cluster;
    const s = this.stats.get(cluster) ?? { n: 0, sum: 0, sumSq: 0 };
    if (s.n === 0) return 0;
    const delta = new Map<HostSlot, number>();
    for (const vm of vms) {
      const from = this.slots.get(this.vms.get(vm)!.host);
      if (from === dest) continue;
      if (from) delta.set(from, (delta.get(from) ?? 0) - this.vmLoadOn(vm, from.host.name));
      delta.set(dest, (delta.get(dest) ?? 0) + this.vmLoadOn(vm, to));
    }
    let { sum, sumSq } = s;
    for (const [slot, d] of delta) {
      if (slot.host.cluster !== cluster || slot.host.state !== 'connected') continue;
      const next = slot.load + d;
      sum += next - slot.load;
      sumSq += next * next - slot.load * slot.load;
    }
    const mean = sum / s.n;
    return Math.sqrt(Math.max(0, sumSq / s.n - mean * mean));
  }

  /**
   * The VMs bound to `vm` by affinity rules, itself included: the rules' closure,
   * since a VM in two rules ties both sets to one host. Sorted; VMs the model lacks
   * (not running) are left out.
   */
  affinityGroup(vm: string): string[] {
    const group = new Set([vm]);
    const todo = [vm];
    while (todo.length > 0) {
      for (const rule of this.affinityOf.get(todo.pop()!) ?? []) {
        for (const peer of rule.vms) {
          if (group.has(peer) || !this.vms.has(peer)) continue;
          group.add(peer);
          todo.push(peer);
        }
      }
    }
    return [...group].sort();
  }

  /**
   * Every hard constraint `to` breaks for `vm`. `leaving`: hosts being emptied,
   * whose VMs are about to go too (an affinity peer there follows the VM, it does
   * not hold it back); an affinity group moved as one passes its own host.
   */
  refusals(vm: string, to: string, leaving: ReadonlySet<string> = NO_HOSTS): Refusal[] {
    const v = this.vms.get(vm)!;
    const dest = this.slots.get(to)!;
    const out: Refusal[] = [];
    if (v.host === to) out.push({ constraint: 'same-host', reason: `VM ${vm} already runs on ${to}` });
    if (dest.host.state !== 'connected') {
      const why = { disconnected: 'is down (its agent does not answer)', maintenance: 'is in maintenance', degraded: 'is degraded' }[dest.host.state];
      out.push({ constraint: 'state', reason: `host ${to} ${why}` });
    }
    const source = this.slots.get(v.host);
    if (source && source.host.cluster !== dest.host.cluster) {
      out.push({ constraint: 'cluster', reason: `host ${to} is in cluster ${dest.host.cluster}; VM ${vm} runs in cluster ${source.host.cluster}` });
    }
    const free = this.freeMiB(to);
    if (v.host !== to && free < v.memoryMiB) out.push({ constraint: 'memory', reason: `host ${to} has ${free} MiB free; VM ${vm} needs ${v.memoryMiB} MiB` });
    for (const rule of this.antiOf.get(vm) ?? []) {
      const there = rule.vms.filter((other) => other !== vm && this.slots.get(to)!.vms.has(other));
      if (there.length > 0) out.push({ constraint: 'anti-affinity', rule: rule.name, reason: `rule ${rule.name} keeps ${vm} apart from ${there.join(', ')}, which run on ${to}` });
    }
    for (const rule of this.affinityOf.get(vm) ?? []) {
      const peers = rule.vms.filter((other) => other !== vm && this.vms.has(other));
      // A peer beside the VM stays behind unless its host is being emptied: moving one member alone splits the group.
      const staying = peers.filter((p) => !leaving.has(this.vms.get(p)!.host));
      const elsewhere = staying.filter((p) => this.vms.get(p)!.host !== to);
      if (elsewhere.length > 0) {
        const where = [...new Set(staying.map((p) => this.vms.get(p)!.host))].join(', ');
        out.push({ constraint: 'affinity', rule: rule.name, reason: `rule ${rule.name} keeps ${vm} with ${elsewhere.join(', ')}, on ${where}` });
      }
    }
    for (const rule of this.vmHostOf.get(vm) ?? []) {
      if (rule.mode === 'must' && !rule.hosts.has(to)) out.push({ constraint: 'vm-host', rule: rule.name, reason: `rule ${rule.name}: ${vm} must run on ${[...rule.hosts].join(', ')}` });
      if (rule.mode === 'must-not' && rule.hosts.has(to)) out.push({ constraint: 'vm-host', rule: rule.name, reason: `rule ${rule.name}: ${vm} must not run on ${to}` });
    }
    return out;
  }

  /**
   * Every hard constraint `to` breaks for an affinity group moved there as one from
   * the host they share: each member's refusals (its peers follow it, so they do not
   * hold it back) and the memory of the whole group.
   */
  groupRefusals(group: readonly string[], to: string, alsoLeaving: ReadonlySet<string> = NO_HOSTS): Refusal[] {
    const from = this.vms.get(group[0]!)!.host;
    const leaving = new Set([from, ...alsoLeaving]);
    const out = group.flatMap((vm) => this.refusals(vm, to, leaving).filter((r) => r.constraint !== 'memory'));
    const needed = group.reduce((sum, vm) => sum + this.vms.get(vm)!.memoryMiB, 0);
    const free = this.freeMiB(to);
    if (from !== to && free < needed) out.push({ constraint: 'memory', reason: `host ${to} has ${free} MiB free; ${group.join(', ')} need ${needed} MiB together` });
    return out;
  }

  /** Soft vm-host rules the host satisfies (+1) or breaks (-1), with their names. */
  preferences(vm: string, to: string): Array<{ rule: string; met: boolean; text: string }> {
    const out: Array<{ rule: string; met: boolean; text: string }> = [];
    for (const rule of this.vmHostOf.get(vm) ?? []) {
      if (rule.mode === 'should') out.push({ rule: rule.name, met: rule.hosts.has(to), text: `rule ${rule.name}: ${vm} should run on ${[...rule.hosts].join(', ')}` });
      if (rule.mode === 'should-not') out.push({ rule: rule.name, met: !rule.hosts.has(to), text: `rule ${rule.name}: ${vm} should not run on ${[...rule.hosts].join(', ')}` });
    }
    return out;
  }

  /** Hard rules the VM breaks where it is now (a must rule added, an anti-affinity peer started beside it). */
  violationsInPlace(vm: string): Refusal[] {
    const v = this.vms.get(vm)!;
    return this.refusals(vm, v.host).filter((r) => r.constraint === 'anti-affinity' || r.constraint === 'vm-host');
  }

  antiAffinityOf(vm: string): ReadonlyArray<{ name: string; vms: string[] }> {
    return this.antiOf.get(vm) ?? [];
  }

  affinityOfVm(vm: string): ReadonlyArray<{ name: string; vms: string[] }> {
    return this.affinityOf.get(vm) ?? [];
  }

  /** Moves the VM in the model (a planned or finished migration), updating both hosts and the cluster sums. */
  move(vm: string, to: string): void {
    const v = this.vms.get(vm)!;
    const from = this.slots.get(v.host);
    const dest = this.slots.get(to)!;
    if (from) {
      this.account(from, -1);
      from.vms.delete(vm);
      from.cpu -= this.cpuEnt.get(vm)!;
      from.mem -= this.memEnt.get(vm)!;
      from.committedMiB -= v.memoryMiB;
      from.load = this.loadOf(from.host, from.cpu, from.mem);
      this.account(from, 1);
    }
    this.account(dest, -1);
    dest.vms.add(vm);
    dest.cpu += this.cpuEnt.get(vm)!;
    dest.mem += this.memEnt.get(vm)!;
    dest.committedMiB += v.memoryMiB;
    dest.load = this.loadOf(dest.host, dest.cpu, dest.mem);
    this.account(dest, 1);
    v.host = to;
  }

  setHostState(name: string, state: PlacementHost['state']): void {
    const slot = this.slots.get(name)!;
    this.account(slot, -1);
    slot.host = { ...slot.host, state };
    this.account(slot, 1);
  }

  private loadOf(host: PlacementHost, cpu: number, mem: number): number {
    return 0.5 * (host.baseCpu + cpu) / Math.max(host.cpus, 1) + 0.5 * mem / Math.max(host.memoryTotalMiB, 1);
  }

  private account(slot: HostSlot, sign: 1 | -1): void {
    if (slot.host.state !== 'connected') return;
    const s = this.stats.get(slot.host.cluster) ?? { n: 0, sum: 0, sumSq: 0 };
    s.n += sign;
    s.sum += sign * slot.load;
    s.sumSq += sign * slot.load * slot.load;
    this.stats.set(slot.host.cluster, s);
  }

  /**
   * What each VM is entitled to: its measured use, scaled down when its pool's
   * limit is below the pool's total use; its memory raised to its share of the
   * pool's reservation, which is set aside whether used or not.
   */
  private computeEntitlements(): void {
    const byPool = new Map<string, PlacementVm[]>();
    for (const vm of this.vms.values()) listIn(byPool, vm.pool).push(vm);
    for (const [poolName, members] of byPool) {
      const pool = this.pools.get(poolName);
      const cpuTotal = members.reduce((s, v) => s + v.cpuUsed, 0);
      const memTotal = members.reduce((s, v) => s + v.memoryUsedMiB, 0);
      const cpuScale = pool?.limit.cpus !== undefined && cpuTotal > pool.limit.cpus ? pool.limit.cpus / cpuTotal : 1;
      const memScale = pool?.limit.memoryMiB !== undefined && memTotal > pool.limit.memoryMiB ? pool.limit.memoryMiB / memTotal : 1;
      const memFloor = (pool?.reservation.memoryMiB ?? 0) / members.length;
      const cpuFloor = (pool?.reservation.cpus ?? 0) / members.length;
      for (const vm of members) {
        this.cpuEnt.set(vm.name, vm.cpuUsed * cpuScale);
        this.memEnt.set(vm.name, Math.max(vm.memoryUsedMiB * memScale, Math.min(memFloor, vm.memoryMiB)));
      }
    }
    this.divideContendedCpu();
    for (const [poolName, members] of byPool) {
      const cpuFloor = (this.pools.get(poolName)?.reservation.cpus ?? 0) / members.length;
      for (const vm of members) this.cpuEnt.set(vm.name, Math.max(this.cpuEnt.get(vm.name)!, Math.min(cpuFloor, vm.vcpus)));
    }
  }

  /**
   * Shares: when a cluster's VMs want more CPU than its hosts in service have
   * (cores less the hosts' own use), the cores are divided among the pools in
   * proportion to their shares, a pool wanting less than its part keeping what it
   * wants and leaving the rest to the others (max-min fairness, as DRS divides a
   * contended parent among its children).
   */
  private divideContendedCpu(): void {
    const capacity = new Map<string, number>();
    for (const slot of this.slots.values()) {
      if (slot.host.state !== 'connected') continue;
      capacity.set(slot.host.cluster, (capacity.get(slot.host.cluster) ?? 0) + Math.max(0, slot.host.cpus - slot.host.baseCpu));
    }
    const demand = new Map<string, Map<string, number>>();
    for (const vm of this.vms.values()) {
      const cluster = this.slots.get(vm.host)?.host.cluster;
      if (cluster === undefined) continue;
      const pools = demand.get(cluster) ?? new Map<string, number>();
      pools.set(vm.pool, (pools.get(vm.pool) ?? 0) + this.cpuEnt.get(vm.name)!);
      demand.set(cluster, pools);
    }
    for (const [cluster, pools] of demand) {
      let left = capacity.get(cluster) ?? 0;
      const total = [...pools.values()].reduce((a, b) => a + b, 0);
      if (total <= left || pools.size < 2) continue;
      const given = new Map<string, number>();
      const open = new Map(pools);
      for (;;) {
        const shares = [...open.keys()].reduce((sum, p) => sum + (this.pools.get(p)?.shares ?? 1000), 0);
        const satisfied = [...open].filter(([p, want]) => want <= (left * (this.pools.get(p)?.shares ?? 1000)) / shares);
        if (satisfied.length === 0) {
          for (const p of open.keys()) given.set(p, (left * (this.pools.get(p)?.shares ?? 1000)) / shares);
          break;
        }
        for (const [p, want] of satisfied) {
          given.set(p, want);
          left -= want;
          open.delete(p);
        }
        if (open.size === 0) break;
      }
      for (const vm of this.vms.values()) {
        if (this.slots.get(vm.host)?.host.cluster !== cluster) continue;
        const want = pools.get(vm.pool)!;
        if (want > 0) this.cpuEnt.set(vm.name, (this.cpuEnt.get(vm.name)! * given.get(vm.pool)!) / want);
      }
    }
  }
}

const NO_HOSTS: ReadonlySet<string> = new Set();

function listIn<K, V>(map: Map<K, V[]>, key: K): V[] {
  let list = map.get(key);
  if (!list) map.set(key, (list = []));
  return list;
}
