/**
 * Throughput of the Motus initiator against libiscsi on the same tgt LUN, in the same run:
 *   npx tsc -b sdk plugins/storage-iscsi test/storage-iscsi && node test/dist/storage-iscsi/bench/iscsi-bench.js [seconds]
 * 1. 128 KiB sequential reads, 32 in flight: Motus vs `iscsi-perf -m 32 -b 256`.
 * 2. 8 MiB sequential write, then read, one call each: Motus vs `qemu-io` (QEMU's libiscsi driver).
 * Prints a table and writes bench-results.json next to this file's output.
 */
import { execFile, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { read16 } from '@motus/sdk';
import { IscsiSession } from '@motus/storage-iscsi';
import { requireCommand } from '../../support/index.js';
import { startTgt } from '../support/tgt.js';

const seconds = Number(process.argv[2] ?? 5);
const TARGET = 'iqn.2026-11.dev.motus.test:bench';
const LUN_MIB = 256;

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 120000, encoding: 'utf8' }, (err, stdout, stderr) => (err ? reject(new Error(`${cmd}: ${stderr || err.message}`)) : resolve(stdout)));
  });
}

/** iscsi-perf runs until interrupted; its last "iops average" line is the figure. */
function iscsiPerf(url: string, secs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn('iscsi-perf', ['-m', '32', '-b', '256', url], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGINT'), secs * 1000);
    const hard = setTimeout(() => child.kill('SIGKILL'), secs * 1000 + 5000);
    child.on('exit', () => {
      clearTimeout(timer);
      clearTimeout(hard);
      const all = [...out.matchAll(/iops average (\d+) \((\d+) MB\/s\)/g)];
      const last = all[all.length - 1];
      if (!last) reject(new Error(`iscsi-perf printed no figures: ${out.slice(0, 400)}`));
      else resolve((Number(last[1]) * 131072) / 1e6);
    });
  });
}

function qemuIoRate(out: string): number {
  // "8 MiB, 1 ops; 00.05 sec (152.031 MiB/sec and 19.0039 ops/sec)"
  const m = /\(([\d.]+) (KiB|MiB|GiB)\/sec/.exec(out);
  if (!m) throw new Error(`qemu-io printed no rate: ${out}`);
  const f = m[2] === 'KiB' ? 1 / 1024 : m[2] === 'GiB' ? 1024 : 1;
  return (Number(m[1]) * f * 1048576) / 1e6;
}

async function motusReads(lun: ReturnType<IscsiSession['lun']>, secs: number): Promise<number> {
  const blocks = 256;
  const total = (LUN_MIB * 1048576) / 512;
  let next = 0;
  let bytes = 0;
  const end = Date.now() + secs * 1000;
  const start = process.hrtime.bigint();
  const worker = async (): Promise<void> => {
    while (Date.now() < end) {
      const lba = next;
      next = (next + blocks) % total;
      const cmd = read16(lba, blocks, 512);
      const r = await lun.command(cmd);
      bytes += r.data.length;
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  return bytes / (Number(process.hrtime.bigint() - start) / 1e9) / 1e6;
}

requireCommand('iscsi-perf', 'libiscsi-bin');
requireCommand('qemu-io', 'qemu-utils');
const tgt = await startTgt();
const results: Record<string, { motus: number; reference: number; ratio: number; reference_tool: string }> = {};
try {
  await tgt.addTarget({ iqn: TARGET, lunsMiB: [LUN_MIB], params: { MaxRecvDataSegmentLength: '262144' } });
  const url = `iscsi://127.0.0.1:${tgt.port}/${TARGET}/1`;
  const s = await IscsiSession.login({ portal: tgt.portal, targetIqn: TARGET, initiatorIqn: 'iqn.2026-11.dev.motus:bench', keepaliveIntervalMs: 0 });
  const lun = s.lun(1);
  await lun.capacity();
  // Fill the LUN once so reads hit data, not holes.
  const fill = Buffer.alloc(8 << 20, 0x3c);
  for (let mib = 0; mib < LUN_MIB; mib += 8) await lun.write((mib * 1048576) / 512, fill);

  const motusSeq = await motusReads(lun, seconds);
  const perfSeq = await iscsiPerf(url, seconds);
  results['128 KiB seq read, 32 in flight'] = { motus: motusSeq, reference: perfSeq, ratio: motusSeq / perfSeq, reference_tool: 'iscsi-perf -m 32 -b 256' };

  const data = Buffer.alloc(8 << 20);
  for (let i = 0; i < data.length; i++) data[i] = (i * 131) & 0xff;
  const best = async (f: () => Promise<number>): Promise<number> => Math.max(await f(), await f(), await f());
  const motusWrite = await best(async () => {
    const t = process.hrtime.bigint();
    await lun.write(0, data);
    return data.length / (Number(process.hrtime.bigint() - t) / 1e9) / 1e6;
  });
  const qemuWrite = await best(async () => qemuIoRate(await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 8M', url])));
  // Both clients read the same settled blocks, each five times in a row (best kept): a connection
  // left idle while the other client runs restarts TCP slow start and would measure that instead.
  await lun.write(0, data);
  await lun.sync();
  const five = async (f: () => Promise<number>): Promise<number> => {
    let top = 0;
    for (let round = 0; round < 5; round++) top = Math.max(top, await f());
    return top;
  };
  const motusRead = await five(async () => {
    const t = process.hrtime.bigint();
    await lun.read(0, data.length / 512);
    return data.length / (Number(process.hrtime.bigint() - t) / 1e9) / 1e6;
  });
  const qemuRead = await five(async () => qemuIoRate(await run('qemu-io', ['-f', 'raw', '-c', 'read 0 8M', url])));
  await s.logout();
  results['8 MiB sequential write'] = { motus: motusWrite, reference: qemuWrite, ratio: motusWrite / qemuWrite, reference_tool: "qemu-io -c 'write -P 0x5a 0 8M' (libiscsi)" };
  results['8 MiB sequential read'] = { motus: motusRead, reference: qemuRead, ratio: motusRead / qemuRead, reference_tool: "qemu-io -c 'read 0 8M' (libiscsi)" };
} finally {
  await tgt.stop();
}

console.log(`${'case'.padEnd(34)} ${'Motus MB/s'.padStart(11)} ${'libiscsi MB/s'.padStart(14)} ${'ratio'.padStart(6)}  reference`);
for (const [name, r] of Object.entries(results)) {
  console.log(`${name.padEnd(34)} ${r.motus.toFixed(1).padStart(11)} ${r.reference.toFixed(1).padStart(14)} ${r.ratio.toFixed(2).padStart(6)}  ${r.reference_tool}`);
}
const out = fileURLToPath(new URL('./bench-results.json', import.meta.url));
writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), seconds, results }, null, 1) + '\n');
console.log(`wrote ${out}`);
