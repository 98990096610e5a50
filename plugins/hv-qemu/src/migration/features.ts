import type { MigrationFeatures } from '@motus/sdk';

/**
 * The convergence features QEMU offers under an accelerator. dirty-limit needs
 * KVM's dirty ring (QEMU: "dirty-limit requires KVM with accelerator property
 * 'dirty-ring-size' set"); Motus launches KVM guests without one and TCG has no
 * dirty ring at all, so it is never offered: throttling is auto-converge's.
 */
export function migrationFeatures(accelerator: string): MigrationFeatures {
  return {
    available: ['auto-converge', 'xbzrle', 'multifd', 'postcopy'],
    unavailable: {
      'dirty-limit':
        accelerator === 'kvm'
          ? 'QEMU is launched without a KVM dirty ring (accelerator property dirty-ring-size), which dirty-limit needs'
          : `the ${accelerator} accelerator has no dirty ring; QEMU's dirty-limit works only under KVM with one`,
    },
  };
}
