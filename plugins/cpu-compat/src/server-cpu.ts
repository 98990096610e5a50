import { MotusError, type CpuBaselineChange, type CpuCompatPolicy, type CpuMask, type CpuVerdict, type HostCpuFacts, type HostInfo, type MigrationHookContext, type Veto } from '@motus/sdk';
import { baselineImpact, computeBaseline, effectiveCpu, type BaselineSetting, type ClusterBaseline } from './baseline.js';
import type { CpuCompatConfig } from './config.js';
import { CpuModels } from './cpu-spec.js';
import { factsOf } from './host-facts.js';
import type { CpuCatalog } from './qemu-report.js';
import { verdictMatrix, type VerdictMatrix } from './matrix.js';
import { judge } from './verdict.js';

export const PLUGIN_NAME = '@motus/cpu-compat';

/** How the policy reaches hosts: over the agent protocol on the server, directly on an agent. */
export interface HostAccess {
  facts(host: string): Promise<HostCpuFacts>;
  catalog(host: string): Promise<CpuCatalog>;
  /** Hosts the baseline spans. */
  clusterHosts(): string[];
}

/** The cluster-wide reasoning: baselines, masks, verdicts, and the validate tap. */
export class CpuPolicy implements CpuCompatPolicy {
  /** One catalog per QEMU version: every host with that version has the same named models. */
  private readonly catalogs = new Map<string, Promise<CpuModels>>();

  constructor(
    private readonly config: CpuCompatConfig,
    private readonly access: HostAccess,
  ) {}

  async modelsFor(host: string, facts: HostCpuFacts): Promise<CpuModels> {
    const key = facts.qemu.version;
    let models = this.catalogs.get(key);
    if (!models) {
      models = this.access.catalog(host).then((c) => new CpuModels(c));
      this.catalogs.set(key, models);
      // A failed fetch must not stick: the next call asks again.
      models.catch(() => this.catalogs.delete(key));
    }
    return models;
  }

  async clusterBaseline(setting: BaselineSetting = this.config.baseline): Promise<{ baseline: ClusterBaseline; models: CpuModels }> {
    const names = this.access.clusterHosts();
    if (names.length === 0) {
      throw new MotusError('MOTUS_E_INVALID_REQUEST', `set the cluster's hosts in the ${PLUGIN_NAME} config ('cluster: [host-a, …]') to compute its baseline`, {});
    }
    const facts = await Promise.all(names.map((h) => this.access.facts(h)));
    const models = await this.modelsFor(names[0]!, facts[0]!);
    return { baseline: computeBaseline(setting, facts, models), models };
  }

  /** What setting the baseline to `setting` would do to the running `vms`, with nothing changed. */
  async baselineChange(setting: BaselineSetting, vms: ReadonlyArray<{ name: string; cpuModel?: string }>): Promise<CpuBaselineChange> {
    const { baseline: current, models } = await this.clusterBaseline();
    const { baseline: next } = await this.clusterBaseline(setting);
    const impact = baselineImpact(current, next, vms, models);
    const touched = new Set([...impact.beyond, ...impact.couldGain].map((v) => v.vm));
    const had = new Set(current.features);
    const will = new Set(next.features);
    return {
      from: current.cpu,
      to: next.cpu,
      added: next.features.filter((f) => !had.has(f)).sort(),
      removed: current.features.filter((f) => !will.has(f)).sort(),
      refused: next.refused,
      ...impact,
      unaffected: vms.map((v) => v.name).filter((name) => !touched.has(name)),
    };
  }

  async baseline(): Promise<{ cpu: string; features: string[]; refused: CpuVerdict[] }> {
    const { baseline } = await this.clusterBaseline();
    return { cpu: baseline.cpu, features: baseline.features, refused: baseline.refused };
  }

  async effectiveCpu(mask?: CpuMask): Promise<string> {
    const { baseline, models } = await this.clusterBaseline();
    return effectiveCpu(baseline, mask, models);
  }

  async cpuForNewVm(mask?: CpuMask): Promise<string | undefined> {
    if (this.access.clusterHosts().length === 0 && mask === undefined) return undefined;
    return this.effectiveCpu(mask);
  }

  async check(cpu: string, host: string): Promise<CpuVerdict> {
    const facts = await this.access.facts(host);
    return judge(await this.modelsFor(host, facts), cpu, facts);
  }

  /** Every VM against every host: the dry run behind a cluster matrix. */
  async matrix(vms: ReadonlyArray<{ name: string; cpuModel?: string }>, hosts: readonly string[]): Promise<VerdictMatrix> {
    const facts = await Promise.all(hosts.map((h) => this.access.facts(h)));
    const models = await this.modelsFor(hosts[0]!, facts[0]!);
    return verdictMatrix(models, vms, facts, this.config.defaultCpu);
  }

  /** The validate tap: the VM's recorded CPU against the destination, then the cluster baseline. */
  async validate(c: MigrationHookContext): Promise<Veto | undefined> {
    const judged = await this.assess(c.vm.name, c.vm.spec.cpuModel ?? this.config.defaultCpu, c.destination, c.source);
    return 'veto' in judged ? judged.veto : undefined;
  }

  /**
   * Whether `destination` may take VM `vm` whose CPU is `cpu`, from the facts the
   * hosts reported: the answer of the validate tap and of the dry runs alike.
   * `source` is where the VM runs now, if it runs.
   */
  async assess(vm: string, cpu: string, destination: HostInfo, source?: HostInfo): Promise<{ verdict: CpuVerdict } | { veto: Veto }> {
    const host = destination.name;
    const reported = factsOf(destination.plugins, PLUGIN_NAME);
    if ('error' in reported) {
      return {
        veto: { plugin: PLUGIN_NAME, code: 'MOTUS_E_CPU_PROBE', reason: `cannot tell whether host ${host} can run VM ${vm}'s CPU ${cpu}: ${reported.error}`, data: { host, cpu } },
      };
    }
    const running = source ? factsOf(source.plugins, PLUGIN_NAME) : undefined;
    let verdict: CpuVerdict;
    try {
      verdict = judge(await this.modelsFor(host, reported), cpu, reported, vm, running && !('error' in running) ? running : undefined);
    } catch (err) {
      const e = MotusError.from(err);
      return { veto: { plugin: PLUGIN_NAME, code: e.code, reason: `VM ${vm}'s CPU ${cpu} cannot be judged: ${e.message}`, data: { host, cpu, ...e.data } } };
    }
    if (!verdict.compatible) {
      return { veto: { plugin: PLUGIN_NAME, code: 'MOTUS_E_CPU_INCOMPATIBLE', reason: verdict.message, data: { ...verdict } } };
    }
    const refusal = baselineRefusal(reported);
    if (refusal) return { veto: refusal };
    return { verdict };
  }
}

/** The veto for a host that cannot provide the cluster's named or custom baseline. */
export function baselineRefusal(facts: HostCpuFacts): Veto | undefined {
  const b = facts.baseline;
  if (!b || b.ok) return undefined;
  const host = facts.host;
  const why = b.vendorMismatch ? `its CPU is ${b.vendorMismatch.host} and the baseline is ${b.vendorMismatch.baseline}` : `it lacks ${b.missing.join(', ')}`;
  return {
    plugin: PLUGIN_NAME,
    code: 'MOTUS_E_CPU_BASELINE',
    reason: `host ${host} cannot provide the cluster CPU baseline ${b.cpu} (${why}), so it takes no VMs of the cluster; lower the baseline or take the host out of the cluster`,
    data: { host, baseline: b.cpu, missing: b.missing },
  };
}

/** Facts out of a callAgent answer, refusing anything that is not a finished probe. */
export function asFacts(host: string, value: unknown): HostCpuFacts {
  const facts = factsOf({ [PLUGIN_NAME]: value }, PLUGIN_NAME);
  if ('error' in facts) throw new MotusError('MOTUS_E_CPU_PROBE', `host ${host} has no CPU facts: ${facts.error}`, { host });
  return facts;
}
