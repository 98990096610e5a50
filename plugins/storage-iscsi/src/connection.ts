import { connect, type Socket } from 'node:net';
import type { MotusError } from '@motus/sdk';
import { iscsiError } from './errors.js';
import { type DigestOptions, encodePduParts, NO_DIGESTS, type Pdu, type PduInit, PduReader } from './pdu.js';

export interface Portal {
  host: string;
  port: number;
}

/** Accepts `host`, `host:port`, `[v6]:port`; the iSCSI port 3260 by default. */
export function parsePortal(portal: string): Portal {
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(portal);
  if (v6) return { host: v6[1]!, port: v6[2] ? Number(v6[2]) : 3260 };
  const m = /^([^:]+)(?::(\d+))?$/.exec(portal);
  if (!m) throw iscsiError('MOTUS_E_INVALID_REQUEST', `portal "${portal}" is not host[:port]`, { portal });
  const port = m[2] ? Number(m[2]) : 3260;
  if (port < 1 || port > 65535) throw iscsiError('MOTUS_E_INVALID_REQUEST', `portal "${portal}" has port ${port}`, { portal });
  return { host: m[1]!, port };
}

/** A tap on the wire: every frame as sent or received, for captures and tests. */
export type FrameTap = (direction: 'out' | 'in', frame: Buffer) => void;

/**
 * One TCP connection carrying PDUs. It knows framing and digests, nothing about
 * sessions; it ends once, with the error that ended it (undefined: closed by us).
 */
export class Connection {
  private readonly reader: PduReader;
  private digests: DigestOptions = NO_DIGESTS;
  private ended = false;
  onPdu: (pdu: Pdu) => void = () => {};
  onEnd: (error: MotusError | undefined) => void = () => {};

  private constructor(private readonly socket: Socket, readonly portal: Portal, private readonly tap: FrameTap | undefined, maxRecvDataSegmentLength: number) {
    // During login the target may send up to 8192 bytes per PDU whatever we declare (RFC 7143 13.12).
    this.reader = new PduReader({ ...NO_DIGESTS, maxDataSegmentLength: Math.max(8192, maxRecvDataSegmentLength) });
    if (tap) this.reader.onFrame = (frame) => tap('in', frame);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      const { pdus, error } = this.reader.push(chunk);
      for (const pdu of pdus) {
        if (this.ended) return;
        this.onPdu(pdu);
      }
      if (error) this.end(error);
    });
    socket.on('error', (err) => this.end(iscsiError('MOTUS_E_ISCSI_DISCONNECTED', `connection to ${portal.host}:${portal.port} failed: ${err.message}`, { portal: `${portal.host}:${portal.port}` }, { cause: err })));
    socket.on('close', () => this.end(iscsiError('MOTUS_E_ISCSI_DISCONNECTED', `the target at ${portal.host}:${portal.port} closed the connection`, { portal: `${portal.host}:${portal.port}` })));
  }

  static open(portal: Portal, timeoutMs: number, tap?: FrameTap, maxRecvDataSegmentLength = 8192): Promise<Connection> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: portal.host, port: portal.port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(iscsiError('MOTUS_E_TIMEOUT', `no TCP connection to ${portal.host}:${portal.port} within ${timeoutMs} ms`, { portal: `${portal.host}:${portal.port}` }));
      }, timeoutMs);
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(iscsiError('MOTUS_E_ISCSI_CONNECT', `cannot connect to the iSCSI portal ${portal.host}:${portal.port}: ${err.message}`, { portal: `${portal.host}:${portal.port}` }, { cause: err }));
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new Connection(socket, portal, tap, maxRecvDataSegmentLength));
      });
    });
  }

  get closed(): boolean {
    return this.ended;
  }

  /** Digests take effect from the first PDU after the final login response. */
  setDigests(digests: DigestOptions, maxRecvDataSegmentLength: number): void {
    this.digests = digests;
    this.reader.options = { ...digests, maxDataSegmentLength: maxRecvDataSegmentLength };
  }

  send(pdu: PduInit): void {
    if (this.ended) return;
    const parts = encodePduParts(pdu, this.digests);
    if (this.tap) this.tap('out', Buffer.concat(parts));
    if (parts.length === 1) {
      this.socket.write(parts[0]!);
      return;
    }
    this.socket.cork();
    for (const part of parts) this.socket.write(part);
    this.socket.uncork();
  }

  /** Ends the connection; `error` says why (none when we close it on purpose). */
  end(error?: MotusError): void {
    if (this.ended) return;
    this.ended = true;
    this.socket.destroy();
    this.onEnd(error);
  }
}
