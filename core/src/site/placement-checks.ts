import type { PlacementConfig, RuleConfig } from './placement-schema.js';

export interface PlacementIssue {
  path: (string | number)[];
  message: string;
}

/** The hosts every cluster-less host falls into. */
export const DEFAULT_CLUSTER = 'default';

/**
 * Checks of the placement section against the site's hosts, so a rule that can
 * never hold is refused when the site is loaded, not when a VM has to move:
 * unknown hosts, a host in two clusters, pools in no cluster, reservations above
 * what the cluster's hosts offer, and rules that contradict each other.
 */
export function checkPlacement(placement: PlacementConfig, hosts: ReadonlyArray<{ name: string; memoryMiB?: number | undefined }>): PlacementIssue[] {
  const issues: PlacementIssue[] = [];
  const hostNames = new Set(hosts.map((h) => h.name));
  const clusterOf = new Map<string, string>();
  const clusterNames = new Set<string>();
  placement.clusters.forEach((cluster, i) => {
    if (clusterNames.has(cluster.name)) issues.push({ path: ['placement', 'clusters', i, 'name'], message: `cluster name '${cluster.name}' is used twice` });
    clusterNames.add(cluster.name);
    cluster.hosts.forEach((host, j) => {
      const path = ['placement', 'clusters', i, 'hosts', j];
      if (!hostNames.has(host)) issues.push({ path, message: `no host named '${host}' in hosts` });
      else if (clusterOf.has(host)) issues.push({ path, message: `host '${host}' is already in cluster '${clusterOf.get(host)}'; a host belongs to one cluster` });
      else clusterOf.set(host, cluster.name);
    });
  });
  if (hosts.some((h) => !clusterOf.has(h.name))) clusterNames.add(DEFAULT_CLUSTER);
  const hostsOf = (cluster: string) => hosts.filter((h) => (clusterOf.get(h.name) ?? DEFAULT_CLUSTER) === cluster);

  const poolNames = new Set<string>();
  const reserved = new Map<string, Array<{ pool: string; mib: number }>>();
  placement.pools.forEach((pool, i) => {
    const at = (...rest: (string | number)[]) => ['placement', 'pools', i, ...rest];
    if (poolNames.has(pool.name)) issues.push({ path: at('name'), message: `pool name '${pool.name}' is used twice` });
    poolNames.add(pool.name);
    let cluster = pool.cluster;
    if (cluster === undefined) {
      if (clusterNames.size === 1) cluster = [...clusterNames][0]!;
      else issues.push({ path: at('cluster'), message: `the site has ${clusterNames.size} clusters (${[...clusterNames].join(', ')}); say which one pool '${pool.name}' is in` });
    } else if (!clusterNames.has(cluster)) {
      issues.push({ path: at('cluster'), message: `no cluster named '${cluster}'` });
      cluster = undefined;
    }
    for (const kind of ['memoryMiB', 'cpus'] as const) {
      const r = pool.reservation[kind];
      const l = pool.limit[kind];
      if (r !== undefined && l !== undefined && r > l) {
        issues.push({ path: at('reservation', kind), message: `pool '${pool.name}' reserves ${r} ${kind === 'cpus' ? 'CPUs' : 'MiB'} but is limited to ${l}: a reservation cannot exceed the limit` });
      }
    }
    if (cluster !== undefined && pool.reservation.memoryMiB) {
      const list = reserved.get(cluster) ?? [];
      list.push({ pool: pool.name, mib: pool.reservation.memoryMiB });
      reserved.set(cluster, list);
    }
  });
  for (const [cluster, list] of reserved) {
    const members = hostsOf(cluster);
    const unsized = members.filter((h) => h.memoryMiB === undefined).map((h) => h.name);
    const index = placement.pools.findIndex((p) => p.name === list[0]!.pool);
    if (unsized.length > 0) {
      issues.push({ path: ['placement', 'pools', index, 'reservation', 'memoryMiB'], message: `pools of cluster '${cluster}' reserve memory, so its hosts need memoryMiB to check it fits (missing on ${unsized.join(', ')})` });
      continue;
    }
    const capacity = members.reduce((sum, h) => sum + (h.memoryMiB ?? 0), 0);
    const total = list.reduce((sum, p) => sum + p.mib, 0);
    if (total > capacity) {
      issues.push({
        path: ['placement', 'pools', index, 'reservation', 'memoryMiB'],
        message: `pools of cluster '${cluster}' reserve ${total} MiB (${list.map((p) => `${p.pool} ${p.mib}`).join(', ')}) but its hosts offer ${capacity} MiB`,
      });
    }
  }
  issues.push(...checkRules(placement.rules, hostNames));
  return issues;
}

function checkRules(rules: readonly RuleConfig[], hostNames: ReadonlySet<string>): PlacementIssue[] {
  const issues: PlacementIssue[] = [];
  const at = (i: number, ...rest: (string | number)[]) => ['placement', 'rules', i, ...rest];
  const names = new Set<string>();
  rules.forEach((rule, i) => {
    if (names.has(rule.name)) issues.push({ path: at(i, 'name'), message: `rule name '${rule.name}' is used twice` });
    names.add(rule.name);
    if (rule.kind === 'vm-host') {
      rule.hosts.forEach((host, j) => {
        if (!hostNames.has(host)) issues.push({ path: at(i, 'hosts', j), message: `no host named '${host}' in hosts` });
      });
    }
    if (new Set(rule.vms).size !== rule.vms.length) issues.push({ path: at(i, 'vms'), message: `rule '${rule.name}' names a VM twice` });
  });

  // Keep-together groups, merged across rules (a with b, b with c: a, b, c together).
  const parent = new Map<string, string>();
  const find = (vm: string): string => {
    let root = vm;
    while (parent.has(root) && parent.get(root) !== root) root = parent.get(root)!;
    return root;
  };
  const affinityRule = new Map<string, string>();
  for (const rule of rules) {
    if (rule.kind !== 'affinity') continue;
    for (const vm of rule.vms) {
      if (!parent.has(vm)) parent.set(vm, vm);
      affinityRule.set(vm, rule.name);
    }
    for (const vm of rule.vms.slice(1)) parent.set(find(vm), find(rule.vms[0]!));
  }
  rules.forEach((rule, i) => {
    if (rule.kind !== 'anti-affinity') return;
    const seen = new Map<string, string>();
    for (const vm of rule.vms) {
      if (!parent.has(vm)) continue;
      const group = find(vm);
      const other = seen.get(group);
      if (other !== undefined) {
        issues.push({ path: at(i, 'vms'), message: `rule '${rule.name}' keeps ${other} and ${vm} apart, but affinity rule '${affinityRule.get(vm)}' keeps them together` });
      }
      seen.set(group, vm);
    }
  });

  // Hosts each VM may run on, from its must and must-not rules; an affinity group shares one host.
  const allowed = new Map<string, { hosts: Set<string>; because: string[] }>();
  const restrict = (vm: string, hosts: Iterable<string>, rule: string, keep: boolean) => {
    const current = allowed.get(vm) ?? { hosts: new Set(hostNames), because: [] };
    const set = new Set(hosts);
    current.hosts = new Set([...current.hosts].filter((h) => set.has(h) === keep));
    current.because.push(rule);
    allowed.set(vm, current);
  };
  for (const rule of rules) {
    if (rule.kind !== 'vm-host' || (rule.mode !== 'must' && rule.mode !== 'must-not')) continue;
    for (const vm of rule.vms) restrict(vm, rule.hosts, rule.name, rule.mode === 'must');
  }
  for (const [vm, a] of allowed) {
    if (a.hosts.size > 0) continue;
    const last = a.because[a.because.length - 1]!;
    issues.push({ path: at(rules.findIndex((r) => r.name === last)), message: `VM ${vm} can run on no host: rules ${a.because.map((r) => `'${r}'`).join(', ')} leave none` });
  }
  const groups = new Map<string, string[]>();
  for (const vm of parent.keys()) groups.set(find(vm), [...(groups.get(find(vm)) ?? []), vm]);
  for (const members of groups.values()) {
    const constrained = members.filter((vm) => allowed.has(vm));
    if (constrained.length < 2) continue;
    const common = constrained.map((vm) => allowed.get(vm)!.hosts).reduce((a, b) => new Set([...a].filter((h) => b.has(h))));
    if (common.size === 0) {
      const index = rules.findIndex((r) => r.kind === 'affinity' && r.vms.some((vm) => members.includes(vm)));
      issues.push({ path: at(index), message: `VMs ${constrained.join(', ')} must run together, but their vm-host rules give them no host in common` });
    }
  }
  rules.forEach((rule, i) => {
    if (rule.kind !== 'anti-affinity') return;
    const hosts = new Set<string>();
    for (const vm of rule.vms) for (const h of allowed.get(vm)?.hosts ?? hostNames) hosts.add(h);
    if (hosts.size < rule.vms.length) {
      issues.push({ path: at(i, 'vms'), message: `rule '${rule.name}' keeps ${rule.vms.length} VMs apart but they may run on only ${hosts.size} host(s)` });
    }
  });
  return issues;
}
