import { MotusError, type CpuMask, type CpuVerdict, type HostCpuFacts } from '@motus/sdk';
import { CpuModels, formatCpuString, parseCpuString, type CpuSpec } from './cpu-spec.js';
import { judge } from './verdict.js';

/** `auto`, a named model, or a custom feature set written as a model plus/minus features. */
export type BaselineSetting = 'auto' | string | { model: string; add?: string[]; remove?: string[] };

export interface ClusterBaseline {
  mode: 'auto' | 'model' | 'custom';
  spec: CpuSpec;
  cpu: string;
  vendor: string;
  features: string[];
  /** Hosts that cannot provide the baseline, each with what it lacks. */
  refused: CpuVerdict[];
}

function richestFirst(a: { name: string; features: string[] }, b: { name: string; features: string[] }): number {
  return b.features.length - a.features.length || a.name.localeCompare(b.name);
}

/**
 * The cluster's baseline over the hosts given. `auto` is the named model with the
 * most features that every host can run; with a named or custom baseline, hosts
 * that cannot provide it are listed as refused (they take no VMs of the cluster).
 */
export function computeBaseline(setting: BaselineSetting, hosts: readonly HostCpuFacts[], models: CpuModels): ClusterBaseline {
  if (setting === 'auto') {
    if (hosts.length === 0) throw new MotusError('MOTUS_E_CPU_BASELINE', 'an auto baseline needs at least one host that reports its CPU', {});
    const vendors = new Map<string, string[]>();
    for (const h of hosts) vendors.set(h.vendor, [...(vendors.get(h.vendor) ?? []), h.host]);
    if (vendors.size > 1) {
      const listing = [...vendors].map(([v, hs]) => `${v}: ${hs.join(', ')}`).join('; ');
      throw new MotusError('MOTUS_E_CPU_VENDOR_MISMATCH', `the cluster mixes CPU vendors (${listing}); a baseline holds one vendor, so split the cluster`, {
        vendors: Object.fromEntries(vendors),
      });
    }
    const vendor = hosts[0]!.vendor;
    const everywhere = models
      .generations()
      .filter((m) => m.vendor === vendor && hosts.every((h) => h.runnableModels.includes(m.name)))
      .sort(richestFirst);
    const best = everywhere[0];
    if (!best) {
      throw new MotusError('MOTUS_E_CPU_BASELINE', `no named ${vendor} CPU model runs on every host (${hosts.map((h) => h.host).join(', ')}); set a custom baseline`, {
        hosts: hosts.map((h) => h.host),
      });
    }
    const spec: CpuSpec = { model: best.name, enable: [], disable: [] };
    return { mode: 'auto', spec, cpu: formatCpuString(spec), vendor, features: [...best.features], refused: [] };
  }
  const spec: CpuSpec =
    typeof setting === 'string'
      ? { ...parseCpuString(setting) }
      : { model: setting.model, enable: [...(setting.add ?? [])].sort(), disable: [...(setting.remove ?? [])].sort() };
  const model = models.model(spec.model);
  spec.model = model.name;
  const features = [...models.features(spec)].sort();
  const refused = hosts.map((h) => judge(models, spec, h)).filter((v) => !v.compatible);
  const mode = typeof setting === 'string' && spec.enable.length === 0 && spec.disable.length === 0 ? 'model' : 'custom';
  return { mode, spec, cpu: formatCpuString(spec), vendor: model.vendor, features, refused };
}

/**
 * The `-cpu` value for a VM: the baseline with the mask's features hidden, or a
 * pinned model (which must lie within the baseline, or the VM could not move to
 * every host of the cluster). Recorded in VmSpec.cpuModel, it stays the VM's CPU
 * across moves even when the baseline changes later.
 */
export function effectiveCpu(baseline: ClusterBaseline, mask: CpuMask | undefined, models: CpuModels): string {
  const hide = [...new Set(mask?.hide ?? [])];
  models.checkFeatures(hide, 'the VM mask');
  let spec: CpuSpec;
  if (mask?.pinModel !== undefined) {
    const pinned = models.model(mask.pinModel);
    const within = new Set(baseline.features);
    const beyond = pinned.features.filter((f) => !within.has(f) && !hide.includes(f)).sort();
    if (pinned.vendor !== baseline.vendor) {
      throw new MotusError('MOTUS_E_CPU_VENDOR_MISMATCH', `model ${pinned.name} is ${pinned.vendor} and the cluster baseline ${baseline.cpu} is ${baseline.vendor}`, {
        model: pinned.name,
        vendor: pinned.vendor,
        baselineVendor: baseline.vendor,
      });
    }
    if (beyond.length > 0) {
      throw new MotusError(
        'MOTUS_E_CPU_BASELINE',
        `model ${pinned.name} has features beyond the cluster baseline ${baseline.cpu}: ${beyond.join(', ')}; hide them too or pin an older model`,
        { model: pinned.name, beyond, baseline: baseline.cpu },
      );
    }
    spec = { model: pinned.name, enable: [], disable: hide.filter((f) => pinned.features.includes(f)) };
  } else {
    spec = {
      model: baseline.spec.model,
      enable: baseline.spec.enable.filter((f) => !hide.includes(f)),
      disable: [...new Set([...baseline.spec.disable, ...hide.filter((f) => models.model(baseline.spec.model).features.includes(f))])],
    };
  }
  return formatCpuString(spec);
}

export interface BaselineImpact {
  /** VMs whose CPU uses features the new baseline lacks: they keep running, but may only move to hosts that have them. */
  beyond: Array<{ vm: string; cpu: string; features: string[] }>;
  /** VMs on the old baseline's CPU that would see more features after a restart with the new one. */
  couldGain: Array<{ vm: string; cpu: string; features: string[] }>;
}

/** Which running VMs a baseline change affects, and how. */
export function baselineImpact(
  previous: ClusterBaseline,
  next: ClusterBaseline,
  vms: ReadonlyArray<{ name: string; cpuModel?: string }>,
  models: CpuModels,
): BaselineImpact {
  const nextFeatures = new Set(next.features);
  const impact: BaselineImpact = { beyond: [], couldGain: [] };
  for (const vm of vms) {
    if (vm.cpuModel === undefined) continue;
    const spec = parseCpuString(vm.cpuModel);
    const has = models.features(spec);
    const beyond = [...has].filter((f) => !nextFeatures.has(f)).sort();
    if (beyond.length > 0) impact.beyond.push({ vm: vm.name, cpu: vm.cpuModel, features: beyond });
    else if (formatCpuString(spec) === previous.cpu) {
      const gained = next.features.filter((f) => !has.has(f));
      if (gained.length > 0) impact.couldGain.push({ vm: vm.name, cpu: vm.cpuModel, features: gained });
    }
  }
  return impact;
}
