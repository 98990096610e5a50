/**
 * Frames per second and Mbit/s through a switch between two ports, 64- and
 * 1,500-byte frames: the Motus switch (its own process, QEMU stream framing on
 * unix sockets) against vde_switch (Debian vde2) driven by the same generator
 * through vde_plug (2-byte length framing on its stdin/stdout). Prints a table
 * with the ratio and writes bench-results/net-virt-switch.json.
 *
 *   npx tsc -b test/net-virt && node test/dist/net-virt/bench/switch-throughput.js [frames-per-run]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { repoRoot } from '../../support/site.js';
import { requireCommand, sleep, tempDir, waitFor } from '../../support/index.js';
import { ethFrame } from '../support/frames.js';

const TX = '02:00:00:00:0b:01';
const RX = '02:00:00:00:0b:02';
const IDLE_MS = 2_000;
const RUN_LIMIT_MS = 60_000;

interface Ends {
  tx: Writable;
  rx: Readable;
  /** Writes on the receiving end's own transmit side. */
  rxWrite(data: Buffer): void;
  headerBytes: 2 | 4;
  close(): Promise<void>;
}

interface Result {
  switch: 'motus' | 'vde_switch';
  frameBytes: number;
  sent: number;
  delivered: number;
  seconds: number;
  framesPerSecond: number;
  mbitPerSecond: number;
}

function framed(frame: Buffer, headerBytes: 2 | 4): Buffer {
  const out = Buffer.allocUnsafe(headerBytes + frame.length);
  if (headerBytes === 2) out.writeUInt16BE(frame.length, 0);
  else out.writeUInt32BE(frame.length, 0);
  frame.copy(out, headerBytes);
  return out;
}

/** Counts whole frames in a stream with a length prefix of `headerBytes`. */
function counter(rx: Readable, headerBytes: 2 | 4) {
  const state = { frames: 0, lastAt: 0 };
  let pending: Buffer = Buffer.alloc(0);
  rx.on('data', (chunk: Buffer) => {
    const data: Buffer = pending.length > 0 ? Buffer.concat([pending, chunk]) : chunk;
    let offset = 0;
    while (data.length - offset >= headerBytes) {
      const length = headerBytes === 2 ? data.readUInt16BE(offset) : data.readUInt32BE(offset);
      if (data.length - offset - headerBytes < length) break;
      offset += headerBytes + length;
      state.frames++;
    }
    pending = data.subarray(offset);
    state.lastAt = performance.now();
  });
  return state;
}

async function run(name: Result['switch'], ends: Ends, frameBytes: number, count: number): Promise<Result> {
  const seen = counter(ends.rx, ends.headerBytes);
  // The receiver speaks first so both switches learn its MAC and forward to it alone.
  ends.rxWrite(framed(ethFrame('ff:ff:ff:ff:ff:ff', RX, 64), ends.headerBytes));
  await sleep(300);
  seen.frames = 0;
  const frame = framed(ethFrame(RX, TX, frameBytes), ends.headerBytes);
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    if (!ends.tx.write(frame)) await new Promise((resolve) => ends.tx.once('drain', resolve));
    if (performance.now() - t0 > RUN_LIMIT_MS) break;
  }
  await waitFor('the receiver to go idle', () => (seen.frames >= count || (seen.lastAt > 0 && performance.now() - seen.lastAt > IDLE_MS) || performance.now() - t0 > RUN_LIMIT_MS ? true : undefined), RUN_LIMIT_MS + IDLE_MS * 2, 20);
  const seconds = (seen.lastAt - t0) / 1000;
  const delivered = seen.frames;
  return { switch: name, frameBytes, sent: count, delivered, seconds, framesPerSecond: delivered / seconds, mbitPerSecond: (delivered * frameBytes * 8) / seconds / 1e6 };
}

async function motusEnds(dir: string): Promise<Ends> {
  const child = spawn(process.execPath, [join(repoRoot, 'test', 'dist', 'net-virt', 'bench', 'motus-switch.js'), dir], { stdio: ['pipe', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('the Motus switch did not start within 20 s')), 20_000);
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('\n')) {
        clearTimeout(timer);
        resolve(out.split('\n')[0]!);
      }
    });
    child.once('exit', (code) => reject(new Error(`the Motus switch exited with ${code}`)));
  });
  const paths = JSON.parse(line) as { tx: string; rx: string };
  const tx = createConnection(paths.tx);
  const rx = createConnection(paths.rx);
  await Promise.all([tx, rx].map((s) => new Promise((resolve, reject) => s.once('connect', resolve).once('error', reject))));
  return {
    tx,
    rx,
    headerBytes: 4,
    rxWrite: (b) => rx.write(b),
    close: async () => {
      tx.destroy();
      rx.destroy();
      await stop(child, () => child.stdin!.end());
    },
  };
}

async function vdeEnds(dir: string): Promise<Ends> {
  const vdeSwitch = requireCommand('vde_switch', 'vde2');
  const vdePlug = requireCommand('vde_plug', 'vde2');
  const sock = join(dir, 'vde.ctl');
  // vde_switch reads management commands from stdin and quits at its end, so stdin stays an open pipe.
  const sw = spawn(vdeSwitch, ['-s', sock], { stdio: ['pipe', 'ignore', 'inherit'] });
  sw.stdin!.on('error', () => undefined);
  const plugs: ChildProcess[] = [];
  try {
    await waitFor('vde_switch to create its socket', () => {
      if (sw.exitCode !== null) throw new Error(`vde_switch exited with ${sw.exitCode}`);
      return existsSync(join(sock, 'ctl')) ? true : undefined;
    }, 10_000, 50);
    for (let i = 0; i < 2; i++) plugs.push(spawn(vdePlug, [`vde://${sock}`], { stdio: ['pipe', 'pipe', 'inherit'] }));
    // A plug that quits first (at teardown) must not crash the run with EPIPE on its stdin.
    for (const plug of plugs) plug.stdin!.on('error', () => undefined);
    await sleep(500);
  } catch (err) {
    sw.kill('SIGKILL');
    throw err;
  }
  return {
    tx: plugs[0]!.stdin!,
    rx: plugs[1]!.stdout!,
    headerBytes: 2,
    rxWrite: (b) => plugs[1]!.stdin!.write(b),
    close: async () => {
      for (const p of plugs) await stop(p, () => p.kill('SIGTERM'));
      await stop(sw, () => sw.kill('SIGTERM'));
    },
  };
}

async function stop(child: ChildProcess, ask: () => void): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  ask();
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

const perRun = Number(process.argv[2] ?? 100_000);
const results: Result[] = [];
for (const frameBytes of [64, 1500]) {
  for (const name of ['motus', 'vde_switch'] as const) {
    const dir = tempDir(`nv-bench-${name}`);
    const ends = name === 'motus' ? await motusEnds(dir.path) : await vdeEnds(dir.path);
    try {
      results.push(await run(name, ends, frameBytes, frameBytes === 64 ? perRun : Math.ceil(perRun / 2)));
    } finally {
      await ends.close();
      dir.remove();
    }
  }
}

console.log('frame  switch       sent     delivered  frames/s   Mbit/s');
for (const r of results) {
  console.log(`${String(r.frameBytes).padStart(5)}  ${r.switch.padEnd(11)} ${String(r.sent).padStart(8)} ${String(r.delivered).padStart(10)}  ${Math.round(r.framesPerSecond).toString().padStart(8)} ${r.mbitPerSecond.toFixed(1).padStart(8)}`);
}
const ratios = [64, 1500].map((size) => {
  const m = results.find((r) => r.switch === 'motus' && r.frameBytes === size)!;
  const v = results.find((r) => r.switch === 'vde_switch' && r.frameBytes === size)!;
  return { frameBytes: size, motusOverVde: m.framesPerSecond / v.framesPerSecond };
});
for (const r of ratios) console.log(`ratio Motus / vde_switch at ${r.frameBytes} bytes: ${r.motusOverVde.toFixed(2)}`);
const outDir = join(repoRoot, 'bench-results');
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'net-virt-switch.json'), `${JSON.stringify({ at: new Date().toISOString(), results, ratios }, null, 2)}\n`);
