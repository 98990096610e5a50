import type { HostCpuFacts } from '@motus/sdk';
import type { CpuInfo } from './cpuinfo.js';
import { CpuModels } from './cpu-spec.js';
import { mapCpuinfoFlags } from './feature-names.js';
import type { QemuCpuReport } from './qemu-report.js';

/**
 * Limits a lab puts on a host so that one machine can stand for an older CPU
 * generation (for tests and demos on identical hardware): the host then offers
 * only what `maxModel` has, minus `hideFeatures`, and may claim another vendor.
 * Never use this to describe real hardware: QEMU is not told, only Motus believes it.
 */
export interface LabLimits {
  maxModel?: string;
  hideFeatures?: string[];
  vendor?: string;
}

export function hostCpuFacts(host: string, cpuinfo: CpuInfo, report: QemuCpuReport, limits?: LabLimits): HostCpuFacts {
  const models = new CpuModels(report.catalog);
  let features = new Set(report.view.features);
  if (limits?.maxModel !== undefined) {
    const cap = new Set(models.model(limits.maxModel).features);
    features = new Set([...features].filter((f) => cap.has(f)));
  }
  if (limits?.hideFeatures) {
    models.checkFeatures(limits.hideFeatures, `lab limits of ${host}`);
    for (const f of limits.hideFeatures) features.delete(f);
  }
  const mapping = mapCpuinfoFlags(cpuinfo.flags, new Set(report.catalog.knownFeatures));
  const cpuinfoNotProvided = [...mapping.toQemu].filter(([, q]) => !report.view.features.includes(q)).map(([flag]) => flag).sort();
  const runnableModels = models
    .generations()
    .filter((m) => m.features.every((f) => features.has(f)))
    .map((m) => m.name);
  const facts: HostCpuFacts = {
    host,
    vendor: limits?.vendor ?? cpuinfo.vendor,
    family: cpuinfo.family,
    model: cpuinfo.model,
    stepping: cpuinfo.stepping,
    modelName: cpuinfo.modelName,
    cpuinfoFlags: cpuinfo.flags,
    cpuinfoNotProvided,
    qemu: { version: report.view.qemuVersion, accelerator: report.view.accelerator, hostModel: report.view.hostModel },
    features: [...features].sort(),
    runnableModels,
  };
  if (limits && (limits.maxModel !== undefined || limits.hideFeatures !== undefined || limits.vendor !== undefined)) facts.limits = { ...limits };
  return facts;
}

/** Reads what a host reported, or says why it cannot be used. */
export function factsOf(plugins: Record<string, unknown>, pluginName: string): HostCpuFacts | { error: string } {
  const raw = plugins[pluginName];
  if (typeof raw !== 'object' || raw === null) return { error: `${pluginName} reported no CPU facts (is the plugin loaded on the agent?)` };
  const r = raw as Record<string, unknown>;
  if (typeof r['error'] === 'string') return { error: r['error'] };
  if (!Array.isArray(r['features']) || typeof r['vendor'] !== 'string') return { error: 'the CPU facts are still being gathered' };
  return raw as HostCpuFacts;
}
