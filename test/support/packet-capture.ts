import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { requireCommand, waitFor } from './system.js';

export function tshark(args: string[], timeoutMs = 60_000): Promise<string> {
  const bin = requireCommand('tshark', 'tshark');
  return new Promise((resolve, reject) => {
    // TCP port 7000 (the guest kit's echo service) is Gryphon's port: tshark would read echoed
    // sequence numbers as Gryphon messages and call them malformed.
    execFile(bin, ['--disable-protocol', 'gryphon', ...args], { timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`tshark ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** Lines of `tshark -r file -Y filter -T fields -e frame.number`: how many frames match. */
export async function countMatching(file: string, filter: string, decodeAs: string[] = []): Promise<number> {
  const out = await tshark(['-r', file, ...decodeAs.flatMap((d) => ['-d', d]), '-Y', filter, '-T', 'fields', '-e', 'frame.number']);
  return out.split('\n').filter((l) => l.trim() !== '').length;
}

/**
 * A live capture on the loopback interface, written to `file`, by dumpcap: it starts in
 * a fraction of the time tshark takes to load its dissectors, which on a loaded machine
 * is the difference between a capture running before the migration starts and one that
 * is not.
 */
export class LoopbackCapture {
  private constructor(private readonly child: ChildProcess) {}

  static async start(file: string, bpf: string): Promise<LoopbackCapture> {
    const bin = requireCommand('dumpcap', 'wireshark-common');
    const child = spawn(bin, ['-i', 'lo', '-f', bpf, '-w', file, '-q'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    let exited = false;
    child.on('exit', () => (exited = true));
    const capture = new LoopbackCapture(child);
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

/** The distinct expert messages (with counts) of frames matching `filter`, for failure messages. */
export async function expertSummary(file: string, filter: string, decodeAs: string[] = []): Promise<string> {
  const out = await tshark(['-r', file, ...decodeAs.flatMap((d) => ['-d', d]), '-Y', filter, '-T', 'fields', '-e', 'frame.protocols', '-e', '_ws.expert.message']);
  const counts = new Map<string, number>();
  for (const line of out.split('\n').filter((l) => l.trim() !== '')) counts.set(line, (counts.get(line) ?? 0) + 1);
  return [...counts.entries()].map(([k, n]) => `${n}× ${k}`).slice(0, 10).join('\n');
}
