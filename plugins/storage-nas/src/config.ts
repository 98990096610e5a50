import { z } from 'zod';
import { parseNfsUrl } from './datastore.js';

const DatastoreEntrySchema = z
  .object({
    /** The datastore's name, as VMs and the server see it. */
    name: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'a datastore name is lowercase letters, digits, "-" and "_" (at most 63)'),
    /** nfs://server[:port]/export[?nfsport=N&mountport=M] (libnfs form). */
    url: z.string().superRefine((url, ctx) => {
      try {
        parseNfsUrl(url);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
      }
    }),
    /** Hosts that mount this datastore; every host when absent. */
    hosts: z.array(z.string().min(1)).optional(),
  })
  .strict();

/** The plugin's slice of the site file. */
export const NasPluginConfigSchema = z
  .object({
    datastores: z.array(DatastoreEntrySchema).default([]),
    /** AUTH_SYS credentials of the agent's NFS calls (QEMU's libnfs uses its own process's). */
    uid: z.number().int().min(0).default(0),
    gid: z.number().int().min(0).default(0),
    /** Time limit of one NFS call. */
    timeoutMs: z.number().int().positive().default(10_000),
    /** How often a held lock is refreshed. */
    heartbeatMs: z.number().int().positive().default(3_000),
    /** How long a lock must stay unchanged before another host may take it over. */
    leaseMs: z.number().int().positive().default(15_000),
    /** Wait after creating or taking over a lock before it counts as won (default: 2 × timeoutMs + heartbeatMs). */
    settleMs: z.number().int().min(0).optional(),
    /** How often the datastores' capacity and reachability are refreshed for the host's facts. */
    factsRefreshMs: z.number().int().positive().default(5_000),
  })
  .strict()
  .superRefine((config, ctx) => {
    const seen = new Set<string>();
    config.datastores.forEach((ds, i) => {
      if (seen.has(ds.name)) ctx.addIssue({ code: 'custom', path: ['datastores', i, 'name'], message: `datastore ${ds.name} is listed twice` });
      seen.add(ds.name);
    });
    if (config.leaseMs < 2 * config.heartbeatMs) {
      ctx.addIssue({ code: 'custom', path: ['leaseMs'], message: `leaseMs must be at least two heartbeats (${2 * config.heartbeatMs} ms)` });
    }
  });

export type NasPluginConfig = z.output<typeof NasPluginConfigSchema>;
export type NasDatastoreEntry = z.output<typeof DatastoreEntrySchema>;
