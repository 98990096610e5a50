/**
 * The @motus/storage-nas plugin. On agents: a StorageProvider whose leases are
 * lock files on the site's NAS datastores, the host's view of those datastores
 * in its facts, and the handover orders of the server side. On the server: a
 * validate tap that refuses a destination which does not see the VM's
 * datastore, and the orders that let a lock pass from source to destination at
 * switchover (and back on rollback) without the settle wait.
 */
import { randomBytes } from 'node:crypto';
import { API_VERSION, StorageMetrics, StorageProviderToken, definePlugin, type MigrationHookContext, type PluginContext, type PluginDefinition, type Veto } from '@motus/sdk';
import { NasPluginConfigSchema, type NasPluginConfig } from './config.js';
import { locateDisk, type DiskLocation } from './disk-location.js';
import { NasStorageProvider, type HandoverOrder, type NasHostFacts } from './storage-provider.js';
import { fenceWriters } from './writer-fence.js';

export const PLUGIN_NAME = '@motus/storage-nas';
export const PLUGIN_VERSION = '0.1.0';

function isOrder(value: unknown): value is HandoverOrder {
  const v = value as Partial<HandoverOrder> | null;
  return (
    typeof v === 'object' && v !== null && typeof v.vm === 'string' && (v.direction === 'give' || v.direction === 'take') && typeof v.peer === 'string' && typeof v.token === 'string'
  );
}

function setUpAgent(ctx: PluginContext<NasPluginConfig>): Promise<void> {
  const provider = new NasStorageProvider({ host: ctx.host!, config: ctx.config, logger: ctx.logger, fence: (disk) => fenceWriters(disk), metrics: new StorageMetrics(ctx.metrics, 'nas') });
  ctx.provide(StorageProviderToken, provider);
  ctx.reportFacts(() => provider.facts());
  ctx.handle('handover', async (payload) => {
    if (!isOrder(payload)) throw new TypeError('handover wants { vm, direction: give | take, peer, token }');
    provider.handover(payload);
    return { ok: true };
  });
  ctx.handle('handover-clear', async (payload) => {
    provider.clearHandover(String((payload as { vm?: unknown } | null)?.vm));
    return { ok: true };
  });
  ctx.onDispose(() => provider.close());
  // A datastore that cannot be reached is a fact to report, not a reason to fail the agent's start.
  return provider.start();
}

/** The VM's disks that lie on the site's NAS datastores. */
function nasDisks(config: NasPluginConfig, mctx: MigrationHookContext): Array<{ id: string; location: DiskLocation }> {
  return (mctx.vm.spec.disks ?? []).flatMap((disk) => {
    const location = locateDisk(config.datastores, disk.path);
    return location ? [{ id: disk.id, location }] : [];
  });
}

function setUpServer(ctx: PluginContext<NasPluginConfig>): void {
  const { config, logger } = ctx;

  ctx.hooks.validate.tapPromise(PLUGIN_NAME, async (mctx): Promise<Veto | undefined> => {
    const destination = mctx.destination;
    const facts = destination.plugins[PLUGIN_NAME] as Partial<NasHostFacts> | undefined;
    for (const { id, location } of nasDisks(config, mctx)) {
      const seen = facts?.datastores?.find((d) => d.name === location.datastore);
      if (seen?.accessible) continue;
      const why = !facts?.datastores
        ? 'its agent reports no NAS datastores yet'
        : !seen
          ? 'it does not mount it'
          : `it cannot use it: ${seen.error ?? 'not accessible'}`;
      return {
        plugin: PLUGIN_NAME,
        code: 'MOTUS_E_DATASTORE_NOT_VISIBLE',
        reason: `host ${destination.name} does not see datastore ${location.datastore} (${why}), which holds disk ${id} of VM ${mctx.vm.name}`,
        data: { host: destination.name, datastore: location.datastore, disk: id, vm: mctx.vm.name },
      };
    }
    return undefined;
  });

  const order = async (mctx: MigrationHookContext, giver: string, taker: string) => {
    const token = randomBytes(12).toString('hex');
    const vm = mctx.vm.name;
    const results = await Promise.allSettled([
      ctx.callAgent(giver, 'handover', { vm, direction: 'give', peer: taker, token } satisfies HandoverOrder),
      ctx.callAgent(taker, 'handover', { vm, direction: 'take', peer: giver, token } satisfies HandoverOrder),
    ]);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      // Without both halves the lock goes the slow, safe way: released, or stale after the lease.
      logger.warn('could not arrange the lock handover; the lock will be taken the slow way', { vm, from: giver, to: taker, error: String(failed.reason) });
      await clear(vm, [giver, taker]);
    }
  };
  const clear = (vm: string, hosts: string[]) => Promise.allSettled(hosts.map((h) => ctx.callAgent(h, 'handover-clear', { vm })));

  ctx.hooks.prepareDestination.tapPromise(PLUGIN_NAME, async (mctx) => {
    if (nasDisks(config, mctx).length > 0) await order(mctx, mctx.source.name, mctx.destination.name);
  });
  // On rollback the destination gives the lock back (if it got it) to the source, which waits paused for it.
  ctx.hooks.failed.tapPromise(PLUGIN_NAME, async (mctx) => {
    if (nasDisks(config, mctx).length > 0) await order(mctx, mctx.destination.name, mctx.source.name);
  });
  ctx.hooks.cleanup.tapPromise(PLUGIN_NAME, async (mctx) => {
    if (nasDisks(config, mctx).length > 0) await clear(mctx.vm.name, [mctx.source.name, mctx.destination.name]);
  });
}

const plugin: PluginDefinition<NasPluginConfig> = definePlugin<NasPluginConfig>({
  name: PLUGIN_NAME,
  version: PLUGIN_VERSION,
  apiVersion: API_VERSION,
  provides: [StorageProviderToken],
  configSchema: NasPluginConfigSchema,
  setup(ctx) {
    if (ctx.role === 'agent') return setUpAgent(ctx);
    setUpServer(ctx);
  },
});

export default plugin;
