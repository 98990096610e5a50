/**
 * Starts and follows the TCP peer (tcp-peer.ts) inside the peer's namespace: the
 * fault matrix's second witness, next to the disk writer. A connection is one
 * process: when it breaks (or the VM it spoke to is gone) the test starts another.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { repoRoot, waitFor } from '../../support/index.js';

export interface PeerState {
  connected: boolean;
  sent: number;
  echoed: number;
  /** Why the connection broke (lost, duplicated or reordered bytes, reset, closed). */
  error?: string;
}

export class TcpPeer {
  readonly state: PeerState = { connected: false, sent: 0, echoed: 0 };
  private readonly child: ChildProcess;
  private readonly exited: Promise<void>;

  private constructor(ns: string, address: string, port: number, periodMs: number) {
    const script = join(repoRoot, 'test', 'dist', 'faults', 'support', 'tcp-peer.js');
    this.child = spawn('ip', ['netns', 'exec', ns, process.execPath, script, address, String(port), String(periodMs)], { stdio: ['ignore', 'pipe', 'inherit'] });
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      let msg: { event?: string; sent?: number; echoed?: number; reason?: string };
      try {
        msg = JSON.parse(line) as typeof msg;
      } catch {
        return;
      }
      if (msg.event === 'connected') this.state.connected = true;
      if (typeof msg.sent === 'number') this.state.sent = msg.sent;
      if (typeof msg.echoed === 'number') this.state.echoed = msg.echoed;
      if (msg.event === 'error') this.state.error = msg.reason ?? 'unknown';
    });
    void this.exited.then(() => {
      this.state.error ??= `the peer process exited (${this.child.exitCode ?? this.child.signalCode})`;
    });
  }

  /** A peer connected to the guest with echoes flowing. */
  static async connect(ns: string, address: string, port: number, periodMs: number): Promise<TcpPeer> {
    const peer = new TcpPeer(ns, address, port, periodMs);
    try {
      await waitFor(`the TCP peer to connect to ${address}:${port} and get echoes`, () => {
        if (peer.state.error) throw new Error(`the TCP peer failed: ${peer.state.error}`);
        return peer.state.connected && peer.state.echoed >= 20 ? true : undefined;
      }, 180_000, 250);
    } catch (err) {
      await peer.stop();
      throw err;
    }
    return peer;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }
}
