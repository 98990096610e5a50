/**
 * The @motus/storage-fc plugin. On agents: a StorageProvider over the host's FC
 * view (sysfs and udev), whose disks open as host block devices and whose
 * leases are SCSI-3 persistent reservations, the view in the host's facts, and
 * a `rescan` method the server calls. On the server: a validate tap that
 * refuses a destination which does not see every LUN of the VM — after asking
 * it to rescan its SCSI hosts, since a LUN newly mapped to a host appears only then.
 */
import { API_VERSION, StorageMetrics, StorageProviderToken, definePlugin, type MigrationHookContext, type PluginContext, type PluginDefinition, type Veto } from '@motus/sdk';
import { FcPluginConfigSchema, type FcPluginConfig } from './config.js';
import { locateDisk, type DiskLocation } from './disk-path.js';
import { normalizeLunWwn } from './names.js';
import { FcStorageProvider, type FcHostFacts } from './storage-provider.js';

export const PLUGIN_NAME = '@motus/storage-fc';
export const PLUGIN_VERSION = '0.1.0';

/** What an agent answers to `rescan`: its rescans, then what it sees of the asked WWNs. */
export interface RescanAnswer {
  host: string;
  rescanned: Array<{ host: string; ok: boolean; reason?: string; ms: number }>;
  luns: Array<{ wwn: string; visible: boolean; usable: boolean; reason?: string; lunNumbers: number[] }>;
}

function wwnsOf(payload: unknown): string[] {
  const list = (payload as { wwns?: unknown } | null)?.wwns;
  if (!Array.isArray(list)) return [];
  return list.flatMap((w) => {
    const r = typeof w === 'string' ? normalizeLunWwn(w) : undefined;
    return r?.ok ? [r.value] : [];
  });
}

function setUpAgent(ctx: PluginContext<FcPluginConfig>): Promise<void> {
  const provider = new FcStorageProvider({ host: ctx.host!, config: ctx.config, logger: ctx.logger, metrics: new StorageMetrics(ctx.metrics, 'fc') });
  ctx.provide(StorageProviderToken, provider);
  ctx.reportFacts(() => provider.facts());
  ctx.handle('rescan', async (payload): Promise<RescanAnswer> => {
    const { results } = await provider.rescan();
    return { host: ctx.host!, rescanned: results.map(({ file: _f, ...r }) => r), luns: provider.visibility(wwnsOf(payload)) };
  });
  ctx.onDispose(() => provider.close());
  return provider.start();
}

/** The VM's disks that are LUNs of the site's FC datastores. */
export function fcDisks(config: FcPluginConfig, mctx: Pick<MigrationHookContext, 'vm'>): Array<{ id: string; location: DiskLocation }> {
  return (mctx.vm.spec.disks ?? []).flatMap((disk) => {
    const location = locateDisk(config.datastores, disk.path);
    return location ? [{ id: disk.id, location }] : [];
  });
}

type SeenLun = { wwn: string; visible: boolean; usable: boolean; reason?: string; lunNumbers: number[] };

function seenIn(facts: Partial<FcHostFacts> | undefined, wwn: string): SeenLun | undefined {
  const lun = facts?.luns?.find((l) => l.wwn === wwn);
  if (!lun) return facts?.luns ? { wwn, visible: false, usable: false, lunNumbers: [] } : undefined;
  return { wwn, visible: true, usable: lun.usable, ...(lun.reason ? { reason: lun.reason } : {}), lunNumbers: lun.lunNumbers };
}

/**
 * Why `destination` cannot run the VM's FC disks, from what it reports (facts,
 * or a fresh rescan answer); undefined when it sees every LUN with a usable path.
 */
export function visibilityVeto(
  config: FcPluginConfig,
  mctx: Pick<MigrationHookContext, 'vm' | 'source' | 'destination'>,
  fresh?: RescanAnswer,
): Veto | undefined {
  const { destination, source, vm } = mctx;
  const there = destination.plugins[PLUGIN_NAME] as Partial<FcHostFacts> | undefined;
  const here = source.plugins[PLUGIN_NAME] as Partial<FcHostFacts> | undefined;
  for (const { id, location } of fcDisks(config, mctx)) {
    const ds = config.datastores.find((d) => d.name === location.datastore)!;
    const seen = fresh?.luns.find((l) => l.wwn === location.wwn) ?? seenIn(there, location.wwn);
    const numbers = seen?.lunNumbers.length ? seen.lunNumbers : (seenIn(here, location.wwn)?.lunNumbers ?? []);
    const lunName = `LUN ${location.wwn}${numbers.length ? ` (LUN ${numbers.join('/')})` : ''} of FC datastore ${location.datastore}`;
    let why: string | undefined;
    if (ds.hosts && !ds.hosts.includes(destination.name)) why = 'it is not among the datastore\'s hosts';
    else if (!seen) why = 'its agent reports no FC view yet';
    else if (!seen.visible) why = fresh ? `no path to it on any FC HBA, also after rescanning ${fresh.rescanned.map((r) => r.host).join(', ') || 'its SCSI hosts'}` : 'no path to it on any FC HBA';
    else if (!seen.usable) why = seen.reason ?? 'no usable path';
    if (why === undefined) continue;
    return {
      plugin: PLUGIN_NAME,
      code: 'MOTUS_E_DATASTORE_NOT_VISIBLE',
      reason: `host ${destination.name} does not see ${lunName} (${why}), which holds disk ${id} of VM ${vm.name}`,
      data: { host: destination.name, datastore: location.datastore, wwn: location.wwn, ...(numbers.length ? { lun: numbers[0] } : {}), disk: id, vm: vm.name },
    };
  }
  return undefined;
}

function setUpServer(ctx: PluginContext<FcPluginConfig>): void {
  ctx.hooks.validate.tapPromise(PLUGIN_NAME, async (mctx) => {
    const veto = visibilityVeto(ctx.config, mctx);
    if (!veto || !ctx.config.rescanBeforeMigration) return veto;
    const hosts = ctx.config.datastores.find((d) => d.name === veto.data?.datastore)?.hosts;
    if (hosts && !hosts.includes(mctx.destination.name)) return veto;
    // The destination may not have scanned since the LUN was mapped to it: ask it to, then judge on its answer.
    const wwns = fcDisks(ctx.config, mctx).map((d) => d.location.wwn);
    let answer: RescanAnswer;
    try {
      answer = (await ctx.callAgent(mctx.destination.name, 'rescan', { wwns })) as RescanAnswer;
    } catch (err) {
      ctx.logger.warn('rescan of the destination failed', { host: mctx.destination.name, error: (err as Error).message });
      return veto;
    }
    ctx.logger.info('destination rescanned before a migration', { host: mctx.destination.name, vm: mctx.vm.name, luns: answer.luns });
    return visibilityVeto(ctx.config, mctx, answer);
  });
}

const plugin: PluginDefinition<FcPluginConfig> = definePlugin<FcPluginConfig>({
  name: PLUGIN_NAME,
  version: PLUGIN_VERSION,
  apiVersion: API_VERSION,
  provides: [StorageProviderToken],
  configSchema: FcPluginConfigSchema,
  setup(ctx) {
    if (ctx.role === 'agent') return setUpAgent(ctx);
    setUpServer(ctx);
  },
});

export default plugin;
