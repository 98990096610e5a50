import type { CpuVerdict, HostCpuFacts } from '@motus/sdk';
import { CpuModels, formatCpuString, parseCpuString } from './cpu-spec.js';
import { isVendorNeutral, judge } from './verdict.js';

export interface VerdictMatrix {
  vms: readonly string[];
  hosts: readonly string[];
  /** Row-major, one byte per VM × host: 1 when the host can run the VM's CPU. */
  allowed: Uint8Array;
  /** Distinct CPUs and distinct host profiles actually compared. */
  distinctCpus: number;
  distinctHosts: number;
  can(vm: number, host: number): boolean;
  /** The full verdict (missing features, message) of one cell, computed on demand. */
  explain(vm: number, host: number): CpuVerdict;
}

/**
 * Every VM against every host. A cluster has few distinct CPUs (a baseline and a
 * handful of masks) and few distinct host profiles (a dozen generations), so each
 * distinct pair is judged once with feature bitmaps and the answer is spread over
 * the cells; the cost grows with VMs × hosts only by one byte per cell.
 */
export function verdictMatrix(
  models: CpuModels,
  vms: ReadonlyArray<{ name: string; cpuModel?: string; runningOn?: HostCpuFacts }>,
  hosts: readonly HostCpuFacts[],
  defaultCpu: string,
): VerdictMatrix {
  const bit = new Map(models.catalog.knownFeatures.map((f, i) => [f, i]));
  const words = Math.ceil(bit.size / 32) + 1;
  const bitmap = (features: Iterable<string>): Uint32Array => {
    const map = new Uint32Array(words);
    for (const f of features) {
      // Features QEMU does not know cannot be provided; they get the spare last word.
      const i = bit.get(f) ?? (words - 1) * 32;
      map[i >>> 5]! |= 1 << (i & 31);
    }
    return map;
  };

  const cpuIndex = new Map<string, number>();
  const cpus: Array<{ vendor: string; map: Uint32Array }> = [];
  const vmCpu = new Int32Array(vms.length);
  vms.forEach((vm, i) => {
    const text = formatCpuString(parseCpuString(vm.cpuModel ?? defaultCpu));
    // A running VM's CPU is narrowed to what its host gave it (see judge): the key holds both.
    const key = vm.runningOn ? `${text}@${vm.runningOn.features.join(',')}` : text;
    let index = cpuIndex.get(key);
    if (index === undefined) {
      const spec = parseCpuString(text);
      const model = models.model(spec.model);
      let features = models.features(spec);
      if (vm.runningOn) {
        const given = new Set(vm.runningOn.features);
        features = new Set([...features].filter((f) => given.has(f)));
      }
      index = cpus.length;
      cpus.push({ vendor: isVendorNeutral(model.name) ? '' : model.vendor, map: bitmap(features) });
      cpuIndex.set(key, index);
    }
    vmCpu[i] = index;
  });

  const profileIndex = new Map<string, number>();
  const profiles: Array<{ vendor: string; map: Uint32Array }> = [];
  const hostProfile = new Int32Array(hosts.length);
  hosts.forEach((h, i) => {
    const key = `${h.vendor}|${h.features.join(',')}`;
    let index = profileIndex.get(key);
    if (index === undefined) {
      index = profiles.length;
      profiles.push({ vendor: h.vendor, map: bitmap(h.features) });
      profileIndex.set(key, index);
    }
    hostProfile[i] = index;
  });

  const fits = new Uint8Array(cpus.length * profiles.length);
  cpus.forEach((c, ci) => {
    profiles.forEach((p, pi) => {
      let ok = c.vendor === '' || c.vendor === p.vendor;
      for (let w = 0; ok && w < words; w++) ok = (c.map[w]! & ~p.map[w]!) === 0;
      fits[ci * profiles.length + pi] = ok ? 1 : 0;
    });
  });

  const allowed = new Uint8Array(vms.length * hosts.length);
  for (let v = 0; v < vms.length; v++) {
    const row = vmCpu[v]! * profiles.length;
    const base = v * hosts.length;
    for (let h = 0; h < hosts.length; h++) allowed[base + h] = fits[row + hostProfile[h]!]!;
  }
  return {
    vms: vms.map((v) => v.name),
    hosts: hosts.map((h) => h.host),
    allowed,
    distinctCpus: cpus.length,
    distinctHosts: profiles.length,
    can: (vm, host) => allowed[vm * hosts.length + host] === 1,
    explain: (vm, host) => judge(models, vms[vm]!.cpuModel ?? defaultCpu, hosts[host]!, vms[vm]!.name, vms[vm]!.runningOn),
  };
}
