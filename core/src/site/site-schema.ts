import { z } from 'zod';
import { checkPlacement } from './placement-checks.js';
import { PlacementSchema } from './placement-schema.js';

const hostName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'a host name is lowercase letters, digits and dashes (at most 63)');

/** "address:port", port 0 meaning any free port. */
export const listenAddress = z
  .string()
  .regex(/^[0-9a-zA-Z.:[\]-]+:\d{1,5}$/, "expected 'address:port', e.g. 127.0.0.1:7300")
  .refine((value) => Number(value.slice(value.lastIndexOf(':') + 1)) <= 65535, 'port must be at most 65535');

export const HostConfigSchema = z
  .object({
    name: hostName,
    /** Address the agent's API listens on. */
    listen: listenAddress.default('127.0.0.1:0'),
    /** Address this host receives migration streams on. */
    migrationAddress: z.string().min(1).default('127.0.0.1'),
    /** Memory offered to VMs; the host's physical memory when absent. */
    memoryMiB: z.number().int().positive().optional(),
    /** Concurrent migrations into or out of this host (tasks.maxPerHost when absent). */
    maxMigrations: z.number().int().positive().optional(),
    /** The migration network (one of `networks`) its migration streams use. */
    migrationNetwork: z.string().min(1).default('default'),
    /** Where the agent reads ECC and thermal state (EDAC, thermal zones); another root for tests. */
    sysRoot: z.string().min(1).default('/sys'),
    /** false keeps this host out of encrypted migration: it gets no QEMU TLS credentials. */
    migrationTls: z.boolean().default(true),
  })
  .strict();

export const NetworkConfigSchema = z
  .object({
    name: z.string().min(1),
    /** Link speed; sets the default limit: 4 below 10 Gbit/s, 8 from 10 Gbit/s. */
    gbps: z.number().positive(),
    maxMigrations: z.number().int().positive().optional(),
  })
  .strict();

export const DatastoreConfigSchema = z
  .object({
    name: z.string().min(1),
    /** Disks whose path starts with this prefix are on this datastore. */
    pathPrefix: z.string().min(1),
    maxMigrations: z.number().int().positive().optional(),
  })
  .strict();

export const TasksConfigSchema = z
  .object({
    maxPerHost: z.number().int().positive().default(8),
    maxPerDatastore: z.number().int().positive().default(128),
    /** No starvation: after this many high tasks in a row started while a normal one waited, a normal one goes. */
    highPriorityBurst: z.number().int().positive().default(4),
    /** A schedule run missed while the server was down still runs at start if it is at most this late. */
    missedRunGraceSeconds: z.number().int().nonnegative().default(3600),
  })
  .strict();

export const PluginEntrySchema = z
  .object({
    package: z.string().min(1),
    config: z.record(z.string(), z.unknown()).default({}),
  })
  .strict();

export const ConvergenceConfigSchema = z
  .object({
    /** Switchover target a migration starts with, ms (the hypervisor's downtime limit). */
    switchoverTargetMs: z.number().int().positive().default(100),
    /** The target is raised by at most this factor per step, up to migration.downtimeLimitMs. */
    switchoverStepFactor: z.number().min(1.1).max(4).default(1.5),
    /** vCPU throttle: first level and raise per step, % of vCPU time taken away. */
    throttleStepPct: z.number().int().min(1).max(99).default(20),
    /** Highest vCPU throttle the policy may reach, %. */
    throttleMaxPct: z.number().int().min(1).max(99).default(99),
    /** Delta compression of re-sent pages: 'auto' arms it with a probe cache and keeps it only where pages compress well. */
    xbzrle: z.enum(['auto', 'off']).default('auto'),
    /** Parallel streams: 'auto' picks the channel count from cores and bandwidth, 'off', or a fixed count. */
    multifd: z.union([z.enum(['auto', 'off']), z.number().int().min(2).max(16)]).default('auto'),
    /**
     * Post-copy as a last resort. Off by default: once switched, a failure of either
     * host or of the link loses the VM (no rollback is possible).
     */
    postcopy: z.boolean().default(false),
  })
  .strict();

export const MigrationConfigSchema = z
  .object({
    /** Per-migration bandwidth cap handed to the hypervisor, MiB/s (QEMU's own default is 128): leaves the link to VM traffic too. */
    maxBandwidthMiBps: z.number().positive().default(1024),
    /** Longest switchover the convergence policy may raise the target to, ms. */
    downtimeLimitMs: z.number().int().positive().default(300),
    convergence: ConvergenceConfigSchema.prefault({}),
    /** A migration is aborted and rolled back after base + perGiB × memory. */
    timeoutBaseSeconds: z.number().positive().default(120),
    timeoutSecondsPerGiB: z.number().positive().default(240),
    /**
     * How long a source agent waits, paused at switchover, for the server's order to
     * go on; after that it settles the VM's ownership itself through the storage
     * lease (docs/reliability.md).
     */
    switchoverWaitSeconds: z.number().positive().default(30),
    /**
     * TLS for migration streams (vMotion's encrypted vMotion modes): disabled,
     * opportunistic (TLS when both hosts have credentials) or required (a migration
     * with a host lacking them is refused before anything starts).
     */
    encryption: z.enum(['disabled', 'opportunistic', 'required']).default('opportunistic'),
  })
  .strict();

export const SiteSchema = z
  .object({
    site: z.string().min(1).default('motus'),
    server: z
      .object({
        listen: listenAddress.default('127.0.0.1:0'),
        /** Failed authentications one client address may make in a window before it gets 429. */
        authFailures: z
          .object({ maxFailures: z.number().int().positive().default(20), windowSeconds: z.number().int().positive().default(60) })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    hosts: z
      .array(HostConfigSchema)
      .min(1, 'a site needs at least one host')
      .superRefine((hosts, ctx) => {
        const seen = new Set<string>();
        hosts.forEach((host, index) => {
          if (seen.has(host.name)) ctx.addIssue({ code: 'custom', message: `host name '${host.name}' is used twice`, path: [index, 'name'] });
          seen.add(host.name);
        });
      }),
    plugins: z.array(PluginEntrySchema).default([{ package: '@motus/hv-qemu', config: {} }]),
    migration: MigrationConfigSchema.prefault({}),
    tasks: TasksConfigSchema.prefault({}),
    /** Migration networks; a network named 'default' at 1 Gbit/s exists unless listed. */
    networks: z.array(NetworkConfigSchema).default([]),
    datastores: z.array(DatastoreConfigSchema).default([]),
    /** Clusters, resource pools, affinity rules, balancing and the health policy (docs/placement.md). */
    placement: PlacementSchema.prefault({}),
  })
  .strict()
  .superRefine((site, ctx) => {
    const networks = new Set(['default']);
    site.networks.forEach((network, index) => {
      if (network.name !== 'default' && networks.has(network.name)) ctx.addIssue({ code: 'custom', message: `network name '${network.name}' is used twice`, path: ['networks', index, 'name'] });
      networks.add(network.name);
    });
    site.hosts.forEach((host, index) => {
      if (!networks.has(host.migrationNetwork)) {
        ctx.addIssue({ code: 'custom', message: `no network named '${host.migrationNetwork}' in networks`, path: ['hosts', index, 'migrationNetwork'] });
      }
    });
    const datastores = new Set<string>();
    site.datastores.forEach((ds, index) => {
      if (datastores.has(ds.name)) ctx.addIssue({ code: 'custom', message: `datastore name '${ds.name}' is used twice`, path: ['datastores', index, 'name'] });
      datastores.add(ds.name);
    });
    for (const issue of checkPlacement(site.placement, site.hosts)) ctx.addIssue({ code: 'custom', message: issue.message, path: issue.path });
  });

export type SiteConfig = z.infer<typeof SiteSchema>;
export type HostConfig = z.infer<typeof HostConfigSchema>;
export type PluginEntry = z.infer<typeof PluginEntrySchema>;
export type MigrationConfig = z.infer<typeof MigrationConfigSchema>;
export type ConvergenceConfig = z.infer<typeof ConvergenceConfigSchema>;
export type TasksConfig = z.infer<typeof TasksConfigSchema>;
export type NetworkConfig = z.infer<typeof NetworkConfigSchema>;
export type DatastoreConfig = z.infer<typeof DatastoreConfigSchema>;
