import { API_VERSION, CpuCompatPolicyToken, MotusError, definePlugin, type PluginDefinition } from '@motus/sdk';
import { AgentCpu } from './agent-cpu.js';
import { CpuCompatConfigSchema, type CpuCompatConfig } from './config.js';
import { CpuDryRun } from './dry-run.js';
import { CpuPolicy, PLUGIN_NAME, asFacts } from './server-cpu.js';
import type { CpuCatalog } from './qemu-report.js';

export { parseCpuInfo, type CpuInfo, type CpuInfoResult } from './cpuinfo.js';
export { mapCpuinfoFlags, kernelSpelling, type FeatureMapping } from './feature-names.js';
export { buildReport, featuresOf, isGenerationModel, type Accelerator, type CpuCatalog, type CpuModelInfo, type QemuCpuReport, type QemuCpuView, type QmpCpuDefinition, type QmpCpuModelExpansion } from './qemu-report.js';
export { probeQemuCpus, probeQemuReplies, DEFAULT_PROBE_TIMEOUT_MS, type ProbeOptions, type RawCpuReplies } from './qemu-probe.js';
export { CpuModels, parseCpuString, formatCpuString, type CpuSpec } from './cpu-spec.js';
export { hostCpuFacts, factsOf, type LabLimits } from './host-facts.js';
export { computeBaseline, effectiveCpu, baselineImpact, type BaselineSetting, type ClusterBaseline, type BaselineImpact } from './baseline.js';
export { judge, isVendorNeutral } from './verdict.js';
export { verdictMatrix, type VerdictMatrix } from './matrix.js';
export { CpuPolicy, PLUGIN_NAME, baselineRefusal, type HostAccess } from './server-cpu.js';
export { CpuDryRun } from './dry-run.js';
export { AgentCpu } from './agent-cpu.js';
export { CpuCompatConfigSchema, type CpuCompatConfig } from './config.js';

export const PLUGIN_VERSION = '0.1.0';

const plugin: PluginDefinition<CpuCompatConfig> = definePlugin<CpuCompatConfig>({
  name: PLUGIN_NAME,
  version: PLUGIN_VERSION,
  apiVersion: API_VERSION,
  provides: [CpuCompatPolicyToken],
  configSchema: CpuCompatConfigSchema,
  setup(ctx) {
    const config = ctx.config;
    if (ctx.role === 'agent') {
      const host = ctx.host!;
      const cpu = new AgentCpu(host, config, ctx.logger);
      cpu.start();
      ctx.onDispose(() => cpu.dispose());
      ctx.reportFacts(() => cpu.facts());
      ctx.handle('facts', async () => (await cpu.ready()).facts);
      ctx.handle('catalog', async () => (await cpu.ready()).report.catalog);
      // An agent's policy knows only its own host: enough for a named or custom
      // baseline and for dry runs against this host.
      const local = async (name: string) => {
        if (name !== host) throw new MotusError('MOTUS_E_HOST_NOT_FOUND', `the ${PLUGIN_NAME} policy of agent ${host} knows no host ${name}`, { host: name });
        return cpu.ready();
      };
      ctx.provide(
        CpuCompatPolicyToken,
        new CpuPolicy(config, {
          facts: async (name) => (await local(name)).facts,
          catalog: async (name) => (await local(name)).report.catalog,
          clusterHosts: () => [host],
        }),
      );
      return;
    }
    const policy = new CpuPolicy(config, {
      facts: async (host) => asFacts(host, await ctx.callAgent(host, 'facts')),
      catalog: async (host) => (await ctx.callAgent(host, 'catalog')) as CpuCatalog,
      clusterHosts: () => config.cluster ?? [],
    });
    ctx.provide(CpuCompatPolicyToken, policy);
    ctx.hooks.validate.tapPromise(PLUGIN_NAME, (c) => policy.validate(c));
    // Dry runs for users (motus cpu check / matrix): read-only, so viewers may ask.
    const dryRun = new CpuDryRun(policy, { hosts: () => ctx.hosts(), vms: () => ctx.vms() }, config.cluster, config.defaultCpu);
    ctx.handle('baseline', () => policy.baseline(), { role: 'viewer' });
    ctx.handle('check', (payload) => dryRun.check(payload), { role: 'viewer' });
    ctx.handle('matrix', (payload) => dryRun.matrix(payload), { role: 'viewer' });
    ctx.handle('baseline-impact', (payload) => dryRun.baselineChange(payload), { role: 'viewer' });
  },
});

export default plugin;
