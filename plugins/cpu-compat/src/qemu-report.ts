/**
 * What a host's QEMU says about x86 CPU models, in a form that travels as JSON:
 * the catalog of named models (host-independent for one QEMU version) and what
 * this host's accelerator can provide (host-dependent).
 */

export type Accelerator = 'kvm' | 'tcg';

export interface CpuModelInfo {
  name: string;
  /** For unversioned names (Haswell), the versioned model they stand for (Haswell-v1). */
  aliasOf?: string;
  vendor: string;
  family: number;
  model: number;
  stepping: number;
  modelId: string;
  /** CPUID features the model turns on (QEMU spelling), from its static expansion. */
  features: string[];
  migrationSafe: boolean;
  deprecated: boolean;
}

export interface CpuCatalog {
  qemuVersion: string;
  models: CpuModelInfo[];
  /** Every feature QEMU knows on x86 (the boolean properties of a static expansion). */
  knownFeatures: string[];
}

export interface QemuCpuView {
  qemuVersion: string;
  accelerator: Accelerator;
  /** The model whose expansion is "everything this host can give a guest": host (KVM) or max (TCG). */
  hostModel: 'host' | 'max';
  /** Static expansion of hostModel: the features the host can provide. */
  features: string[];
  vendor: string;
  /** Per model, the features this host's QEMU cannot provide (QEMU's own verdict). */
  unavailable: Record<string, string[]>;
}

export interface QemuCpuReport {
  catalog: CpuCatalog;
  view: QemuCpuView;
}

/** QMP shapes (qapi/machine-target.json) of the replies read here. */
export interface QmpCpuDefinition {
  name: string;
  'alias-of'?: string;
  'unavailable-features'?: string[];
  'migration-safe'?: boolean;
  deprecated?: boolean;
  static?: boolean;
}

export interface QmpCpuModelExpansion {
  model: { name: string; props?: Record<string, unknown> };
}

export function featuresOf(expansion: QmpCpuModelExpansion): string[] {
  return Object.entries(expansion.model.props ?? {})
    .filter(([, v]) => v === true)
    .map(([k]) => k)
    .sort();
}

export function booleanProps(expansion: QmpCpuModelExpansion): string[] {
  return Object.entries(expansion.model.props ?? {})
    .filter(([, v]) => typeof v === 'boolean')
    .map(([k]) => k)
    .sort();
}

function str(props: Record<string, unknown>, key: string): string {
  const v = props[key];
  return typeof v === 'string' ? v : '';
}

function int(props: Record<string, unknown>, key: string): number {
  const v = props[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

/** Models that stand for no CPU generation and never make a baseline. */
const NOT_A_GENERATION = new Set(['max', 'host', 'base']);

export function isGenerationModel(def: { name: string }): boolean {
  return !NOT_A_GENERATION.has(def.name);
}

/**
 * Builds the report from raw QMP replies: the definitions, the static expansion of
 * each model, and of the host model. Used by the probe and by tests on recorded
 * replies, so both read QEMU's answers the same way.
 */
export function buildReport(input: {
  qemuVersion: string;
  accelerator: Accelerator;
  definitions: QmpCpuDefinition[];
  expansions: Record<string, QmpCpuModelExpansion>;
  hostExpansion: QmpCpuModelExpansion;
}): QemuCpuReport {
  const models: CpuModelInfo[] = [];
  const unavailable: Record<string, string[]> = {};
  const known = new Set(booleanProps(input.hostExpansion));
  for (const def of input.definitions) {
    if (!isGenerationModel(def)) continue;
    unavailable[def.name] = [...(def['unavailable-features'] ?? [])].sort();
    const expansion = input.expansions[def.name];
    if (!expansion) continue;
    for (const p of booleanProps(expansion)) known.add(p);
    const props = expansion.model.props ?? {};
    const info: CpuModelInfo = {
      name: def.name,
      vendor: str(props, 'vendor'),
      family: int(props, 'family'),
      model: int(props, 'model'),
      stepping: int(props, 'stepping'),
      modelId: str(props, 'model-id'),
      features: featuresOf(expansion),
      migrationSafe: def['migration-safe'] === true,
      deprecated: def.deprecated === true,
    };
    if (def['alias-of'] !== undefined) info.aliasOf = def['alias-of'];
    models.push(info);
  }
  models.sort((a, b) => a.name.localeCompare(b.name));
  const hostProps = input.hostExpansion.model.props ?? {};
  return {
    catalog: { qemuVersion: input.qemuVersion, models, knownFeatures: [...known].sort() },
    view: {
      qemuVersion: input.qemuVersion,
      accelerator: input.accelerator,
      hostModel: input.accelerator === 'kvm' ? 'host' : 'max',
      features: featuresOf(input.hostExpansion),
      vendor: str(hostProps, 'vendor'),
      unavailable,
    },
  };
}
