/**
 * A small scripted iSCSI target on 127.0.0.1 for unit tests of the initiator's
 * session: it does a plain login (no CHAP) with the parameters a test gives, then
 * hands every full-feature PDU to the test, which decides what to send back (in
 * order or not, late, malformed, or nothing).
 */
import { createServer, type Server, type Socket } from 'node:net';
import {
  type DigestOptions, encodePdu, encodeText, decodeText, NO_DIGESTS, type Pdu, PduOpcode, type PduInit, PduReader, RESERVED_TAG, type ScsiCommandPdu,
} from '@motus/storage-iscsi';

export interface FakeConnection {
  readonly id: number;
  readonly socket: Socket;
  statSN: number;
  expCmdSN: number;
  /** Commands the target accepts beyond ExpCmdSN: MaxCmdSN = ExpCmdSN + window - 1. */
  window: number;
  digests: DigestOptions;
  readonly maxCmdSN: number;
  send(pdu: PduInit): void;
  sendRaw(bytes: Buffer): void;
  /** Answers a command: Data-In PDUs (status in the last one) when there is data, else a SCSI Response. */
  reply(cmd: ScsiCommandPdu, opts?: { status?: number; data?: Buffer; sense?: Buffer; pduSize?: number; separateResponse?: boolean }): void;
  close(): void;
}

export interface FakeTargetOptions {
  /** Operational keys the target answers with (our side of each negotiation). */
  keys?: Record<string, string>;
  window?: number;
  /** Called for each full-feature PDU. */
  onPdu?: (pdu: Pdu, conn: FakeConnection) => void;
  /** Called for each login request before the default answer; return true to take it over. */
  onLogin?: (pdu: Pdu, conn: FakeConnection) => boolean;
}

export interface FakeTarget {
  readonly port: number;
  readonly portal: string;
  readonly connections: FakeConnection[];
  readonly received: Array<{ conn: number; pdu: Pdu }>;
  close(): Promise<void>;
}

const DEFAULT_KEYS: Record<string, string> = {
  HeaderDigest: 'None', DataDigest: 'None', MaxConnections: '1', InitialR2T: 'Yes', ImmediateData: 'Yes',
  MaxRecvDataSegmentLength: '8192', MaxBurstLength: '262144', FirstBurstLength: '65536', DefaultTime2Wait: '0',
  DefaultTime2Retain: '0', MaxOutstandingR2T: '1', DataPDUInOrder: 'Yes', DataSequenceInOrder: 'Yes', ErrorRecoveryLevel: '0',
};

export async function startFakeTarget(options: FakeTargetOptions = {}): Promise<FakeTarget> {
  const connections: FakeConnection[] = [];
  const received: Array<{ conn: number; pdu: Pdu }> = [];
  const keys = { ...DEFAULT_KEYS, ...options.keys };
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let loggedIn = false;
    const reader = new PduReader({ ...NO_DIGESTS, maxDataSegmentLength: 1 << 24 });
    const conn: FakeConnection = {
      id: connections.length + 1,
      socket,
      statSN: 100,
      expCmdSN: 0,
      window: options.window ?? 32,
      digests: NO_DIGESTS,
      get maxCmdSN() {
        return (this.expCmdSN + this.window - 1) >>> 0;
      },
      send(pdu) {
        if (!socket.destroyed) socket.write(encodePdu(pdu, this.digests));
      },
      sendRaw(bytes) {
        if (!socket.destroyed) socket.write(bytes);
      },
      reply(cmd, opts = {}) {
        const status = opts.status ?? 0;
        const data = opts.data ?? Buffer.alloc(0);
        const size = opts.pduSize ?? 8192;
        const residual = Math.max(0, cmd.expectedDataTransferLength - data.length);
        const common = { lun: cmd.lun, itt: cmd.itt, ttt: RESERVED_TAG, expCmdSN: this.expCmdSN, maxCmdSN: this.maxCmdSN };
        if (data.length > 0) {
          let dataSN = 0;
          for (let at = 0; at < data.length; at += size) {
            const last = at + size >= data.length;
            const withStatus = last && !opts.sense && !opts.separateResponse;
            this.send({
              opcode: PduOpcode.DataIn, ...common, final: last, hasStatus: withStatus, status: withStatus ? status : 0,
              statSN: withStatus ? this.statSN++ : 0, dataSN: dataSN++, bufferOffset: at, data: data.subarray(at, Math.min(data.length, at + size)),
              underflow: withStatus && residual > 0, residual: withStatus ? residual : 0,
            });
            if (withStatus) return;
          }
        }
        const senseSeg = opts.sense ? Buffer.concat([Buffer.from([opts.sense.length >> 8, opts.sense.length & 0xff]), opts.sense]) : Buffer.alloc(0);
        this.send({
          opcode: PduOpcode.ScsiResponse, itt: cmd.itt, response: 0, status, statSN: this.statSN++, expCmdSN: this.expCmdSN, maxCmdSN: this.maxCmdSN,
          underflow: residual > 0, residual, data: senseSeg,
        });
      },
      close() {
        socket.destroy();
      },
    };
    connections.push(conn);
    socket.on('data', (chunk: Buffer) => {
      const { pdus, error } = reader.push(chunk);
      for (const pdu of pdus) {
        received.push({ conn: conn.id, pdu });
        if (!loggedIn) {
          if (pdu.opcode !== PduOpcode.LoginRequest) {
            socket.destroy();
            return;
          }
          if (options.onLogin?.(pdu, conn)) continue;
          conn.expCmdSN = pdu.cmdSN;
          const offered = decodeText(pdu.data);
          const answer: Array<[string, string]> = [];
          if (pdu.csg === 0) answer.push(['TargetPortalGroupTag', '1'], ['AuthMethod', 'None']);
          else if (offered.ok) {
            for (const [k] of offered.pairs) if (keys[k] !== undefined) answer.push([k, keys[k]!]);
          }
          const final = pdu.transit && pdu.nsg === 3;
          conn.send({
            opcode: PduOpcode.LoginResponse, transit: pdu.transit, csg: pdu.csg, nsg: pdu.transit ? pdu.nsg : 0, isid: pdu.isid, tsih: final ? 7 : 0,
            itt: pdu.itt, statSN: conn.statSN++, expCmdSN: conn.expCmdSN, maxCmdSN: conn.maxCmdSN, data: encodeText(answer),
          });
          if (final) {
            loggedIn = true;
            const dig = { headerDigest: keys['HeaderDigest'] === 'CRC32C', dataDigest: keys['DataDigest'] === 'CRC32C' };
            conn.digests = dig;
            reader.options = { ...dig, maxDataSegmentLength: 1 << 24 };
          }
          continue;
        }
        if ('cmdSN' in pdu && !pdu.immediate && (pdu.opcode === PduOpcode.ScsiCommand || pdu.opcode === PduOpcode.TextRequest)) {
          conn.expCmdSN = (pdu.cmdSN + 1) >>> 0;
        }
        if (pdu.opcode === PduOpcode.LogoutRequest) {
          conn.send({ opcode: PduOpcode.LogoutResponse, itt: pdu.itt, response: 0, statSN: conn.statSN++, expCmdSN: conn.expCmdSN, maxCmdSN: conn.maxCmdSN });
          continue;
        }
        options.onPdu?.(pdu, conn);
      }
      if (error) socket.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    port,
    portal: `127.0.0.1:${port}`,
    connections,
    received,
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}
