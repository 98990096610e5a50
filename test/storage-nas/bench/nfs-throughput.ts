/**
 * Copies a file to and from a real nfs-ganesha with the Motus client and with
 * libnfs's nfs-cp, in the same run, local file <-> export both ways, and prints
 * MiB/s and the ratio. Not a test: run it on purpose.
 *   npx tsc -b plugins/storage-nas test/storage-nas
 *   node test/dist/storage-nas/bench/nfs-throughput.js [MiB=256] [rounds=3]
 * Writes the figures as JSON to bench-results/nfs-throughput.json.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { NfsClient } from '@motus/storage-nas';
import { startGanesha, libnfs } from '../support/ganesha.js';
import { tempDir } from '../../support/index.js';

const mib = Number(process.argv[2] ?? 256);
const rounds = Number(process.argv[3] ?? 3);
const size = mib * 1024 * 1024;
const server = await startGanesha();
const scratch = tempDir('nas-bench');
const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
const seconds = async (fn: () => unknown) => {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e9;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

try {
  const source = join(scratch.path, 'source.bin');
  const chunk = Buffer.alloc(1024 * 1024);
  const out = createWriteStream(source);
  for (let i = 0; i < mib; i++) {
    for (let j = 0; j < chunk.length; j += 4) chunk.writeUInt32LE((i * 2654435761 + j) >>> 0, j);
    if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  const want = sha(source);
  const client = await NfsClient.connect({ host: server.host, export: server.exportPath, uid: 0, gid: 0, timeoutMs: 30000 });
  const results = { motusWrite: [] as number[], motusRead: [] as number[], nfscpWrite: [] as number[], nfscpRead: [] as number[] };
  for (let r = 0; r < rounds; r++) {
    results.motusWrite.push(await seconds(() => pipeline(createReadStream(source, { highWaterMark: 1024 * 1024 }), client.createWriteStream(`motus-${r}.bin`))));
    const back = join(scratch.path, `motus-back-${r}.bin`);
    results.motusRead.push(await seconds(() => pipeline(client.createReadStream(`motus-${r}.bin`), createWriteStream(back))));
    if (sha(back) !== want) throw new Error(`Motus round ${r}: data read back differs`);
    results.nfscpWrite.push(await seconds(() => libnfs('nfs-cp', [source, server.url(`nfscp-${r}.bin`)], 600000)));
    const back2 = join(scratch.path, `nfscp-back-${r}.bin`);
    results.nfscpRead.push(await seconds(() => libnfs('nfs-cp', [server.url(`nfscp-${r}.bin`), back2], 600000)));
    if (sha(back2) !== want) throw new Error(`nfs-cp round ${r}: data read back differs`);
    // Keep the disk footprint at a few copies whatever the size and rounds.
    for (const f of [back, back2, join(server.dir, `motus-${r}.bin`), join(server.dir, `nfscp-${r}.bin`)]) rmSync(f, { force: true });
  }
  await client.close();
  const rate = (s: number) => mib / s;
  const row = (what: string, motus: number[], ref: number[]) => ({
    what,
    motusMiBs: +rate(median(motus)).toFixed(1),
    nfscpMiBs: +rate(median(ref)).toFixed(1),
    ratio: +(median(ref) / median(motus)).toFixed(2),
  });
  const table = [row('write', results.motusWrite, results.nfscpWrite), row('read', results.motusRead, results.nfscpRead)];
  console.log(`${mib} MiB file, local file <-> nfs-ganesha on 127.0.0.1, median of ${rounds} rounds (ratio = Motus / nfs-cp throughput)`);
  console.table(table);
  mkdirSync('bench-results', { recursive: true });
  writeFileSync(join('bench-results', 'nfs-throughput.json'), JSON.stringify({ mib, rounds, table, seconds: results }, null, 2) + '\n');
} finally {
  await server.stop();
  scratch.remove();
}
