import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { tempDir } from '../../support/system.js';

export interface ReceivedCommand {
  execute: string;
  arguments?: Record<string, unknown>;
  id?: string | number;
}

export type CommandHandler = (command: ReceivedCommand, peer: FakeQmpPeer) => void;

/** The server side of one connection, for a test to script. */
export class FakeQmpPeer {
  constructor(readonly socket: Socket) {}

  send(value: unknown): void {
    this.sendRaw(`${JSON.stringify(value)}\r\n`);
  }

  sendRaw(text: string | Buffer): void {
    if (!this.socket.destroyed) this.socket.write(text);
  }

  reply(command: ReceivedCommand, value: unknown = {}): void {
    this.send({ return: value, id: command.id });
  }

  error(command: ReceivedCommand, errorClass: string, desc: string): void {
    this.send({ id: command.id, error: { class: errorClass, desc } });
  }

  event(name: string, data?: Record<string, unknown>): void {
    this.send({ timestamp: { seconds: 1_700_000_000, microseconds: 123_456 }, event: name, ...(data ? { data } : {}) });
  }
}

export const GREETING = { QMP: { version: { qemu: { micro: 0, minor: 2, major: 7 }, package: 'fake' }, capabilities: ['oob'] } };

/**
 * A unix-socket server speaking just enough QMP for session tests: it greets,
 * accepts qmp_capabilities, and hands every other command to the test's handler.
 */
export class FakeQmpServer {
  readonly received: ReceivedCommand[] = [];
  readonly peers: FakeQmpPeer[] = [];
  handler: CommandHandler = (command, peer) => peer.reply(command);
  greet = true;
  /** Answer qmp_capabilities with an error, as a QEMU that does not speak this QMP would. */
  refuseCapabilities = false;
  private readonly dir = tempDir('fake-qmp');
  readonly path = join(this.dir.path, 'qmp.sock');
  private readonly server: Server;

  private constructor() {
    this.server = createServer((socket) => {
      const peer = new FakeQmpPeer(socket);
      this.peers.push(peer);
      socket.on('error', () => undefined);
      if (this.greet) peer.send(GREETING);
      let text = '';
      socket.on('data', (chunk: Buffer) => {
        text += chunk.toString('utf8');
        for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n')) {
          const line = text.slice(0, nl);
          text = text.slice(nl + 1);
          const command = JSON.parse(line) as ReceivedCommand;
          this.received.push(command);
          if (command.execute === 'qmp_capabilities' && this.refuseCapabilities) peer.error(command, 'CommandNotFound', "The command qmp_capabilities has not been found");
          else if (command.execute === 'qmp_capabilities') peer.reply(command);
          else this.handler(command, peer);
        }
      });
    });
  }

  static async start(): Promise<FakeQmpServer> {
    const fake = new FakeQmpServer();
    await new Promise<void>((resolve, reject) => {
      fake.server.once('error', reject);
      fake.server.listen(fake.path, () => resolve());
    });
    return fake;
  }

  async close(): Promise<void> {
    for (const peer of this.peers) peer.socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.dir.remove();
  }
}
