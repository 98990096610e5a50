/**
 * The VXLAN tunnel endpoint of one host: a UDP socket on its configured address,
 * head-end replication to every peer (no multicast underlay on loopback), and
 * peers recognised by the address they send from.
 */
import { createSocket, type Socket } from 'node:dgram';
import { MotusError } from '@motus/sdk';
import { decodeVxlan, encodeVxlan } from './vxlan.js';
import type { UplinkTransport } from './virtual-switch.js';

export interface Endpoint {
  host: string;
  port: number;
}

export interface VxlanCounters {
  rxDatagrams: number;
  rxMalformed: number;
  rxUnknownPeer: number;
  txErrors: number;
}

const BIND_TIMEOUT_MS = 5_000;

export function parseEndpoint(text: string): Endpoint | undefined {
  const match = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(text);
  if (!match) return undefined;
  const port = Number(match[2]);
  if (port < 1 || port > 65_535 || match[1]!.split('.').some((o) => Number(o) > 255)) return undefined;
  return { host: match[1]!, port };
}

export class VxlanUplink implements UplinkTransport {
  private readonly byAddress = new Map<string, string>();
  private readonly peerNames: string[];
  private readonly counters: VxlanCounters = { rxDatagrams: 0, rxMalformed: 0, rxUnknownPeer: 0, txErrors: 0 };
  private closed = false;

  private constructor(
    private readonly socket: Socket,
    private readonly peersByName: Map<string, Endpoint>,
  ) {
    for (const [name, ep] of peersByName) this.byAddress.set(`${ep.host}:${ep.port}`, name);
    this.peerNames = [...peersByName.keys()];
  }

  static async bind(local: Endpoint, peers: Map<string, Endpoint>, onFrame: (peer: string, vni: number, frame: Buffer) => void): Promise<VxlanUplink> {
    const socket = createSocket({ type: 'udp4' });
    const uplink = new VxlanUplink(socket, peers);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new MotusError('MOTUS_E_NET_UPLINK', `the VXLAN endpoint did not bind ${local.host}:${local.port} within ${BIND_TIMEOUT_MS} ms`, { vtep: `${local.host}:${local.port}` })), BIND_TIMEOUT_MS);
      socket.once('error', (err) => {
        clearTimeout(timer);
        socket.close();
        reject(new MotusError('MOTUS_E_NET_UPLINK', `the VXLAN endpoint cannot bind ${local.host}:${local.port}: ${err.message}`, { vtep: `${local.host}:${local.port}` }, { cause: err }));
      });
      socket.bind(local.port, local.host, () => {
        clearTimeout(timer);
        resolve();
      });
    });
    socket.on('error', () => undefined);
    socket.on('message', (datagram, rinfo) => {
      uplink.counters.rxDatagrams++;
      const peer = uplink.byAddress.get(`${rinfo.address}:${rinfo.port}`);
      if (peer === undefined) {
        uplink.counters.rxUnknownPeer++;
        return;
      }
      const decoded = decodeVxlan(datagram);
      if (!decoded.ok) {
        uplink.counters.rxMalformed++;
        return;
      }
      onFrame(peer, decoded.vni, decoded.frame);
    });
    return uplink;
  }

  peers(): readonly string[] {
    return this.peerNames;
  }

  send(host: string, vni: number, frame: Buffer): void {
    const ep = this.peersByName.get(host);
    if (!ep || this.closed) return;
    this.socket.send(encodeVxlan(vni, frame), ep.port, ep.host, (err) => {
      if (err) this.counters.txErrors++;
    });
  }

  stats(): VxlanCounters {
    return { ...this.counters };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await new Promise<void>((resolve) => this.socket.close(() => resolve()));
  }
}
