/**
 * A small ONC RPC server on 127.0.0.1 for unit tests of the client session: each
 * call goes to a handler that decides what (if anything) to send back, so tests
 * can answer out of order, late, malformed, or drop the connection.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { decodeCall, encodeRecord, RecordDecoder } from '@motus/storage-nas';

export interface FakeCall {
  xid: number;
  prog: number;
  vers: number;
  proc: number;
  credFlavor: number;
  args: Buffer;
  socket: Socket;
  /** Which connection (1, 2, …) the call arrived on. */
  connection: number;
}

export interface FakeRpcServer {
  readonly port: number;
  readonly calls: FakeCall[];
  readonly connections: number;
  /** Sends a complete record on a call's connection. */
  reply(call: FakeCall, record: Buffer): void;
  /** Drops every open connection. */
  dropAll(): void;
  close(): Promise<void>;
}

export async function startFakeRpcServer(onCall: (call: FakeCall, server: FakeRpcServer) => void): Promise<FakeRpcServer> {
  const sockets = new Set<Socket>();
  const calls: FakeCall[] = [];
  let connections = 0;
  let server: Server;
  const api: FakeRpcServer = {
    get port() {
      const a = server.address();
      return typeof a === 'object' && a ? a.port : 0;
    },
    calls,
    get connections() {
      return connections;
    },
    reply(call, record) {
      if (!call.socket.destroyed) call.socket.write(encodeRecord(record));
    },
    dropAll() {
      for (const s of sockets) s.destroy();
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  server = createServer((socket) => {
    const connection = ++connections;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    const decoder = new RecordDecoder(1 << 20);
    socket.on('data', (chunk: Buffer) => {
      for (const record of decoder.push(chunk).records) {
        const decoded = decodeCall(record);
        if (!decoded.ok) continue;
        const call: FakeCall = { ...decoded.value, socket, connection };
        calls.push(call);
        onCall(call, api);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return api;
}
