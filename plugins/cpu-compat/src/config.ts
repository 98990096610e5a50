import { z } from 'zod';

const featureList = z.array(z.string().regex(/^[a-z0-9][a-z0-9_.-]*$/, 'a QEMU CPU feature name (e.g. avx2, sse4.2)'));

export const LabLimitsSchema = z
  .object({
    maxModel: z.string().min(1).optional(),
    hideFeatures: featureList.optional(),
    vendor: z.string().min(1).optional(),
  })
  .strict();

export const BaselineSettingSchema = z.union([
  z.literal('auto'),
  z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.+=,-]*$/, 'a CPU model name, optionally with ,-feature switches'),
  z.object({ model: z.string().min(1), add: featureList.optional(), remove: featureList.optional() }).strict(),
]);

export const CpuCompatConfigSchema = z
  .object({
    /** EVC-like cluster baseline. */
    baseline: BaselineSettingSchema.default('auto'),
    /** The hosts the baseline spans (needed for `auto`, which looks at all of them). */
    cluster: z.array(z.string().min(1)).optional(),
    /** Lab and test only: per-host limits that make one machine pass for an older CPU. */
    hosts: z.record(z.string(), LabLimitsSchema).default({}),
    /** What a VM without cpuModel runs with: hv-qemu's default. */
    defaultCpu: z.string().min(1).default('qemu64'),
    qemuBinary: z.string().min(1).default('qemu-system-x86_64'),
    accelerator: z.enum(['auto', 'kvm', 'tcg']).default('auto'),
    probeTimeoutMs: z.number().int().positive().default(30_000),
    /** Where the agent reads the host CPU from (tests point it at recorded profiles). */
    cpuinfoPath: z.string().min(1).default('/proc/cpuinfo'),
  })
  .strict();

export type CpuCompatConfig = z.infer<typeof CpuCompatConfigSchema>;
