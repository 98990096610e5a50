import { createToken } from '../tokens.js';

/**
 * A host's CPU as the cpu-compat plugin reports it (HostInfo.plugins['@motus/cpu-compat']).
 * Feature names are QEMU's spelling (sse4.2, tsc-deadline, avx512-vpopcntdq).
 */
export interface HostCpuFacts {
  host: string;
  /** CPUID vendor string from /proc/cpuinfo (GenuineIntel, AuthenticAMD), or a lab override. */
  vendor: string;
  family: number;
  model: number;
  stepping: number;
  modelName: string;
  /** /proc/cpuinfo flags in the kernel's spelling. */
  cpuinfoFlags: string[];
  /** Kernel flags with a QEMU feature that this host's QEMU still cannot give a guest. */
  cpuinfoNotProvided: string[];
  qemu: { version: string; accelerator: 'kvm' | 'tcg'; hostModel: 'host' | 'max' };
  /** Features a guest can have on this host (QEMU's host/max model, minus lab limits). */
  features: string[];
  /** Lab limits from the plugin config that narrowed `features`, when any. */
  limits?: { maxModel?: string; hideFeatures?: string[]; vendor?: string };
  /** Named models whose every feature this host provides. */
  runnableModels: string[];
  /** Whether this host can provide the configured baseline (named and custom baselines). */
  baseline?: CpuBaselineFit;
}

export interface CpuBaselineFit {
  cpu: string;
  ok: boolean;
  missing: string[];
  vendorMismatch?: { baseline: string; host: string };
}

/** The answer to "can a guest with this CPU run on that host?". */
export interface CpuVerdict {
  compatible: boolean;
  host: string;
  /** The `-cpu` value judged. */
  cpu: string;
  /** Features the CPU uses that the host lacks (QEMU spelling), sorted. */
  missing: string[];
  vendorMismatch?: { cpu: string; host: string };
  /** One sentence a person can act on. */
  message: string;
}

/** A per-VM mask on top of the cluster baseline. */
export interface CpuMask {
  /** Features to hide from the guest. */
  hide?: string[];
  /** Use this named model instead of the baseline's (it must lie within the baseline). */
  pinModel?: string;
}

/** Server side of the CPU compatibility plugin. */
export interface CpuCompatPolicy {
  /** The cluster baseline as a `-cpu` value, and the hosts that cannot provide it. */
  baseline(): Promise<{ cpu: string; features: string[]; refused: CpuVerdict[] }>;
  /** The `-cpu` value to record in VmSpec.cpuModel for a VM with this mask. */
  effectiveCpu(mask?: CpuMask): Promise<string>;
  /** Dry run: may a guest with `cpu` run on `host`? */
  check(cpu: string, host: string): Promise<CpuVerdict>;
}

export const CpuCompatPolicyToken = createToken<CpuCompatPolicy>('cpu.compat-policy');
