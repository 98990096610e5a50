import { join } from 'node:path';
import type { Platform, PlatformOptions } from '@motus/sdk';
import { HostAgent } from './agent/host-agent.js';
import { createRootContainer } from './kernel/container.js';
import { createLogger } from './kernel/logger.js';
import type { PluginSource } from './kernel/plugin-host.js';
import { loadSiteFile, validateSite } from './site/site-file.js';
import { MotusServer } from './server/motus-server.js';

export interface EmbeddedPlatformOptions extends PlatformOptions {
  /** Plugins given as values, loaded after the site's (tests, embedders' own extensions). */
  extraPlugins?: PluginSource[];
  heartbeatMs?: number;
}

/** A platform whose server and hosts all live in this process. */
export interface EmbeddedPlatform extends Platform {
  readonly server: MotusServer;
  readonly agents: ReadonlyMap<string, HostAgent>;
}

export async function createEmbeddedPlatform(options: EmbeddedPlatformOptions): Promise<EmbeddedPlatform> {
  const site = typeof options.site === 'string' ? loadSiteFile(options.site) : validateSite(options.site);
  const root = createRootContainer();
  const logger = createLogger({ site: site.site, role: 'embedded' });
  const plugins: PluginSource[] = [...site.plugins, ...(options.extraPlugins ?? [])];
  const server = await MotusServer.start({
    stateDir: join(options.stateDir, 'server'),
    logger: logger.child({ role: 'server' }),
    container: root.createChildContainer(),
    migration: site.migration,
    plugins,
    limits: site,
    placement: site.placement,
    ...(options.heartbeatMs === undefined ? {} : { heartbeatMs: options.heartbeatMs }),
  });
  const agents = new Map<string, HostAgent>();
  try {
    for (const host of site.hosts) {
      const agent = await HostAgent.start({
        name: host.name,
        stateDir: join(options.stateDir, 'agents', host.name),
        migrationAddress: host.migrationAddress,
        switchoverWaitMs: site.migration.switchoverWaitSeconds * 1000,
        ...(host.memoryMiB === undefined ? {} : { memoryMiB: host.memoryMiB }),
        sysRoot: host.sysRoot,
        metricsIntervalMs: site.placement.metricsIntervalSeconds * 1000,
        plugins,
        logger: logger.child({ role: 'agent', host: host.name }),
        container: root.createChildContainer(),
      });
      agents.set(host.name, agent);
      await server.addHost(agent);
    }
  } catch (err) {
    await server.stop();
    await Promise.allSettled([...agents.values()].map((a) => a.stop()));
    throw err;
  }
  return {
    server,
    agents,
    migrations$: server.migrations$,
    hosts$: server.hosts$,
    vms$: server.vms$,
    hosts: () => server.hosts(),
    vms: () => server.vms(),
    startVm: (spec, host) => server.startVm(spec, host),
    stopVm: (name) => server.stopVm(name),
    migrate: (request) => server.migrate(request),
    migrations: () => server.migrations(),
    migration: (id) => server.migration(id),
    stop: async () => {
      await server.stop();
      await Promise.allSettled([...agents.values()].map((a) => a.stop()));
      await root.dispose();
    },
  };
}
