/**
 * Hosts in their own network namespaces, for fault tests that cut links (we run as
 * root). The root namespace keeps a bridge, 169.254.0.1/24, where the server and the
 * storage servers listen; each host namespace joins it by a veth pair (management and
 * storage, 169.254.0.2, .3, …) and the two hosts have a direct veth pair of their own
 * for migration streams (169.254.3.1 / 169.254.3.2). A link is cut with
 * `ip link set … down` and restored with `up`.
 *
 * A third namespace, the TCP peer's (169.254.0.4 on the bridge), holds a kernel VXLAN
 * device that joins the guest network of Motus's switches as one more VXLAN endpoint
 * (VNI GUEST_VNI, UDP 4789 both ways, so the switches know it by address and port):
 * a process there speaks TCP to a guest through the switches and their uplinks, as a
 * machine behind a hardware VTEP would.
 */
import { execFileSync } from 'node:child_process';
import { requireCommand } from '../../support/index.js';

export const BRIDGE_ADDRESS = '169.254.0.1';
/** The VXLAN port of every endpoint: the hosts' switches and the peer's kernel device. */
export const VXLAN_PORT = 4789;
export const GUEST_VNI = 5001;
/** The guest network: the VM under test and the peer's end of the VXLAN device. */
export const GUEST_ADDRESS = '169.254.100.10';
export const PEER_GUEST_ADDRESS = '169.254.100.1';
const GUEST_PREFIX = 24;

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
  /** The TCP peer's namespace and its VXLAN endpoint's address on the bridge. */
  peer: { ns: string; address: string };
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
  requireCommand('bridge', 'iproute2');
  requireCommand('ethtool', 'ethtool');
  if (process.getuid?.() !== 0) throw new Error('the fault matrix puts hosts in network namespaces and needs root (run the tests as root)');
}

/** The guest's own address, for its kernel command line (`motus.ip=`). */
export const GUEST_CIDR = `${GUEST_ADDRESS}/${GUEST_PREFIX}`;

export function createFabric(tag = `${process.pid % 10000}`): Fabric {
  requireNamespaces();
  const bridge = `mfbr${tag}`;
  const hosts: [HostNs, HostNs] = [
    { name: 'host-a', ns: `mf${tag}-a`, address: '169.254.0.2', migrationAddress: '169.254.3.1' },
    { name: 'host-b', ns: `mf${tag}-b`, address: '169.254.0.3', migrationAddress: '169.254.3.2' },
  ];
  const peer = { ns: `mf${tag}-p`, address: '169.254.0.4' };
  const rootSide = (i: number) => `mf${tag}${'abp'[i]}`;
  const teardown = () => {
    for (const cmd of [['link', 'del', bridge], ['link', 'del', rootSide(0)], ['link', 'del', rootSide(1)], ['link', 'del', rootSide(2)], ['netns', 'del', hosts[0].ns], ['netns', 'del', hosts[1].ns], ['netns', 'del', peer.ns]]) {
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
    ip(['netns', 'add', peer.ns]);
    ip(['-n', peer.ns, 'link', 'set', 'lo', 'up']);
    ip(['link', 'add', rootSide(2), 'type', 'veth', 'peer', 'name', 'mgmt', 'netns', peer.ns]);
    ip(['link', 'set', rootSide(2), 'master', bridge, 'up']);
    ip(['-n', peer.ns, 'addr', 'add', `${peer.address}/24`, 'dev', 'mgmt']);
    ip(['-n', peer.ns, 'link', 'set', 'mgmt', 'up']);
    // Source port pinned to 4789 (the range's end is exclusive): net-virt knows a peer by address and port.
    ip(['-n', peer.ns, 'link', 'add', 'vx0', 'type', 'vxlan', 'id', String(GUEST_VNI), 'local', peer.address, 'dstport', String(VXLAN_PORT), 'srcport', String(VXLAN_PORT), String(VXLAN_PORT + 1), 'dev', 'mgmt']);
    // Head-end replication to both switches; guest MACs are learned from what arrives.
    for (const h of hosts) execFileSync('ip', ['netns', 'exec', peer.ns, 'bridge', 'fdb', 'append', '00:00:00:00:00:00', 'dev', 'vx0', 'dst', h.address], { stdio: ['ignore', 'ignore', 'pipe'] });
    // Left to offload, the peer's TCP checksums stay unwritten in what reaches the
    // switches' UDP sockets (the veth never computes them), and the guest drops every segment.
    execFileSync('ip', ['netns', 'exec', peer.ns, 'ethtool', '-K', 'vx0', 'tx', 'off'], { stdio: ['ignore', 'ignore', 'pipe'] });
    ip(['-n', peer.ns, 'addr', 'add', `${PEER_GUEST_ADDRESS}/${GUEST_PREFIX}`, 'dev', 'vx0']);
    ip(['-n', peer.ns, 'link', 'set', 'vx0', 'up']);
  } catch (err) {
    teardown();
    throw new Error(`cannot build the host namespaces: ${(err as { stderr?: Buffer }).stderr?.toString() ?? (err as Error).message}`);
  }
  const device = (link: LinkName): string[] => (link === 'a-b' ? ['-n', hosts[0].ns, 'link', 'set', 'mig'] : ['link', 'set', rootSide(link === 'a-mgmt' ? 0 : 1)]);
  const set = (link: LinkName, state: 'up' | 'down') => ip([...device(link), state]);
  return {
    hosts,
    peer,
    cut: (link) => set(link, 'down'),
    restore: (link) => set(link, 'up'),
    restoreAll: () => (['a-b', 'a-mgmt', 'b-mgmt'] as const).forEach((l) => set(l, 'up')),
    teardown,
  };
}
