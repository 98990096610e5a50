import { z } from 'zod';
import { parsePortal } from './connection.js';

const IQN = /^(iqn\.\d{4}-\d{2}\.[^\s]+|eui\.[0-9A-Fa-f]{16}|naa\.[0-9A-Fa-f]{16,32})$/;

const ChapSchema = z.object({ user: z.string().min(1), secret: z.string().min(1) }).strict();

const DatastoreEntrySchema = z
  .object({
    /** The datastore's name, as VMs and the server see it. */
    name: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'a datastore name is lowercase letters, digits, "-" and "_" (at most 63)'),
    /** host[:port] of the target portal (3260 when absent). */
    portal: z.string().superRefine((portal, ctx) => {
      try {
        parsePortal(portal);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
      }
    }),
    /** The target's iSCSI name; each of its disk LUNs is a VM disk. */
    target: z.string().regex(IQN, 'a target name is an iqn., eui. or naa. name'),
    /** Hosts that see this datastore; every host when absent. */
    hosts: z.array(z.string().min(1)).optional(),
    /** CHAP credentials of the agents' sessions (the target's incoming account). */
    chap: ChapSchema.optional(),
    /** The target's own credentials, for mutual CHAP. */
    mutualChap: ChapSchema.optional(),
  })
  .strict()
  .refine((d) => !d.mutualChap || d.chap, { message: 'mutualChap needs chap too', path: ['mutualChap'] });

/** The plugin's slice of the site file. */
export const IscsiPluginConfigSchema = z
  .object({
    datastores: z.array(DatastoreEntrySchema).default([]),
    /** Each host's initiator name is `<initiatorPrefix>:<host>`. */
    initiatorPrefix: z.string().regex(/^iqn\.\d{4}-\d{2}\.[^\s:]+$/, 'an initiator prefix is iqn.YYYY-MM.reversed.domain').default('iqn.2026-01.org.motus'),
    /** Time limit of one SCSI command of the agents' own sessions. */
    commandTimeoutMs: z.number().int().positive().default(10_000),
    /** How long a lost connection may take to come back before its commands fail. */
    reconnectTimeoutMs: z.number().int().positive().default(15_000),
    /** How often a held LUN's registrations are read back to notice a lost lease. */
    leaseCheckMs: z.number().int().positive().default(2_000),
    /** How often the LUNs (size, identity, registered keys) are scanned for the facts. */
    factsRefreshMs: z.number().int().positive().default(5_000),
  })
  .strict()
  .superRefine((config, ctx) => {
    const seen = new Set<string>();
    config.datastores.forEach((d, i) => {
      if (seen.has(d.name)) ctx.addIssue({ code: 'custom', message: `datastore name ${d.name} is used twice`, path: ['datastores', i, 'name'] });
      seen.add(d.name);
    });
  });

export type IscsiPluginConfig = z.output<typeof IscsiPluginConfigSchema>;
export type IscsiDatastoreConfig = IscsiPluginConfig['datastores'][number];
