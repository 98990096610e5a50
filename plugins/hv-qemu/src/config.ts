import { z } from 'zod';

/** The plugin's slice of the site file. */
export const QemuPluginConfigSchema = z
  .object({
    /** 'auto' uses KVM only if a test guest really runs under it; MOTUS_ACCEL overrides. */
    accelerator: z.enum(['auto', 'kvm', 'tcg']).default('auto'),
    /** Name on PATH or absolute path of the QEMU system emulator. */
    qemuBinary: z.string().min(1).default('qemu-system-x86_64'),
    /** Time limit of one QMP command. */
    qmpTimeoutMs: z.number().int().positive().default(10_000),
    /** Time limit for QEMU to start and answer on its QMP socket. */
    startTimeoutMs: z.number().int().positive().default(15_000),
    /** Time limit for the KVM probe guest to print its marker. */
    probeTimeoutMs: z.number().int().positive().default(5_000),
    /**
     * Initiator name QEMU's libiscsi logs in with for iscsi:// disks, `{host}` being
     * this host's name (targets that admit hosts by name need it); QEMU's default
     * (iqn.2008-11.org.linux-kvm:<vm>) when absent.
     */
    iscsiInitiatorName: z.string().regex(/^(iqn\.|eui\.|naa\.)\S+$/, 'an iSCSI name starts with iqn., eui. or naa.').optional(),
  })
  .strict();

export type QemuPluginConfig = z.output<typeof QemuPluginConfigSchema>;
