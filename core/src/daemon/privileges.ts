import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { userInfo } from 'node:os';
import { MotusError, type Logger } from '@motus/sdk';

/** Bit of CAP_NET_BIND_SERVICE in /proc/self/status's CapEff. */
const CAP_NET_BIND_SERVICE = 10n;

export interface PrivilegeNeeds {
  /** The state folder motusd writes (created when missing). */
  stateDir: string;
  /** host:port addresses it will listen on. */
  listen?: string[];
}

function who(): string {
  const uid = process.getuid?.();
  let name = String(uid);
  try {
    name = userInfo().username;
  } catch {
    /* a uid with no passwd entry */
  }
  return `user ${name} (uid ${uid})`;
}

function canWrite(path: string): boolean {
  try {
    accessSync(path, constants.W_OK | constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The folder that decides whether `dir` can be made: itself when it exists, else its nearest existing parent. */
function nearestExisting(dir: string): string {
  let at = resolve(dir);
  while (!existsSync(at) && dirname(at) !== at) at = dirname(at);
  return at;
}

function canBindLowPorts(): boolean {
  try {
    const caps = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (caps && (BigInt(`0x${caps[1]}`) >> CAP_NET_BIND_SERVICE) & 1n) return true;
  } catch {
    /* not Linux: judged by the port alone */
  }
  return false;
}

function unprivilegedPortStart(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8').trim());
  } catch {
    return 1024;
  }
}

/**
 * What motusd needs from the system as the user it runs as, checked before it
 * starts anything: each missing thing with how to give it. Root has them all.
 */
export function missingPrivileges(needs: PrivilegeNeeds): string[] {
  if (process.getuid?.() === 0) return [];
  const missing: string[] = [];
  const state = resolve(needs.stateDir);
  const decider = nearestExisting(state);
  if (!canWrite(decider)) {
    missing.push(
      decider === state
        ? `the state folder ${state} is not writable by ${who()}: chown it to this user (chown -R ${userInfo().username} ${state}) or choose another --state`
        : `the state folder ${state} cannot be created: ${decider} is not writable by ${who()} (or a folder above it cannot be entered); create ${state} owned by this user or choose another --state`,
    );
  }
  const lowest = unprivilegedPortStart();
  for (const address of needs.listen ?? []) {
    const port = Number(address.slice(address.lastIndexOf(':') + 1));
    if (port > 0 && port < lowest && !canBindLowPorts()) {
      missing.push(`listening on ${address} needs CAP_NET_BIND_SERVICE below port ${lowest}: pick a port from ${lowest} up, or grant it (setcap cap_net_bind_service=+ep $(command -v node))`);
    }
  }
  return missing;
}

/** Refuses to start, with every missing thing at once, when this user lacks what motusd needs. */
export function requirePrivileges(needs: PrivilegeNeeds): void {
  const missing = missingPrivileges(needs);
  if (missing.length > 0) {
    throw new MotusError('MOTUS_E_PRIVILEGES', `motusd cannot run as ${who()}: ${missing.join('; ')}`, { uid: process.getuid?.(), missing });
  }
}

/**
 * motusd needs no root: QEMU, the virtual switches (unix sockets, loopback UDP),
 * the NFS and iSCSI initiators (user-space TCP) and the state folder all work as
 * an ordinary user. What it does need is said at start, so an operator sees why
 * KVM is not used rather than guessing.
 */
export function reportPrivileges(logger: Logger): void {
  const uid = process.getuid?.();
  if (uid === 0) {
    logger.warn('motusd runs as root; it does not need to: run it as a user in the kvm group (KVM) that owns the state folder', { uid: 0 });
  } else {
    logger.info('motusd runs without root', { user: who() });
  }
  if (!existsSync('/dev/kvm')) {
    logger.info('no /dev/kvm on this machine: guests run under TCG (slow); KVM needs the kvm module and hardware virtualisation', { uid });
    return;
  }
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    logger.warn('/dev/kvm exists but this user cannot open it: guests will run under TCG (slow); add the user to the kvm group (usermod -aG kvm USER) to use KVM', { uid });
  }
}
