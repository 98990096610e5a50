/**
 * One switch port as a unix socket server that QEMU's `-netdev stream,server=off`
 * connects to. The newest connection owns the port: QEMU reconnecting (after
 * `reconnect-ms`) replaces a connection the switch has not yet seen close.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { rmSync } from 'node:fs';
import { MotusError } from '@motus/sdk';
import { FrameDecoder } from './frame-codec.js';
import type { VirtualSwitch } from './virtual-switch.js';

/** sun_path holds 108 bytes including the terminating NUL. */
export const MAX_UNIX_PATH_BYTES = 107;
/** A peer that sends this many framing errors in a row is not speaking the protocol: it is disconnected. */
const MAX_CONSECUTIVE_FRAMING_ERRORS = 64;
const LISTEN_TIMEOUT_MS = 5_000;

export class PortSocket {
  private current: Socket | undefined;

  private constructor(
    readonly portId: string,
    readonly path: string,
    private readonly server: Server,
    private readonly sw: VirtualSwitch,
  ) {}

  static async listen(sw: VirtualSwitch, portId: string, path: string): Promise<PortSocket> {
    if (Buffer.byteLength(path) > MAX_UNIX_PATH_BYTES) {
      throw new MotusError('MOTUS_E_NET_PORT', `the socket path of port ${portId} is ${Buffer.byteLength(path)} bytes, over the ${MAX_UNIX_PATH_BYTES} a unix socket allows: use a shorter state folder`, { port: portId, path });
    }
    rmSync(path, { force: true });
    const server = createServer();
    const port = new PortSocket(portId, path, server, sw);
    server.on('connection', (socket) => port.accept(socket));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new MotusError('MOTUS_E_NET_PORT', `port ${portId} did not start listening on ${path} within ${LISTEN_TIMEOUT_MS} ms`, { port: portId, path })), LISTEN_TIMEOUT_MS);
      server.once('error', (err) => {
        clearTimeout(timer);
        reject(new MotusError('MOTUS_E_NET_PORT', `port ${portId} cannot listen on ${path}: ${err.message}`, { port: portId, path }, { cause: err }));
      });
      server.listen(path, () => {
        clearTimeout(timer);
        resolve();
      });
    });
    server.on('error', () => undefined);
    return port;
  }

  async close(): Promise<void> {
    this.current?.destroy();
    this.current = undefined;
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.path, { force: true });
  }

  private accept(socket: Socket): void {
    this.current?.destroy();
    this.current = socket;
    socket.setNoDelay?.(true);
    const decoder = new FrameDecoder();
    let consecutiveErrors = 0;
    this.sw.connectPort(this.portId, socket);
    socket.on('data', (chunk: Buffer) => {
      const { frames, errors } = decoder.push(chunk);
      if (errors.length > 0) {
        this.sw.countPortRxError(this.portId, errors.length);
        consecutiveErrors += errors.length;
        if (errors.some((e) => e.kind === 'desync') || (frames.length === 0 && consecutiveErrors >= MAX_CONSECUTIVE_FRAMING_ERRORS)) socket.destroy();
      }
      if (frames.length > 0) consecutiveErrors = 0;
      for (const frame of frames) this.sw.fromPort(this.portId, frame);
    });
    socket.on('drain', () => this.sw.drainPort(this.portId));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      if (this.current !== socket) return;
      this.current = undefined;
      this.sw.connectPort(this.portId, undefined);
    });
  }
}
