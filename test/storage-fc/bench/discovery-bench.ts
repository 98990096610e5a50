/**
 * FC discovery benchmark (node test/dist/storage-fc/bench/discovery-bench.js):
 * a fixture host of 8 HBAs × 64 target ports × 256 LUNs = 131,072 paths (two
 * fabrics; 16 arrays of 8 ports each present the same 256 LUNs on all their
 * ports, so 4,096 LUNs of 32 paths, each under a dm-multipath map), built by the
 * fixture builder on tmpfs, then read by discoverFc: HBAs, remote ports, every
 * SCSI device (state, wwid, vendor, model, block device, size, holders), the
 * /dev links, grouping by WWID and the multipath maps.
 *
 * Anchor, in the same run: the floor of the same sysfs reads done by C tools —
 * `find` listing the SCSI devices and `xargs cat` of each one's wwid and state
 * (two of the seven files discovery reads per path, no links, no grouping). It is
 * a lower bound to compare against, not a competing discovery. Median of 3 runs;
 * writes bench-results/fc-discovery.json.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { discoverFc } from '@motus/storage-fc';
import { repoRoot } from '../../support/index.js';
import { buildFcHost, type FixtureArrayPort, type FixtureHba, type FixtureHost, type FixtureLun } from '../support/fc-fixture.js';

const HBAS = 8;
const TARGETS_PER_HBA = 64;
const LUNS_PER_TARGET = 256;
const PORTS_PER_ARRAY = 8;
const RUNS = Number(process.env.MOTUS_BENCH_RUNS ?? 3);

const hex = (n: number, width: number) => n.toString(16).padStart(width, '0');
const fabrics = ['0x100000051e000a01', '0x100000051e000b01'];

function topology(): FixtureHost {
  const hbas: FixtureHba[] = Array.from({ length: HBAS }, (_, i) => ({
    host: 10 + i, pci: `0000:${hex(0x3b + (i >> 1), 2)}:00.${i & 1}`, wwpn: `0x2100f4e9d4${hex(i, 6)}`, wwnn: `0x2000f4e9d4${hex(i, 6)}`, fabric: fabrics[i % 2]!, speed: '32 Gbit',
  }));
  // Each fabric carries TARGETS_PER_HBA array ports, so every HBA sees 64 targets.
  const arrays = (2 * TARGETS_PER_HBA) / PORTS_PER_ARRAY;
  const arrayPorts: FixtureArrayPort[] = [];
  const luns: FixtureLun[] = [];
  for (let a = 0; a < arrays; a++) {
    const ports = Array.from({ length: PORTS_PER_ARRAY }, (_, p) => ({ wwpn: `0x500a09${hex(a, 4)}${hex(p, 6)}`, wwnn: `0x500a09${hex(a, 4)}000000`, fabric: fabrics[p % 2]! }));
    arrayPorts.push(...ports);
    for (let l = 1; l <= LUNS_PER_TARGET; l++) {
      luns.push({ lun: l, wwn: `0x600a0980${hex(a, 8)}${hex(l, 16)}`, sizeMiB: 1024, multipath: `mpath${a}-${l}`, ports: ports.map((p) => p.wwpn) });
    }
  }
  return { hbas, arrayPorts, luns };
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
const root = mkdtempSync(join(base, 'motus-fc-bench-'));
try {
  const t0 = performance.now();
  const built = buildFcHost(root, topology(), { lean: true });
  const buildMs = performance.now() - t0;
  console.log(`fixture: ${built.paths.length} paths under ${root} built in ${(buildMs / 1000).toFixed(1)} s`);

  const ours: number[] = [];
  let summary = '';
  for (let run = 0; run < RUNS; run++) {
    const t = performance.now();
    const inv = await discoverFc({ sys: built.sys, dev: built.dev });
    ours.push(performance.now() - t);
    const paths = inv.luns.reduce((s, l) => s + l.paths.length, 0);
    const active = inv.luns.reduce((s, l) => s + l.activePaths, 0);
    summary = `${inv.hbas.length} HBAs, ${inv.remotePorts.length} remote ports, ${inv.luns.length} LUNs, ${paths} paths (${active} active), ${inv.luns.filter((l) => l.multipath).length} multipath maps, ${inv.problems.length} problems`;
    if (paths !== HBAS * TARGETS_PER_HBA * LUNS_PER_TARGET || active !== paths) throw new Error(`discovery found ${summary}`);
  }
  const anchor: number[] = [];
  const listing = `find '${built.sys}/class/scsi_device' -mindepth 1 -maxdepth 1 -printf '%p/device/wwid\\n%p/device/state\\n' | xargs cat > /dev/null`;
  for (let run = 0; run < RUNS; run++) {
    const t = performance.now();
    execFileSync('sh', ['-c', listing]);
    anchor.push(performance.now() - t);
  }
  const oursMs = median(ours);
  const anchorMs = median(anchor);
  const paths = built.paths.length;
  console.log(`FC discovery benchmark: ${HBAS} HBAs × ${TARGETS_PER_HBA} targets × ${LUNS_PER_TARGET} LUNs; median of ${RUNS} runs`);
  console.log(`found: ${summary}`);
  console.log('');
  console.log('reader                                   | total ms | per path');
  console.log('-----------------------------------------|----------|---------');
  console.log(`Motus discoverFc (7 reads/path + links)  | ${oursMs.toFixed(0).padStart(8)} | ${((oursMs * 1000) / paths).toFixed(1).padStart(5)} µs`);
  console.log(`anchor find | xargs cat (wwid + state)   | ${anchorMs.toFixed(0).padStart(8)} | ${((anchorMs * 1000) / paths).toFixed(1).padStart(5)} µs`);
  console.log('');
  console.log(`ratio (Motus / anchor): ×${(oursMs / anchorMs).toFixed(2)}`);
  const outDir = join(repoRoot, 'bench-results');
  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, 'fc-discovery.json');
  writeFileSync(file, JSON.stringify({ hbas: HBAS, targetsPerHba: TARGETS_PER_HBA, lunsPerTarget: LUNS_PER_TARGET, paths, buildMs, runs: RUNS, motusMs: ours, anchorMs: anchor, medianMotusMs: oursMs, medianAnchorMs: anchorMs, ratio: oursMs / anchorMs, found: summary, at: new Date().toISOString() }, null, 2));
  console.log(`JSON: ${file}`);
} finally {
  rmSync(root, { recursive: true, force: true });
}
