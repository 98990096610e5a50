/**
 * The kernel and QEMU spell most CPUID features alike, but not all: the kernel
 * uses underscores where QEMU uses dashes (avx512_vpopcntdq / avx512-vpopcntdq)
 * or nothing (avx512_vnni / avx512vnni), dots become underscores (sse4.1 / sse4_1),
 * and a few were named differently on each side. The rules below are tried against
 * the feature names the host's own QEMU reports, so a QEMU that learns a new
 * feature needs no change here; only true renames are listed.
 */

/** Kernel flag → QEMU feature, where no spelling rule gets from one to the other. */
const RENAMED: Readonly<Record<string, string>> = Object.freeze({
  tsc_deadline_timer: 'tsc-deadline',
  pausefilter: 'pause-filter',
  tsxldtrk: 'tsx-ldtrk',
});

function candidates(flag: string): string[] {
  const renamed = RENAMED[flag];
  return [
    ...(renamed ? [renamed] : []),
    flag,
    flag.replace(/_/g, '-'),
    flag.replace(/_/g, ''),
    flag.replace(/_/g, '.'),
  ];
}

export interface FeatureMapping {
  /** Kernel flag → QEMU feature name. */
  toQemu: Map<string, string>;
  /** Kernel flags with no QEMU feature: Linux's own synthetic bits (constant_tsc, nopl, …). */
  linuxOnly: string[];
}

/** Maps kernel flags to the QEMU features in `qemuFeatures` (the names QEMU itself reported). */
export function mapCpuinfoFlags(flags: readonly string[], qemuFeatures: ReadonlySet<string>): FeatureMapping {
  const toQemu = new Map<string, string>();
  const linuxOnly: string[] = [];
  for (const flag of flags) {
    const hit = candidates(flag).find((c) => qemuFeatures.has(c));
    if (hit) toQemu.set(flag, hit);
    else linuxOnly.push(flag);
  }
  return { toQemu, linuxOnly };
}

/** The kernel's spelling of a QEMU feature, for messages read next to /proc/cpuinfo. */
export function kernelSpelling(feature: string, flagsSeen: Iterable<string> = []): string {
  for (const flag of flagsSeen) if (candidates(flag).includes(feature)) return flag;
  for (const [flag, qemu] of Object.entries(RENAMED)) if (qemu === feature) return flag;
  return feature.replace(/[-.]/g, '_');
}
