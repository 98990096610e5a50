import { API_VERSION, HypervisorDriverToken, definePlugin, type PluginDefinition } from '@motus/sdk';
import { QemuPluginConfigSchema, type QemuPluginConfig } from './config.js';
import { QemuDriver } from './qemu-driver.js';

export { QemuDriver, DEFAULT_QMP_TIMEOUT_MS, DEFAULT_START_TIMEOUT_MS, DEFAULT_PROBE_TIMEOUT_MS, type QemuDriverOptions } from './qemu-driver.js';
export { QemuVm } from './qemu-vm.js';
export { QemuPluginConfigSchema, type QemuPluginConfig } from './config.js';
export * from './launch/argv.js';
export { findExecutable, requireQemu, DEFAULT_QEMU_BINARY } from './launch/binaries.js';
export type { ProcessExit } from './launch/qemu-process.js';
export { chooseAccelerator, probeAccelerator, runBootSector, type AcceleratorChoice, type AcceleratorSetting, type BootSectorRun, type ProbeOptions } from './accel-probe.js';
export { bootSector, BOOT_MARKER } from './boot-sector.js';
export { parseQemuVersion, qemuVersion } from './qemu-version.js';
export { toMigrationProgress, toMigrationStatus } from './migration/progress.js';
export { tuningToQmp, liveTuningToQmp, xbzrleCacheSize, tcpUri, type QmpTuning } from './migration/tuning.js';
export { migrationFeatures } from './migration/features.js';
export { toHypervisorEvent } from './events.js';
export { toRunState } from './run-state.js';

export const PLUGIN_VERSION = '0.1.0';

const plugin: PluginDefinition<QemuPluginConfig> = definePlugin<QemuPluginConfig>({
  name: '@motus/hv-qemu',
  version: PLUGIN_VERSION,
  apiVersion: API_VERSION,
  provides: [HypervisorDriverToken],
  roles: ['agent'],
  configSchema: QemuPluginConfigSchema,
  setup(ctx) {
    const { iscsiInitiatorName, ...config } = ctx.config;
    const driver = new QemuDriver({
      ...config,
      ...(iscsiInitiatorName ? { iscsiInitiatorName: iscsiInitiatorName.replaceAll('{host}', (ctx.host ?? '').toLowerCase().replace(/[^a-z0-9.-]/g, '-')) } : {}),
      logger: ctx.logger,
    });
    ctx.provide(HypervisorDriverToken, driver);
    ctx.onDispose(() => driver.dispose());
  },
});

export default plugin;
