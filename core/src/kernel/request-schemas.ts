import { z } from 'zod';
import { MotusError, type MigrationRequest, type VmSpec } from '@motus/sdk';

const name = z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$/, 'letters, digits, dot, dash and underscore, at most 63');
/** A VM tag: what schedules select VMs by. */
export const tagSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'a tag of letters, digits, dot, dash and underscore, at most 63');
const mac = z.string().regex(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/, 'a lowercase MAC such as 52:54:00:12:34:56');

export const VmSpecSchema = z
  .object({
    name,
    memoryMiB: z.number().int().min(16).max(1 << 20),
    vcpus: z.number().int().min(1).max(288),
    cpuModel: z.string().regex(/^[A-Za-z0-9_.+,=-]+$/).optional(),
    cpuMask: z
      .object({
        hide: z.array(z.string().regex(/^[a-z0-9][a-z0-9_.-]*$/, 'a QEMU CPU feature name (e.g. avx2, sse4.2)')).optional(),
        pinModel: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'a QEMU CPU model name').optional(),
      })
      .strict()
      .optional(),
    machine: z.string().regex(/^[a-z0-9._-]+$/).optional(),
    boot: z.discriminatedUnion('kind', [
      z.object({ kind: z.literal('kernel'), kernel: z.string().min(1), initrd: z.string().min(1).optional(), cmdline: z.string().optional() }).strict(),
      z.object({ kind: z.literal('disk') }).strict(),
    ]),
    disks: z
      .array(z.object({ id: name, path: z.string().min(1), format: z.enum(['raw', 'qcow2']), readOnly: z.boolean().optional() }).strict())
      .optional(),
    nics: z.array(z.object({ id: name, mac, network: name }).strict()).optional(),
    tags: z.array(tagSchema).max(32).optional(),
  })
  .strict();

export const MigrationRequestSchema = z
  .object({
    vm: z.string().min(1),
    destination: z.string().min(1),
    requestedBy: z.string().min(1).max(128).optional(),
    priority: z.enum(['high', 'normal']).optional(),
    ignoreRules: z.boolean().optional(),
  })
  .strict();

/** Without a host, initial placement picks one (partial and automatic clusters). */
export const StartVmRequestSchema = z.object({ spec: VmSpecSchema, host: z.string().min(1).optional() }).strict();

export const StartVmPlacementSchema = z.object({ spec: VmSpecSchema }).strict();

/** Parses `value` with `schema`, or throws MOTUS_E_INVALID_REQUEST naming each bad field. */
export function parseRequest<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const problems = result.error.issues.map((i) => `${i.path.map(String).join('.') || '(body)'}: ${i.message}`);
  throw new MotusError('MOTUS_E_INVALID_REQUEST', `invalid ${what}: ${problems.join('; ')}`, { problems });
}

export function parseVmSpec(value: unknown): VmSpec {
  return parseRequest(VmSpecSchema, value, 'VM spec') as VmSpec;
}

export function parseMigrationRequest(value: unknown): MigrationRequest {
  return parseRequest(MigrationRequestSchema, value, 'migration request');
}
