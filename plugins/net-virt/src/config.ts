import { z } from 'zod';
import { MAX_VNI } from './vxlan.js';
import { parseEndpoint } from './vxlan-uplink.js';

const vtep = z.string().refine((s) => parseEndpoint(s) !== undefined, { message: "expected '<IPv4>:<port>', e.g. '127.0.0.1:4789'" });

export const netVirtConfigSchema = z
  .object({
    /** Networks (port groups) every host offers: one VNI each, optionally a VLAN id carried on the uplink. */
    networks: z.record(
      z.string().regex(/^[A-Za-z][A-Za-z0-9_.-]{0,31}$/, 'a network name starts with a letter, at most 32 letters, digits, _ . -'),
      z.object({ vni: z.number().int().min(1).max(MAX_VNI), vlan: z.number().int().min(1).max(4094).optional() }).strict(),
    ),
    /** Each host's VXLAN endpoint. A host missing here has no uplink; with none, switches stay local. */
    hosts: z.record(z.string().min(1), z.object({ vtep }).strict()).default({}),
    macAgingSeconds: z.number().positive().default(300),
    macTableSize: z.number().int().min(16).default(8192),
    /** Frames and bytes a port may hold while its reader does not keep up. */
    portQueueFrames: z.number().int().min(1).default(512),
    portQueueBytes: z.number().int().min(2048).default(1 << 20),
    /** QEMU reconnects to its port this often when the switch went away (agent restart). */
    reconnectMs: z.number().int().min(0).default(1000),
    /** How long the announce step waits for every switch to reach a moved MAC through its new host. */
    announceTimeoutMs: z.number().int().min(100).default(10_000),
    announcePollMs: z.number().int().min(10).default(50),
    /**
     * How long the source switch holds frames for a VM stopped to move while its MAC
     * has not yet shown up on the destination; 0 turns holding off (frames for the
     * stopped VM go to its port and are lost with the source process, as with a plain switch).
     */
    switchoverHoldMs: z.union([z.literal(0), z.number().int().min(100).max(600_000)]).default(10_000),
  })
  .strict()
  .superRefine((config, ctx) => {
    const seen = new Map<string, string>();
    for (const [name, n] of Object.entries(config.networks)) {
      const key = `${n.vni}/${n.vlan ?? 0}`;
      const other = seen.get(key);
      if (other) ctx.addIssue({ code: 'custom', path: ['networks', name], message: `network ${name} has the same VNI and VLAN as ${other}` });
      seen.set(key, name);
    }
    const endpoints = new Map<string, string>();
    for (const [host, h] of Object.entries(config.hosts)) {
      const other = endpoints.get(h.vtep);
      if (other) ctx.addIssue({ code: 'custom', path: ['hosts', host, 'vtep'], message: `host ${host} has the same VXLAN endpoint as ${other}` });
      endpoints.set(h.vtep, host);
    }
  });

export type NetVirtConfig = z.output<typeof netVirtConfigSchema>;
