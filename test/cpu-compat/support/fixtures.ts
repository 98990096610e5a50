import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { HostCpuFacts } from '@motus/sdk';
import { CpuModels, buildReport, parseCpuInfo, type CpuInfo, type QemuCpuReport, type RawCpuReplies } from '@motus/cpu-compat';

const dir = fileURLToPath(new URL('../../../cpu-compat/fixtures/', import.meta.url));

/** The recorded QMP replies of QEMU 10 under TCG (see record-qemu-cpus.ts). */
export function recordedReplies(): RawCpuReplies {
  const file = readdirSync(dir).find((f) => /^qemu-.*-tcg\.json$/.test(f));
  if (!file) throw new Error(`no recorded QEMU replies in ${dir}: run node test/dist/cpu-compat/support/record-qemu-cpus.js`);
  return JSON.parse(readFileSync(dir + file, 'utf8')) as RawCpuReplies;
}

export function recordedReport(): QemuCpuReport {
  return buildReport(recordedReplies());
}

export function recordedModels(): CpuModels {
  return new CpuModels(recordedReport().catalog);
}

export function fixtureText(name: string): string {
  return readFileSync(dir + name, 'utf8');
}

export function recordedCpuInfo(): CpuInfo {
  const parsed = parseCpuInfo(fixtureText('cpuinfo-recorded.txt'));
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.value;
}

/**
 * A host modelled on a CPU generation: it provides exactly the features QEMU gives
 * that named model (what `-cpu host` shows on such a machine under KVM, to within
 * the features QEMU's model leaves out), plus `extra`.
 */
export function modelledHost(host: string, model: string, options: { extra?: string[]; vendor?: string } = {}): HostCpuFacts {
  const models = recordedModels();
  const m = models.model(model);
  const features = [...new Set([...m.features, ...(options.extra ?? [])])].sort();
  const has = new Set(features);
  return {
    host,
    vendor: options.vendor ?? m.vendor,
    family: m.family,
    model: m.model,
    stepping: m.stepping,
    modelName: m.modelId,
    cpuinfoFlags: [],
    cpuinfoNotProvided: [],
    qemu: { version: models.qemuVersion, accelerator: 'kvm', hostModel: 'host' },
    features,
    runnableModels: models.generations().filter((g) => g.features.every((f) => has.has(f))).map((g) => g.name),
  };
}
