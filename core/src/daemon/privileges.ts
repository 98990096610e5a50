import { accessSync, constants, existsSync } from 'node:fs';
import type { Logger } from '@motus/sdk';

/**
 * motusd needs no root: QEMU, the virtual switches (unix sockets, loopback UDP),
 * the NFS and iSCSI initiators (user-space TCP) and the state folder all work as
 * an ordinary user. What it does need is said at start, so an operator sees why
 * KVM is not used rather than guessing.
 */
export function reportPrivileges(logger: Logger): void {
  const root = process.getuid?.() === 0;
  if (root) {
    logger.warn('motusd runs as root; it does not need to: run it as a user in the kvm group (KVM) that owns the state folder', { uid: 0 });
  }
  if (existsSync('/dev/kvm')) {
    try {
      accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    } catch {
      logger.warn('/dev/kvm exists but this user cannot open it: guests will run under TCG (slow); add the user to the kvm group (usermod -aG kvm USER) to use KVM', {
        uid: process.getuid?.(),
      });
    }
  }
}
