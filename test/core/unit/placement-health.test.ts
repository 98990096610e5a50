import { expect } from 'chai';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { HostMetricsSample, Logger } from '@motus/sdk';
import { HealthPolicySchema, healthSignals, HostMetricsSampler, readHardwareHealth } from '@motus/core';
import { tempDir } from '../../support/index.js';

const policy = HealthPolicySchema.parse({ overloadSeconds: 10 });
const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined, child: () => quiet } as unknown as Logger;

function sample(at: number, cpuUsed: number): HostMetricsSample {
  return { at: new Date(at).toISOString(), cpus: 4, cpuUsed, memoryTotalMiB: 1000, memoryUsedMiB: 100, vms: [] };
}

describe('host health signals and samples', () => {
  it('reads EDAC error counts and thermal zones with their critical trip point from a sysfs root', () => {
    const dir = tempDir('sysfs');
    try {
      expect(readHardwareHealth(dir.path)).to.deep.equal({ thermal: [] });
      for (const [mc, ce, ue] of [['mc0', 3, 0], ['mc1', 4, 1]] as const) {
        mkdirSync(join(dir.path, 'devices/system/edac/mc', mc), { recursive: true });
        writeFileSync(join(dir.path, 'devices/system/edac/mc', mc, 'ce_count'), `${ce}\n`);
        writeFileSync(join(dir.path, 'devices/system/edac/mc', mc, 'ue_count'), `${ue}\n`);
      }
      const zone = join(dir.path, 'class/thermal/thermal_zone0');
      mkdirSync(zone, { recursive: true });
      writeFileSync(join(zone, 'type'), 'x86_pkg_temp\n');
      writeFileSync(join(zone, 'temp'), '71500\n');
      writeFileSync(join(zone, 'trip_point_0_type'), 'passive\n');
      writeFileSync(join(zone, 'trip_point_0_temp'), '60000\n');
      writeFileSync(join(zone, 'trip_point_1_type'), 'critical\n');
      writeFileSync(join(zone, 'trip_point_1_temp'), '70000\n');
      const health = readHardwareHealth(dir.path);
      expect(health).to.deep.equal({ ecc: { correctable: 7, uncorrectable: 1 }, thermal: [{ zone: 'x86_pkg_temp', celsius: 71.5, criticalCelsius: 70 }] });
      const signals = healthSignals(policy, { misses: 0, plugins: {}, hardware: health, samples: [], now: Date.now() });
      expect(signals).to.deep.equal([
        { kind: 'ecc', detail: '1 uncorrectable memory errors (EDAC)' },
        { kind: 'thermal', detail: 'x86_pkg_temp at 71.5 °C (limit 70 °C)' },
      ]);
    } finally {
      dir.remove();
    }
  });

  it('turns missed heartbeats, unreachable datastores, a down uplink and correctable ECC storms into signals', () => {
    const signals = healthSignals(policy, {
      misses: 2,
      plugins: {
        '@motus/storage-nas': { datastores: [{ name: 'nas1', accessible: true }, { name: 'nas2', accessible: false, error: 'NFS server not responding' }] },
        '@motus/net-virt': { vtep: '127.0.0.1:4789', uplink: undefined, networks: [] },
        '@motus/cpu-compat': { vendor: 'GenuineIntel' },
      },
      hardware: { ecc: { correctable: 101, uncorrectable: 0 }, thermal: [{ zone: 'acpitz', celsius: 40 }] },
      samples: [],
      now: Date.now(),
    });
    expect(signals).to.deep.equal([
      { kind: 'missed-heartbeats', detail: '2 heartbeats missed in a row' },
      { kind: 'storage-path', detail: '@motus/storage-nas: datastore nas2 is not reachable (NFS server not responding)' },
      { kind: 'uplink-down', detail: '@motus/net-virt: the vswitch uplink (127.0.0.1:4789) is down' },
      { kind: 'ecc', detail: '101 correctable memory errors (EDAC), above 100' },
    ]);
    expect(healthSignals(policy, { misses: 1, plugins: { '@motus/net-virt': { vtep: '127.0.0.1:4789', uplink: { peers: [] } } }, samples: [], now: Date.now() })).to.deep.equal([]);
    expect(healthSignals({ ...policy, missedHeartbeats: 0 }, { misses: 2, plugins: {}, samples: [], now: Date.now() })).to.deep.equal([]);
  });

  it('calls overload only when every sample of the whole window is above the limit', () => {
    const now = Date.now();
    const busy = [sample(now - 12_000, 3.9), sample(now - 8_000, 3.9), sample(now - 4_000, 3.85), sample(now, 3.95)];
    expect(healthSignals(policy, { misses: 0, plugins: {}, samples: busy, now })).to.deep.equal([{ kind: 'overload', detail: 'CPU at 98% for 10 s (limit 95%)' }]);
    const dip = busy.map((s, i) => (i === 2 ? { ...s, cpuUsed: 2 } : s));
    expect(healthSignals(policy, { misses: 0, plugins: {}, samples: dip, now })).to.deep.equal([]);
    expect(healthSignals(policy, { misses: 0, plugins: {}, samples: busy.slice(1), now }), 'the window is not covered yet').to.deep.equal([]);
  });

  it('samples host and VM CPU and memory from a /proc tree, and applies the override test hook', async () => {
    const dir = tempDir('proc');
    try {
      const proc = dir.path;
      const write = (path: string, text: string) => {
        mkdirSync(join(proc, path, '..'), { recursive: true });
        writeFileSync(join(proc, path), text);
      };
      write('meminfo', 'MemTotal:        8192000 kB\nMemFree:          100000 kB\nMemAvailable:    6144000 kB\n');
      write('stat', 'cpu  1000 0 1000 8000 0 0 0 0 0 0\ncpu0 1 2 3 4\n');
      write('42/stat', '42 (qemu-system-x86 vm) S 1 42 42 0 -1 4194560 0 0 0 0 100 50 0 0 20 0 3 0 100 0 0\n');
      write('42/status', 'Name:\tqemu\nVmRSS:\t  153600 kB\n');
      const override = join(dir.path, 'override.json');
      const sampler = new HostMetricsSampler({ procRoot: proc, intervalMs: 60_000, cpus: 4, vms: () => [{ name: 'vm1', pid: 42, guestStats: async () => ({ dirtyBytesPerSec: 1048576 }) }], overridePath: override, logger: quiet });
      await sampler.sample();
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      write('stat', 'cpu  1500 0 1500 9000 0 0 0 0 0 0\n');
      write('42/stat', '42 (qemu-system-x86 vm) S 1 42 42 0 -1 4194560 0 0 0 0 150 100 0 0 20 0 3 0 100 0 0\n');
      const s = (await sampler.sample())!;
      expect(s.cpuUsed).to.be.closeTo(2, 1e-9);
      expect([s.memoryTotalMiB, s.memoryUsedMiB]).to.deep.equal([8000, 2000]);
      expect(s.vms[0]!.name).to.equal('vm1');
      expect(s.vms[0]!.rssMiB).to.equal(150);
      expect(s.vms[0]!.cpuUsed).to.be.within(0.8, 1.05);
      expect(s.vms[0]!.dirtyBytesPerSec).to.equal(1048576);
      expect(s.overridden).to.equal(undefined);
      writeFileSync(override, JSON.stringify({ vms: { vm1: { cpuUsed: 3 } } }));
      const o = (await sampler.sample())!;
      expect(o.overridden).to.equal(true);
      expect(o.vms[0]!.cpuUsed).to.equal(3);
      expect(o.cpuUsed).to.be.greaterThan(2);
      writeFileSync(override, '{ not json');
      expect((await sampler.sample())!.overridden).to.equal(undefined);
    } finally {
      dir.remove();
    }
  });
});
