import { spawn, type ChildProcess } from 'node:child_process';
import { requireCommand, waitFor } from '../../support/index.js';

/**
 * A capture on lo by dumpcap, which starts in a fraction of the time tshark takes
 * to load its dissectors: on a loaded machine that is the difference between a
 * capture that is running before the migration starts and one that is not.
 */
export class Dumpcap {
  private constructor(private readonly child: ChildProcess) {}

  static async start(file: string, bpf: string): Promise<Dumpcap> {
    const bin = requireCommand('dumpcap', 'wireshark-common');
    const child = spawn(bin, ['-i', 'lo', '-f', bpf, '-w', file, '-q'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    let exited = false;
    child.on('exit', () => (exited = true));
    const capture = new Dumpcap(child);
    try {
      await waitFor('dumpcap to start capturing on lo', () => {
        if (exited) throw new Error(`dumpcap exited: ${stderr}`);
        return /Capturing on/.test(stderr) ? true : undefined;
      }, 180_000);
    } catch (err) {
      await capture.stop();
      throw err;
    }
    return capture;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGINT');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 20_000);
    await exited;
    clearTimeout(timer);
  }
}
