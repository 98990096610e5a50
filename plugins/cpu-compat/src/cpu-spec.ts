import { MotusError } from '@motus/sdk';
import type { CpuCatalog, CpuModelInfo } from './qemu-report.js';

/** A `-cpu` value taken apart: a named model, features turned on and off on top. */
export interface CpuSpec {
  model: string;
  enable: string[];
  disable: string[];
}

const FEATURE = /^[a-z0-9][a-z0-9_.-]*$/;

/**
 * Reads `MODEL[,-feat|,+feat|,feat=on|off]…` (QEMU's two spellings). Options that
 * are not features (e.g. `,vendor=…`, `,model-id=…`) are refused: Motus records the
 * CPU so it can reason about it, and those would change what the guest sees in
 * ways the feature sets do not show.
 */
export function parseCpuString(value: string): CpuSpec {
  const [model, ...rest] = value.split(',');
  const options = rest.filter((p) => p !== '');
  if (model === undefined || !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(model)) {
    throw new MotusError('MOTUS_E_INVALID_REQUEST', `"${value}" is not a CPU model: expected MODEL[,-feature,…]`, { cpu: value });
  }
  const on = new Set<string>();
  const off = new Set<string>();
  for (const option of options) {
    let name: string;
    let state: boolean;
    const eq = option.indexOf('=');
    if (option.startsWith('+') || option.startsWith('-')) {
      name = option.slice(1);
      state = option.startsWith('+');
    } else if (eq > 0 && ['on', 'off', 'true', 'false'].includes(option.slice(eq + 1))) {
      name = option.slice(0, eq);
      state = ['on', 'true'].includes(option.slice(eq + 1));
    } else {
      throw new MotusError('MOTUS_E_INVALID_REQUEST', `"${option}" in CPU "${value}" is not a feature switch (use -feature, +feature or feature=on|off)`, { cpu: value, option });
    }
    if (!FEATURE.test(name)) throw new MotusError('MOTUS_E_INVALID_REQUEST', `"${name}" in CPU "${value}" is not a feature name`, { cpu: value, option });
    (state ? on : off).add(name);
    (state ? off : on).delete(name);
  }
  return { model, enable: [...on].sort(), disable: [...off].sort() };
}

/** The `-cpu` value QEMU is started with; features in a stable order so the string is the same on every host. */
export function formatCpuString(spec: CpuSpec): string {
  return [spec.model, ...[...spec.enable].sort().map((f) => `+${f}`), ...[...spec.disable].sort().map((f) => `-${f}`)].join(',');
}

/** Lookups over one QEMU's catalog. */
export class CpuModels {
  private readonly byName = new Map<string, CpuModelInfo>();
  private readonly known: Set<string>;
  constructor(readonly catalog: CpuCatalog) {
    for (const m of catalog.models) this.byName.set(m.name.toLowerCase(), m);
    this.known = new Set(catalog.knownFeatures);
  }

  get qemuVersion(): string {
    return this.catalog.qemuVersion;
  }

  /** The model, following an alias to the versioned model it stands for. */
  model(name: string): CpuModelInfo {
    const found = this.byName.get(name.toLowerCase());
    if (!found) {
      const near = this.catalog.models
        .map((m) => m.name)
        .filter((n) => n.toLowerCase().startsWith(name.toLowerCase().slice(0, 4)))
        .slice(0, 6);
      throw new MotusError(
        'MOTUS_E_CPU_UNKNOWN_MODEL',
        `QEMU ${this.qemuVersion} has no x86 CPU model "${name}"${near.length ? ` (similar: ${near.join(', ')})` : ''}`,
        { model: name, similar: near, qemuVersion: this.qemuVersion },
      );
    }
    return found.aliasOf ? (this.byName.get(found.aliasOf.toLowerCase()) ?? found) : found;
  }

  /** Throws MOTUS_E_CPU_UNKNOWN_FEATURE naming every name QEMU does not know. */
  checkFeatures(names: readonly string[], where: string): void {
    const unknown = names.filter((n) => !this.known.has(n));
    if (unknown.length > 0) {
      throw new MotusError('MOTUS_E_CPU_UNKNOWN_FEATURE', `${where}: QEMU ${this.qemuVersion} knows no CPU feature ${unknown.join(', ')}`, { unknown, qemuVersion: this.qemuVersion });
    }
  }

  /** Features a guest with this CPU sees (model's own, plus enabled, minus disabled). */
  features(spec: CpuSpec): Set<string> {
    const model = this.model(spec.model);
    this.checkFeatures([...spec.enable, ...spec.disable], `CPU ${formatCpuString(spec)}`);
    const set = new Set(model.features);
    for (const f of spec.enable) set.add(f);
    for (const f of spec.disable) set.delete(f);
    return set;
  }

  /** Concrete (versioned, non-alias) models that stand for a CPU generation and migrate safely. */
  generations(): CpuModelInfo[] {
    return this.catalog.models.filter((m) => m.aliasOf === undefined && m.migrationSafe && !m.deprecated);
  }
}
