import { createToken } from '../tokens.js';
import type { NicSpec } from '../model.js';

/** What QEMU needs to attach a vNIC: a netdev backend description. */
export interface NicAttachment {
  nicId: string;
  /** QEMU -netdev argument, e.g. 'stream,id=n0,addr.type=unix,addr.path=/run/…' */
  netdev: string;
}

/** Virtual switching on one host: ports for vNICs, and where a MAC is reached. */
export interface NetworkProvider {
  readonly kind: string;
  networks(): Promise<string[]>;
  attach(vm: string, nic: NicSpec): Promise<NicAttachment>;
  detach(vm: string, nicId: string): Promise<void>;
  /** Where this host's switch reaches `mac`: 'local:<port>', 'uplink:<host>', or undefined. */
  locate(mac: string): Promise<string | undefined>;
  /**
   * Optional switchover support, called by the source host's agent. The VM is
   * being migrated away from this host: the provider may start remembering the
   * frames it hands to the VM's ports.
   */
  migrationStarted?(vm: string): void;
  /**
   * The VM stopped on this host for its switchover at `stoppedAt` (ms since the
   * epoch, the hypervisor's own timestamp). What reached its ports since then is
   * lost with the source process: the provider holds it, and what arrives next for
   * the VM's MACs, until the MACs show up on the destination, and delivers it there.
   */
  migrationStopped?(vm: string, stoppedAt: number): void;
  /** The outgoing migration ended: `left` false when the VM stays here (failed, cancelled), so held frames go back to its ports. */
  migrationEnded?(vm: string, left: boolean): void;
}

export const NetworkProviderToken = createToken<NetworkProvider>('network.provider');
