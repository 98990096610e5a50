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
}

export const NetworkProviderToken = createToken<NetworkProvider>('network.provider');
