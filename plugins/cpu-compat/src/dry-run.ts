import { MotusError, type CpuBaselineChange, type CpuCheck, type CpuMatrix, type HostCpuFacts, type HostInfo, type VmInfo } from '@motus/sdk';
import { z } from 'zod';
import { BaselineSettingSchema } from './config.js';
import { factsOf } from './host-facts.js';
import { verdictMatrix } from './matrix.js';
import { baselineRefusal, PLUGIN_NAME, type CpuPolicy } from './server-cpu.js';

const CheckPayload = z.object({ vm: z.string().min(1), to: z.string().min(1) }).strict();
const MatrixPayload = z.object({ hosts: z.array(z.string().min(1)).optional() }).strict();
const BaselineChangePayload = z.object({ baseline: BaselineSettingSchema }).strict();

function parse<T>(schema: z.ZodType<T>, payload: unknown, what: string): T {
  const result = schema.safeParse(payload ?? {});
  if (result.success) return result.data;
  const problems = result.error.issues.map((i) => `${i.path.map(String).join('.') || '(payload)'}: ${i.message}`);
  throw new MotusError('MOTUS_E_INVALID_REQUEST', `${what} is not valid: ${problems.join('; ')}`, { problems });
}

const running = (vm: VmInfo) => vm.state === 'running' || vm.state === 'migrating' || vm.state === 'paused';

/**
 * The dry runs behind `motus cpu check` and `motus cpu matrix`: the same reasoning
 * as the validate tap, over the facts the hosts last reported, with nothing started.
 */
export class CpuDryRun {
  constructor(
    private readonly policy: CpuPolicy,
    private readonly site: { hosts(): Promise<HostInfo[]>; vms(): Promise<VmInfo[]> },
    private readonly cluster: readonly string[] | undefined,
    private readonly defaultCpu: string,
  ) {}

  async check(payload: unknown): Promise<CpuCheck> {
    const { vm: name, to } = parse(CheckPayload, payload, 'a CPU check ({ vm, to })');
    const [hosts, vms] = await Promise.all([this.site.hosts(), this.site.vms()]);
    const vm = vms.find((v) => v.name === name);
    if (!vm) throw new MotusError('MOTUS_E_VM_NOT_FOUND', `no VM named ${name}`, { vm: name });
    const destination = hosts.find((h) => h.name === to);
    if (!destination) throw new MotusError('MOTUS_E_HOST_NOT_FOUND', `no host named ${to}`, { host: to });
    const cpu = vm.spec.cpuModel ?? this.defaultCpu;
    const source = running(vm) ? hosts.find((h) => h.name === vm.host) : undefined;
    const judged = await this.policy.assess(vm.name, cpu, destination, source);
    if ('verdict' in judged) return { vm: vm.name, host: to, cpu: judged.verdict.cpu, compatible: true, missing: [], message: judged.verdict.message };
    const missing = Array.isArray(judged.veto.data?.['missing']) ? (judged.veto.data['missing'] as string[]) : [];
    return { vm: vm.name, host: to, cpu, compatible: false, code: judged.veto.code, missing, message: judged.veto.reason };
  }

  /** A baseline change as a dry run over the running VMs (`motus cpu baseline --dry-run NEW`). */
  async baselineChange(payload: unknown): Promise<CpuBaselineChange> {
    const { baseline } = parse(BaselineChangePayload, payload, 'a baseline change ({ baseline })');
    const vms = (await this.site.vms()).filter(running).map((v) => ({ name: v.name, ...(v.spec.cpuModel !== undefined ? { cpuModel: v.spec.cpuModel } : {}) }));
    return this.policy.baselineChange(baseline, vms);
  }

  async matrix(payload: unknown): Promise<CpuMatrix> {
    const request = parse(MatrixPayload, payload, 'a CPU matrix request ({ hosts? })');
    const [hosts, vms] = await Promise.all([this.site.hosts(), this.site.vms()]);
    const byName = new Map(hosts.map((h) => [h.name, h]));
    const names = request.hosts ?? (this.cluster && this.cluster.length > 0 ? [...this.cluster] : hosts.map((h) => h.name));
    const unknown = names.filter((n) => !byName.has(n));
    if (unknown.length > 0) throw new MotusError('MOTUS_E_HOST_NOT_FOUND', `no host named ${unknown.join(', ')}`, { hosts: unknown });

    const unavailable: CpuMatrix['unavailable'] = [];
    const usable: HostCpuFacts[] = [];
    for (const name of names) {
      const facts = factsOf(byName.get(name)!.plugins, PLUGIN_NAME);
      if ('error' in facts) {
        unavailable.push({ host: name, code: 'MOTUS_E_CPU_PROBE', reason: `host ${name} has no CPU facts: ${facts.error}` });
        continue;
      }
      const refusal = baselineRefusal(facts);
      if (refusal) unavailable.push({ host: name, code: refusal.code, reason: refusal.reason });
      else usable.push(facts);
    }
    const rows: CpuMatrix['rows'] = vms.map((vm) => ({ vm: vm.name, cpu: vm.spec.cpuModel ?? this.defaultCpu, ...(running(vm) ? { runsOn: vm.host } : {}), allowed: [], refused: [] }));
    for (const row of rows) for (const u of unavailable) row.refused.push({ host: u.host, code: u.code, missing: [], message: u.reason });
    if (usable.length === 0 || vms.length === 0) return { hosts: names, unavailable, rows, distinctCpus: 0, distinctHosts: 0 };

    const models = await this.policy.modelsFor(usable[0]!.host, usable[0]!);
    const entries = vms.map((vm) => {
      const source = running(vm) ? byName.get(vm.host) : undefined;
      const facts = source ? factsOf(source.plugins, PLUGIN_NAME) : undefined;
      return { name: vm.name, cpuModel: vm.spec.cpuModel ?? this.defaultCpu, ...(facts && !('error' in facts) ? { runningOn: facts } : {}) };
    });
    const matrix = verdictMatrix(models, entries, usable, this.defaultCpu);
    rows.forEach((row, v) => {
      usable.forEach((facts, h) => {
        if (matrix.can(v, h)) row.allowed.push(facts.host);
        else {
          const verdict = matrix.explain(v, h);
          row.refused.push({ host: facts.host, code: 'MOTUS_E_CPU_INCOMPATIBLE', missing: verdict.missing, message: verdict.message });
        }
      });
    });
    return { hosts: names, unavailable, rows, distinctCpus: matrix.distinctCpus, distinctHosts: matrix.distinctHosts };
  }
}
