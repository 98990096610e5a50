import { z } from 'zod';
import { normalizeLunWwn } from './names.js';

const Wwn = z.string().transform((text, ctx) => {
  const r = normalizeLunWwn(text);
  if (!r.ok) {
    ctx.addIssue({ code: 'custom', message: r.reason });
    return z.NEVER;
  }
  return r.value;
});

const DatastoreEntrySchema = z
  .object({
    /** The datastore's name, as VMs and the server see it. */
    name: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'a datastore name is lowercase letters, digits, "-" and "_" (at most 63)'),
    /** The LUNs that make the datastore, by WWN (0x6…, naa.6…, wwn-0x6… or the multipath WWID 36…). */
    luns: z.array(Wwn).min(1, 'an FC datastore has at least one LUN'),
    /** Hosts zoned to see it; every host when absent. */
    hosts: z.array(z.string().min(1)).optional(),
  })
  .strict();

/** The plugin's slice of the site file. */
export const FcPluginConfigSchema = z
  .object({
    datastores: z.array(DatastoreEntrySchema).default([]),
    /** Where sysfs is; `{host}` is replaced by the host's name (test fixtures give each host its own tree). */
    sysRoot: z.string().min(1).default('/sys'),
    /** Where udev's device nodes and /dev/disk links are; `{host}` as above. */
    devRoot: z.string().min(1).default('/dev'),
    /**
     * Ownership by SCSI-3 persistent reservations: `required` refuses to start a VM
     * whose LUN takes no SCSI commands; `if-supported` runs it unprotected and says
     * so in the facts (a loop device standing in for a LUN); `off` never issues any.
     */
    reservations: z.enum(['required', 'if-supported', 'off']).default('required'),
    /** The sg_persist binary (Debian sg3-utils). */
    sgPersist: z.string().min(1).default('sg_persist'),
    /** Time limit of one sg_persist run. */
    commandTimeoutMs: z.number().int().positive().default(30_000),
    /** Time limit of one SCSI host rescan. */
    rescanTimeoutMs: z.number().int().positive().default(60_000),
    /** Rescan a destination that does not see a VM's LUN before refusing the migration. */
    rescanBeforeMigration: z.boolean().default(true),
    /** How often sysfs is read again for the facts. */
    factsRefreshMs: z.number().int().positive().default(5_000),
  })
  .strict()
  .superRefine((config, ctx) => {
    const names = new Set<string>();
    const owner = new Map<string, string>();
    config.datastores.forEach((d, i) => {
      if (names.has(d.name)) ctx.addIssue({ code: 'custom', message: `datastore name ${d.name} is used twice`, path: ['datastores', i, 'name'] });
      names.add(d.name);
      d.luns.forEach((wwn, j) => {
        const other = owner.get(wwn);
        if (other !== undefined) ctx.addIssue({ code: 'custom', message: `LUN ${wwn} is in datastores ${other} and ${d.name}`, path: ['datastores', i, 'luns', j] });
        owner.set(wwn, d.name);
      });
    });
  });

export type FcPluginConfig = z.output<typeof FcPluginConfigSchema>;
export type FcDatastoreConfig = FcPluginConfig['datastores'][number];

/** A configured root for one host: `{host}` becomes the host's name. */
export function rootFor(template: string, host: string): string {
  return template.replaceAll('{host}', host);
}
