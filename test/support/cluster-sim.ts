/**
 * A deterministic simulator of clusters for the placement engine: hosts of mixed
 * sizes, VMs with measured CPU, memory and dirty rates, anti-affinity, affinity
 * and vm-host rules, laid out so that the start respects every hard rule. The same
 * seed gives the same site. An independent checker says which hard rules a layout breaks, so
 * the tests do not judge the engine by its own code.
 */
import type { ClusterModel, PlacementHost, PlacementVm, RulesModel } from '@motus/core';
import { seededRandom } from './system.js';

export interface SimOptions {
  seed: number;
  hosts: number;
  vms: number;
  clusters?: number;
  antiAffinityGroups?: number;
  affinityGroups?: number;
  vmHostRules?: number;
  /** Hosts whose VMs get skewed load, so there is something to balance. */
  hotHosts?: number;
}

export function simulateCluster(options: SimOptions): ClusterModel {
  const random = seededRandom(options.seed);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
  const clusters = Math.max(1, Math.min(options.clusters ?? 1, options.hosts));
  const hosts: PlacementHost[] = Array.from({ length: options.hosts }, (_, i) => ({
    name: `h${String(i).padStart(4, '0')}`,
    cluster: `c${i % clusters}`,
    state: 'connected',
    cpus: pick([8, 16, 32, 64]),
    memoryTotalMiB: pick([32, 64, 128, 256]) * 1024,
    reservedMiB: 0,
    baseCpu: random() * 0.5,
    linkBytesPerSec: pick([1, 10, 25]) * 125_000_000,
    linkSource: 'simulated',
    activeMigrations: Math.floor(random() * 3),
    maxMigrations: 8,
  }));
  const hot = new Set(hosts.slice(0, options.hotHosts ?? Math.max(1, Math.floor(options.hosts / 10))).map((h) => h.name));
  const committed = new Map(hosts.map((h) => [h.name, 0]));
  const vms: PlacementVm[] = [];
  const rules: RulesModel = { affinity: [], antiAffinity: [], vmHost: [] };
  const vmNames = Array.from({ length: options.vms }, (_, i) => `vm${String(i).padStart(5, '0')}`);

  // Rules first, so the layout can respect them.
  const antiGroups = options.antiAffinityGroups ?? Math.floor(options.vms / 50);
  for (let g = 0; g < antiGroups; g++) {
    const size = 2 + Math.floor(random() * 3);
    const start = Math.floor(random() * Math.max(1, options.vms - size));
    rules.antiAffinity.push({ name: `spread${g}`, vms: vmNames.slice(start, start + size) });
  }
  const antiOf = new Map<string, string[][]>();
  for (const rule of rules.antiAffinity) for (const vm of rule.vms) antiOf.set(vm, [...(antiOf.get(vm) ?? []), rule.vms]);
  // Affinity groups (2–3 VMs that share a host), kept apart from the other rules so the rules never contradict.
  const affinityOf = new Map<string, string[]>();
  for (let g = 0; g < (options.affinityGroups ?? 0); g++) {
    const size = 2 + Math.floor(random() * 2);
    const start = Math.floor(random() * Math.max(1, options.vms - size));
    const members = vmNames.slice(start, start + size);
    if (members.length < 2 || members.some((vm) => antiOf.has(vm) || affinityOf.has(vm))) continue;
    rules.affinity.push({ name: `together${g}`, vms: members });
    for (const vm of members) affinityOf.set(vm, members);
  }
  const ruleCount = options.vmHostRules ?? Math.floor(options.vms / 100);
  const mustHosts = new Map<string, Set<string>>();
  const mustNot = new Map<string, Set<string>>();
  for (let r = 0; r < ruleCount; r++) {
    const vm = pick(vmNames);
    if (mustHosts.has(vm) || mustNot.has(vm) || antiOf.has(vm) || affinityOf.has(vm)) continue;
    const cluster = `c${r % clusters}`;
    const inCluster = hosts.filter((h) => h.cluster === cluster);
    const chosen = new Set(Array.from({ length: Math.min(inCluster.length, 1 + Math.floor(random() * 4)) }, () => pick(inCluster).name));
    const mode = random() < 0.7 ? 'must' : random() < 0.5 ? 'must-not' : 'should';
    rules.vmHost.push({ name: `pin${r}`, vms: [vm], hosts: [...chosen], mode });
    if (mode === 'must') mustHosts.set(vm, chosen);
    if (mode === 'must-not') mustNot.set(vm, chosen);
  }

  const where = new Map<string, string>();
  for (const name of vmNames) {
    const memoryMiB = pick([512, 1024, 2048, 4096, 8192]);
    const peerHost = affinityOf.get(name)?.map((peer) => where.get(peer)).find((h) => h !== undefined);
    const mustSet = mustHosts.get(name) ?? (peerHost ? new Set([peerHost]) : undefined);
    const clusterOf = mustSet ? hosts.find((h) => h.name === [...mustSet][0])!.cluster : `c${Math.floor(random() * clusters)}`;
    const ok = (h: PlacementHost) =>
      h.cluster === clusterOf &&
      (!mustSet || mustSet.has(h.name)) &&
      !mustNot.get(name)?.has(h.name) &&
      committed.get(h.name)! + memoryMiB <= h.memoryTotalMiB &&
      !(antiOf.get(name) ?? []).some((group) => group.some((peer) => peer !== name && where.get(peer) === h.name));
    let host: PlacementHost | undefined;
    for (let tries = 0; tries < 20 && !host; tries++) {
      const candidate = pick(hosts);
      if (ok(candidate)) host = candidate;
    }
    host ??= hosts.find(ok);
    if (!host) continue;
    where.set(name, host.name);
    committed.set(host.name, committed.get(host.name)! + memoryMiB);
    const heat = hot.has(host.name) ? 3 : 1;
    vms.push({
      name,
      host: host.name,
      pool: 'default',
      memoryMiB,
      vcpus: pick([1, 2, 4]),
      cpuUsed: Math.min(4, random() * 1.2 * heat),
      memoryUsedMiB: Math.round(memoryMiB * (0.3 + random() * 0.7)),
      dirtyBytesPerSec: random() * 50 * 1024 * 1024,
      movable: random() > 0.02,
    });
  }
  // Rules on VMs that found no host are dropped, as a site would not name VMs it lacks.
  const present = new Set(vms.map((v) => v.name));
  rules.antiAffinity = rules.antiAffinity.map((r) => ({ ...r, vms: r.vms.filter((v) => present.has(v)) })).filter((r) => r.vms.length >= 2);
  rules.vmHost = rules.vmHost.filter((r) => r.vms.every((v) => present.has(v)));
  rules.affinity = rules.affinity.map((r) => ({ ...r, vms: r.vms.filter((v) => present.has(v)) })).filter((r) => r.vms.length >= 2);
  return { hosts, vms, pools: [{ name: 'default', cluster: 'c0', shares: 1000, reservation: {}, limit: {} }], rules };
}

/** Hard rules a layout breaks, judged from the model's plain data (not from ClusterState). */
export function hardViolations(model: ClusterModel, where: ReadonlyMap<string, string>): string[] {
  const out: string[] = [];
  const hostOf = (vm: string) => where.get(vm) ?? model.vms.find((v) => v.name === vm)!.host;
  const used = new Map<string, number>();
  for (const vm of model.vms) used.set(hostOf(vm.name), (used.get(hostOf(vm.name)) ?? 0) + vm.memoryMiB);
  for (const host of model.hosts) {
    if ((used.get(host.name) ?? 0) > host.memoryTotalMiB - host.reservedMiB) out.push(`memory over on ${host.name}`);
  }
  const clusterOf = new Map(model.hosts.map((h) => [h.name, h.cluster]));
  for (const vm of model.vms) {
    if (clusterOf.get(hostOf(vm.name)) !== clusterOf.get(vm.host)) out.push(`${vm.name} left its cluster`);
  }
  for (const rule of model.rules.antiAffinity) {
    const hosts = rule.vms.map(hostOf);
    if (new Set(hosts).size !== hosts.length) out.push(`anti-affinity ${rule.name} broken`);
  }
  for (const rule of model.rules.affinity) {
    if (new Set(rule.vms.map(hostOf)).size > 1) out.push(`affinity ${rule.name} broken`);
  }
  for (const rule of model.rules.vmHost) {
    for (const vm of rule.vms) {
      if (rule.mode === 'must' && !rule.hosts.includes(hostOf(vm))) out.push(`must ${rule.name} broken`);
      if (rule.mode === 'must-not' && rule.hosts.includes(hostOf(vm))) out.push(`must-not ${rule.name} broken`);
    }
  }
  return out;
}
