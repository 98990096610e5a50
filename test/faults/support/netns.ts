/**
 * Hosts in their own network namespaces, for fault tests that cut links (we run as
 * root). The root namespace keeps a bridge, 169.254.0.1/24, where the server and the
 * storage servers listen; each host namespace joins it by a veth pair (management and
 * storage, 169.254.0.2, .3, …) and the two hosts have a direct veth pair of their own
 * for migration streams (169.254.3.1 / 169.254.3.2). A link is cut with
 * `ip link set … down` and restored with `up`.
 */
import { execFileSync } from 'node:child_process';
import { requireCommand } from '../../support/index.js';

export const BRIDGE_ADDRESS = '169.254.0.1';

export interface HostNs {
  name: string;
  ns: string;
  /** Address on the management and storage network. */
  address: string;
  /** Address on the migration link between the two hosts. */
  migrationAddress: string;
}

export type LinkName = 'a-b' | 'a-mgmt' | 'b-mgmt';

export interface Fabric {
  hosts: [HostNs, HostNs];
  cut(link: LinkName): void;
  restore(link: LinkName): void;
  /** Restores every link (between fault runs). */
  restoreAll(): void;
  teardown(): void;
}

function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Fails with an install or privilege hint when namespaces cannot be made here. */
export function requireNamespaces(): void {
  requireCommand('ip', 'iproute2');
  if (process.getuid?.() !== 0) throw new Error('the fault matrix puts hosts in network namespaces and needs root (run the tests as root)');
}

export function createFabric(tag = `${process.pid % 10000}`): Fabric {
  requireNamespaces();
  const bridge = `mfbr${tag}`;
  const hosts: [HostNs, HostNs] = [
    { name: 'host-a', ns: `mf${tag}-a`, address: '169.254.0.2', migrationAddress: '169.254.3.1' },
    { name: 'host-b', ns: `mf${tag}-b`, address: '169.254.0.3', migrationAddress: '169.254.3.2' },
  ];
  const rootSide = (i: number) => `mf${tag}${'ab'[i]}`;
  const teardown = () => {
    for (const cmd of [['link', 'del', bridge], ['link', 'del', rootSide(0)], ['link', 'del', rootSide(1)], ['netns', 'del', hosts[0].ns], ['netns', 'del', hosts[1].ns]]) {
      try {
        ip(cmd);
      } catch {
        /* already gone */
      }
    }
  };
  teardown();
  try {
    ip(['link', 'add', bridge, 'type', 'bridge']);
    ip(['addr', 'add', `${BRIDGE_ADDRESS}/24`, 'dev', bridge]);
    ip(['link', 'set', bridge, 'up']);
    hosts.forEach((h, i) => {
      ip(['netns', 'add', h.ns]);
      ip(['-n', h.ns, 'link', 'set', 'lo', 'up']);
      ip(['link', 'add', rootSide(i), 'type', 'veth', 'peer', 'name', 'mgmt', 'netns', h.ns]);
      ip(['link', 'set', rootSide(i), 'master', bridge, 'up']);
      ip(['-n', h.ns, 'addr', 'add', `${h.address}/24`, 'dev', 'mgmt']);
      ip(['-n', h.ns, 'link', 'set', 'mgmt', 'up']);
    });
    ip(['-n', hosts[0].ns, 'link', 'add', 'mig', 'type', 'veth', 'peer', 'name', 'mig', 'netns', hosts[1].ns]);
    hosts.forEach((h) => {
      ip(['-n', h.ns, 'addr', 'add', `${h.migrationAddress}/24`, 'dev', 'mig']);
      ip(['-n', h.ns, 'link', 'set', 'mig', 'up']);
    });
  } catch (err) {
    teardown();
    throw new Error(`cannot build the host namespaces: ${(err as { stderr?: Buffer }).stderr?.toString() ?? (err as Error).message}`);
  }
  const device = (link: LinkName): string[] => (link === 'a-b' ? ['-n', hosts[0].ns, 'link', 'set', 'mig'] : ['link', 'set', rootSide(link === 'a-mgmt' ? 0 : 1)]);
  const set = (link: LinkName, state: 'up' | 'down') => ip([...device(link), state]);
  return {
    hosts,
    cut: (link) => set(link, 'down'),
    restore: (link) => set(link, 'up'),
    restoreAll: () => (['a-b', 'a-mgmt', 'b-mgmt'] as const).forEach((l) => set(l, 'up')),
    teardown,
  };
}
