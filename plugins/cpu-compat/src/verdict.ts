import type { CpuVerdict, HostCpuFacts } from '@motus/sdk';
import { CpuModels, formatCpuString, parseCpuString, type CpuSpec } from './cpu-spec.js';

/**
 * QEMU's generic models exist to run on any x86 host; the vendor string they carry
 * (qemu64 says AuthenticAMD) is a placeholder, not a CPU generation.
 */
export function isVendorNeutral(model: string): boolean {
  return /^(qemu|kvm)(32|64)(-v\d+)?$/.test(model);
}

/** Named models the host can run that a VM's CPU could be lowered to, richest first. */
function fallbacks(models: CpuModels, host: HostCpuFacts, vendor: string, limit = 3): string[] {
  const runnable = new Set(host.runnableModels);
  return models
    .generations()
    .filter((m) => runnable.has(m.name) && m.vendor === vendor)
    .sort((a, b) => b.features.length - a.features.length)
    .slice(0, limit)
    .map((m) => m.name);
}

/**
 * Judges a VM's CPU against a host. The VM's CPU is its recorded `-cpu` value, so
 * the answer is the same before the first start and after any number of moves.
 * `runningOn`, the host where the VM runs now, narrows the CPU to what that host
 * gave it: QEMU (without `enforce`) starts a model whose features the host lacks
 * with those features off, so the guest never saw them and need not find them on
 * the destination (qemu64's svm on an Intel KVM host, say).
 */
export function judge(models: CpuModels, cpu: string | CpuSpec, host: HostCpuFacts, vm?: string, runningOn?: HostCpuFacts): CpuVerdict {
  const spec = typeof cpu === 'string' ? parseCpuString(cpu) : cpu;
  const text = formatCpuString(spec);
  const model = models.model(spec.model);
  const wanted = models.features(spec);
  if (runningOn) {
    const given = new Set(runningOn.features);
    for (const f of wanted) if (!given.has(f)) wanted.delete(f);
  }
  const provided = new Set(host.features);
  const missing = [...wanted].filter((f) => !provided.has(f)).sort();
  const who = vm ? `VM ${vm} (CPU ${text})` : `CPU ${text}`;
  const verdict: CpuVerdict = { compatible: true, host: host.host, cpu: text, missing, message: `host ${host.host} can run ${who}` };
  if (model.vendor !== '' && !isVendorNeutral(model.name) && model.vendor !== host.vendor) {
    verdict.compatible = false;
    verdict.vendorMismatch = { cpu: model.vendor, host: host.vendor };
    verdict.message = `host ${host.host} has a ${host.vendor} CPU and ${who} is ${model.vendor}: a guest never moves between CPU vendors; pick a ${model.vendor} host`;
    return verdict;
  }
  if (missing.length > 0) {
    verdict.compatible = false;
    const lower = fallbacks(models, host, isVendorNeutral(model.name) ? host.vendor : model.vendor);
    verdict.message =
      `host ${host.host} lacks ${missing.length} CPU feature${missing.length > 1 ? 's' : ''} that ${who} uses: ${missing.join(', ')}. ` +
      `Hide ${missing.length > 1 ? 'them' : 'it'} in the VM's CPU (${formatCpuString({ ...spec, enable: spec.enable.filter((f) => !missing.includes(f)), disable: [...spec.disable, ...missing] })})` +
      (lower.length ? `, or pin a model ${host.host} can run (${lower.join(', ')})` : '') +
      ', then restart the VM; or choose another destination';
  }
  return verdict;
}
