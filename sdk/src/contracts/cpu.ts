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

/**
 * One VM against one host, as the validate tap would answer now: the answer of the
 * cpu-compat plugin's `check` method (`motus cpu check VM --to HOST`).
 */
export interface CpuCheck {
  vm: string;
  host: string;
  /** The VM's recorded `-cpu` value. */
  cpu: string;
  compatible: boolean;
  /** The veto's code when refused (MOTUS_E_CPU_INCOMPATIBLE, …_BASELINE, …_PROBE, …). */
  code?: string;
  missing: string[];
  message: string;
}

/**
 * A cluster baseline change as a dry run (cpu-compat's `baseline-impact` method,
 * `motus cpu baseline --dry-run NEW`): the baseline it would give and which running
 * VMs it affects. Nothing changes: the site file's `baseline` stays as it is.
 */
export interface CpuBaselineChange {
  from: string;
  to: string;
  /** Features the new baseline has and the current one lacks, and the other way round. */
  added: string[];
  removed: string[];
  /** Hosts of the cluster that could not provide the new baseline. */
  refused: CpuVerdict[];
  /** Running VMs whose CPU uses features the new baseline lacks: they keep running, but may only move to hosts that have them. */
  beyond: Array<{ vm: string; cpu: string; features: string[] }>;
  /** Running VMs on the current baseline's CPU that would see more features after a restart with the new one. */
  couldGain: Array<{ vm: string; cpu: string; features: string[] }>;
  /** Running VMs the change leaves as they are. */
  unaffected: string[];
}

/** Every VM of the site against every host of the cluster: cpu-compat's `matrix` method (`motus cpu matrix`). */
export interface CpuMatrix {
  /** Hosts judged, in order: the configured cluster, else every host of the site. */
  hosts: string[];
  /** Hosts that take no VM whatever their CPU: no facts yet, a failed probe, the baseline refused. */
  unavailable: Array<{ host: string; code: string; reason: string }>;
  rows: Array<{ vm: string; cpu: string; runsOn?: string; allowed: string[]; refused: Array<{ host: string; code: string; missing: string[]; message: string }> }>;
  distinctCpus: number;
  distinctHosts: number;
}

/** Server side of the CPU compatibility plugin. */
export interface CpuCompatPolicy {
  /** The cluster baseline as a `-cpu` value, and the hosts that cannot provide it. */
  baseline(): Promise<{ cpu: string; features: string[]; refused: CpuVerdict[] }>;
  /** The `-cpu` value to record in VmSpec.cpuModel for a VM with this mask. */
  effectiveCpu(mask?: CpuMask): Promise<string>;
  /**
   * The `-cpu` value a VM created now records when it names no cpuModel: the
   * cluster baseline with `mask` applied, or undefined when the site sets no
   * cluster and no mask is asked (the hypervisor's default CPU stays).
   */
  cpuForNewVm(mask?: CpuMask): Promise<string | undefined>;
  /** Dry run: may a guest with `cpu` run on `host`? */
  check(cpu: string, host: string): Promise<CpuVerdict>;
}

export const CpuCompatPolicyToken = createToken<CpuCompatPolicy>('cpu.compat-policy');
