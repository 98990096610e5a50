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

/**
 * The agent-side methods (PluginContext.handle) a plugin providing networks answers,
 * so the server can show its switches (`motus net show`) and capture their traffic
 * (`motus net capture`) without knowing the plugin.
 */
export const NETWORK_STATS_METHOD = 'stats';
export const NETWORK_CAPTURE_METHOD = 'capture';

/** One switch port's counters (what NETWORK_STATS_METHOD answers, per port). */
export interface SwitchPortStats {
  id: string;
  network: string;
  vm?: string;
  nic?: string;
  mac?: string;
  connected: boolean;
  counters: { rxFrames: number; rxBytes: number; rxDropped: number; txFrames: number; txBytes: number; dropped: number; queuedFrames: number };
}

/** One host's switch as NETWORK_STATS_METHOD answers it (a plugin may add fields). */
export interface SwitchStats {
  host: string;
  networks: Array<{ name: string }>;
  ports: SwitchPortStats[];
  uplink?: { peers: string[]; txFrames: number; txBytes: number; rxFrames: number; rxBytes: number; rxDropped: number };
  macTable: { entries: number };
}

/** NETWORK_CAPTURE_METHOD's payload: a port, 'uplink', or 'network:<name>' (every frame the network's local ports send). */
export interface SwitchCaptureCall {
  target: string;
  durationMs: number;
  /** Answer the capture itself (base64 libpcap) instead of leaving it on the host. */
  inline?: boolean;
  /** File name in the plugin's captures folder on that host (required unless inline). */
  name?: string;
}

export interface SwitchCaptureAnswer {
  path?: string;
  frames: number;
  /** Frames not written because the capture reached its size limit. */
  truncated?: number;
  pcapBase64?: string;
}

/** `GET /v1/net`: one entry per host and network plugin. */
export interface HostNetworkStats {
  host: string;
  plugin: string;
  switch?: SwitchStats;
  /** Why that host's switch did not answer. */
  error?: { code: string; message: string };
}

/** `POST /v1/net/capture`: a port `<vm>.<nic>`, `uplink` (needs `host`), or a network name (every host, or `host`). */
export interface NetCaptureRequest {
  target: string;
  host?: string;
  durationMs: number;
}

export interface NetCaptureResult {
  target: string;
  kind: 'port' | 'uplink' | 'network';
  hosts: string[];
  frames: number;
  truncated: number;
  /** One libpcap file (LINKTYPE_ETHERNET); several hosts' captures merged by time. */
  pcapBase64: string;
}

export const NetworkProviderToken = createToken<NetworkProvider>('network.provider');
