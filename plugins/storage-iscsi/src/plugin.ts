/**
 * The @motus/storage-iscsi plugin. On agents: a StorageProvider whose leases are
 * the hosts' SCSI-3 registrations on the VM disks' LUNs (lun-lease.ts), and the
 * host's view of the iSCSI datastores (LUNs, NAA ids, sizes, owners) in its
 * facts. On the server: a validate tap that refuses a destination which does
 * not see a VM's LUN — the same LUN, by NAA id, as the source sees.
 */
import { API_VERSION, StorageMetrics, StorageProviderToken, definePlugin, type HostInfo, type MigrationHookContext, type PluginContext, type PluginDefinition, type Veto } from '@motus/sdk';
import { IscsiPluginConfigSchema, type IscsiPluginConfig } from './config.js';
import { locateDisk, type DiskLocation } from './disk-url.js';
import { IscsiStorageProvider, type IscsiHostFacts } from './storage-provider.js';
import { IscsiOperatorView } from './operator-view.js';
import { fenceWriters } from './writer-fence.js';

export const PLUGIN_NAME = '@motus/storage-iscsi';
export const PLUGIN_VERSION = '0.1.0';

function setUpAgent(ctx: PluginContext<IscsiPluginConfig>): Promise<void> {
  const provider = new IscsiStorageProvider({ host: ctx.host!, config: ctx.config, logger: ctx.logger, fence: fenceWriters, metrics: new StorageMetrics(ctx.metrics, 'iscsi') });
  ctx.provide(StorageProviderToken, provider);
  ctx.reportFacts(() => provider.facts());
  ctx.onDispose(() => provider.close());
  ctx.handle('preempt', async (payload) => {
    const p = payload as { datastore: string; lun: number; host?: string; all?: true };
    return provider.preemptLun(p.datastore, p.lun, p.all ? { all: true } : { host: p.host! });
  });
  return provider.start();
}

/** The VM's disks that are LUNs of the site's iSCSI datastores. */
export function iscsiDisks(config: IscsiPluginConfig, mctx: Pick<MigrationHookContext, 'vm'>): Array<{ id: string; location: DiskLocation }> {
  return (mctx.vm.spec.disks ?? []).flatMap((disk) => {
    const location = locateDisk(config.datastores, disk.path);
    return location ? [{ id: disk.id, location }] : [];
  });
}

function factsOf(host: HostInfo): Partial<IscsiHostFacts> | undefined {
  return host.plugins[PLUGIN_NAME] as Partial<IscsiHostFacts> | undefined;
}

/** Why `destination` cannot run a VM whose disks are these LUNs; undefined when it can. */
export function visibilityVeto(config: IscsiPluginConfig, mctx: Pick<MigrationHookContext, 'vm' | 'source' | 'destination'>): Veto | undefined {
  const { destination, source, vm } = mctx;
  const there = factsOf(destination);
  const here = factsOf(source);
  for (const { id, location } of iscsiDisks(config, mctx)) {
    const naa = here?.datastores?.find((d) => d.name === location.datastore)?.luns.find((l) => l.lun === location.lun)?.naa;
    const lunName = `LUN ${location.lun}${naa ? ` (${naa})` : ''} of iSCSI datastore ${location.datastore}`;
    const ds = there?.datastores?.find((d) => d.name === location.datastore);
    const seen = ds?.luns.find((l) => l.lun === location.lun);
    let why: string | undefined;
    if (!there?.datastores) why = 'its agent reports no iSCSI datastores yet';
    else if (there.notVisible?.includes(location.datastore) || !ds) why = 'the datastore is not among its datastores';
    else if (!ds.accessible) why = `it cannot reach the target: ${ds.error ?? 'not accessible'}`;
    else if (!seen) why = 'the target shows it no such LUN';
    else if (naa && seen.naa !== naa) why = `its LUN ${location.lun} is another device (${seen.naa ?? 'no NAA id'})`;
    if (why === undefined) continue;
    return {
      plugin: PLUGIN_NAME,
      code: 'MOTUS_E_DATASTORE_NOT_VISIBLE',
      reason: `host ${destination.name} does not see ${lunName} (${why}), which holds disk ${id} of VM ${vm.name}`,
      data: { host: destination.name, datastore: location.datastore, lun: location.lun, ...(naa ? { naa } : {}), disk: id, vm: vm.name },
    };
  }
  return undefined;
}

function setUpServer(ctx: PluginContext<IscsiPluginConfig>): void {
  ctx.hooks.validate.tapPromise(PLUGIN_NAME, async (mctx) => visibilityVeto(ctx.config, mctx));
  const view = new IscsiOperatorView(PLUGIN_NAME, { hosts: () => ctx.hosts() }, (host, method, payload) => ctx.callAgent(host, method, payload));
  // motus datastore show / preempt.
  ctx.handle('datastores', (payload) => view.show(payload), { role: 'viewer' });
  ctx.handle('preempt', (payload) => view.preempt(payload), { role: 'admin' });
}

const plugin: PluginDefinition<IscsiPluginConfig> = definePlugin<IscsiPluginConfig>({
  name: PLUGIN_NAME,
  version: PLUGIN_VERSION,
  apiVersion: API_VERSION,
  provides: [StorageProviderToken],
  configSchema: IscsiPluginConfigSchema,
  setup(ctx) {
    if (ctx.role === 'agent') return setUpAgent(ctx);
    setUpServer(ctx);
  },
});

export default plugin;
