import { dirname } from 'node:path';
import type { VmSpec } from '@motus/sdk';
import type { SiteConfig } from '../../site/site-schema.js';

/** What the limits are drawn from: the site file's hosts, networks, datastores and task defaults. */
export type LimitsSite = Pick<SiteConfig, 'hosts' | 'networks' | 'datastores' | 'tasks'>;

/** vMotion's cost model: 4 concurrent migrations on a network below 10 Gbit/s, 8 from 10 Gbit/s. */
export function defaultNetworkLimit(gbps: number): number {
  return gbps >= 10 ? 8 : 4;
}

/**
 * Turns a migration into the resource keys it holds while it runs, and says how
 * many of each may be held at once:
 * - `host:NAME` for its source and its destination (in or out count alike);
 * - `net:NAME` for the migration network of each side (once when they share it);
 * - `ds:NAME` for each datastore holding one of its disks: the site's datastore with
 *   the longest matching `pathPrefix`, or else the disk's folder as a datastore of
 *   its own with the default limit;
 * - `up:NAME` for each side, full while that host is not connected, so a task waits
 *   for its hosts instead of failing.
 */
export class MigrationResources {
  private readonly hostLimit = new Map<string, number>();
  private readonly hostNetwork = new Map<string, string>();
  private readonly networkLimit = new Map<string, number>([['default', defaultNetworkLimit(1)]]);
  private readonly datastores: Array<{ name: string; prefix: string; limit: number }>;

  constructor(
    private readonly site: LimitsSite,
    private readonly hostUp: (host: string) => boolean,
  ) {
    for (const network of site.networks) this.networkLimit.set(network.name, network.maxMigrations ?? defaultNetworkLimit(network.gbps));
    for (const host of site.hosts) {
      if (host.maxMigrations !== undefined) this.hostLimit.set(host.name, host.maxMigrations);
      this.hostNetwork.set(host.name, host.migrationNetwork);
    }
    this.datastores = site.datastores
      .map((ds) => ({ name: ds.name, prefix: ds.pathPrefix, limit: ds.maxMigrations ?? site.tasks.maxPerDatastore }))
      .sort((a, b) => b.prefix.length - a.prefix.length);
  }

  keysFor(spec: Pick<VmSpec, 'disks'>, source: string, destination: string): string[] {
    const keys = new Set<string>([`up:${source}`, `up:${destination}`, `host:${source}`, `host:${destination}`]);
    keys.add(`net:${this.hostNetwork.get(source) ?? 'default'}`);
    keys.add(`net:${this.hostNetwork.get(destination) ?? 'default'}`);
    for (const disk of spec.disks ?? []) keys.add(`ds:${this.datastoreOf(disk.path)}`);
    return [...keys];
  }

  datastoreOf(path: string): string {
    return this.datastores.find((ds) => path.startsWith(ds.prefix))?.name ?? dirname(path);
  }

  capacity(key: string): number {
    if (key.startsWith('up:')) return this.hostUp(key.slice(3)) ? Number.POSITIVE_INFINITY : 0;
    // Limits other than hosts being up come from the site file and never change: computed once per key.
    let limit = this.fixed.get(key);
    if (limit === undefined) this.fixed.set(key, (limit = this.limitOf(key)));
    return limit;
  }

  private readonly fixed = new Map<string, number>();

  private limitOf(key: string): number {
    const colon = key.indexOf(':');
    const kind = key.slice(0, colon);
    const name = key.slice(colon + 1);
    switch (kind) {
      case 'up':
        return this.hostUp(name) ? Number.POSITIVE_INFINITY : 0;
      case 'host':
        return this.hostLimit.get(name) ?? this.site.tasks.maxPerHost;
      case 'net':
        return this.networkLimit.get(name) ?? defaultNetworkLimit(1);
      case 'ds':
        return this.datastores.find((ds) => ds.name === name)?.limit ?? this.site.tasks.maxPerDatastore;
      default:
        return Number.POSITIVE_INFINITY;
    }
  }
}
