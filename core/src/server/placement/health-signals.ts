import type { HardwareHealth, HealthSignalKind, HostMetricsSample } from '@motus/sdk';
import type { HealthPolicy } from '../../site/placement-schema.js';

export interface HealthInputs {
  /** Heartbeats missed in a row (the host is marked down at 3). */
  misses: number;
  /** Facts plugins report about the host, by plugin name. */
  plugins: Record<string, unknown>;
  hardware?: HardwareHealth | undefined;
  /** Oldest first. */
  samples: readonly HostMetricsSample[];
  now: number;
}

/**
 * The health signals of one host, from what its agent and plugins report. Plugin
 * facts are read by shape, so any storage or network plugin following the same
 * convention is understood: a `datastores` list whose entries say
 * `accessible: false` (storage-nas, storage-iscsi) is a storage path failure; a
 * switch with a `vtep` configured but no `uplink` (net-virt) has its uplink down.
 */
export function healthSignals(policy: HealthPolicy & { missedHeartbeats: number }, input: HealthInputs): Array<{ kind: HealthSignalKind; detail: string }> {
  const out: Array<{ kind: HealthSignalKind; detail: string }> = [];
  if (policy.missedHeartbeats > 0 && input.misses >= policy.missedHeartbeats) {
    out.push({ kind: 'missed-heartbeats', detail: `${input.misses} heartbeats missed in a row` });
  }
  for (const [plugin, facts] of Object.entries(input.plugins)) {
    if (!facts || typeof facts !== 'object') continue;
    const datastores = (facts as { datastores?: unknown }).datastores;
    if (Array.isArray(datastores)) {
      for (const ds of datastores as Array<{ name?: unknown; accessible?: unknown; error?: unknown }>) {
        if (ds && ds.accessible === false) out.push({ kind: 'storage-path', detail: `${plugin}: datastore ${String(ds.name)} is not reachable${ds.error ? ` (${String(ds.error)})` : ''}` });
      }
    }
    const sw = facts as { vtep?: unknown; uplink?: unknown };
    if (typeof sw.vtep === 'string' && sw.vtep.length > 0 && 'uplink' in sw && !sw.uplink) {
      out.push({ kind: 'uplink-down', detail: `${plugin}: the vswitch uplink (${sw.vtep}) is down` });
    }
  }
  const ecc = input.hardware?.ecc;
  if (ecc && ecc.uncorrectable > 0) out.push({ kind: 'ecc', detail: `${ecc.uncorrectable} uncorrectable memory errors (EDAC)` });
  else if (ecc && ecc.correctable > policy.eccCorrectableMax) out.push({ kind: 'ecc', detail: `${ecc.correctable} correctable memory errors (EDAC), above ${policy.eccCorrectableMax}` });
  for (const zone of input.hardware?.thermal ?? []) {
    const limit = Math.min(policy.thermalMaxCelsius, zone.criticalCelsius ?? Number.POSITIVE_INFINITY);
    if (zone.celsius >= limit) out.push({ kind: 'thermal', detail: `${zone.zone} at ${zone.celsius} °C (limit ${limit} °C)` });
  }
  const windowStart = input.now - policy.overloadSeconds * 1000;
  const oldest = input.samples[0];
  if (oldest && Date.parse(oldest.at) <= windowStart) {
    const recent = input.samples.filter((s) => Date.parse(s.at) >= windowStart);
    if (recent.length >= 2 && recent.every((s) => s.cpuUsed / Math.max(s.cpus, 1) >= policy.overloadCpu)) {
      const mean = recent.reduce((sum, s) => sum + s.cpuUsed / Math.max(s.cpus, 1), 0) / recent.length;
      out.push({ kind: 'overload', detail: `CPU at ${Math.round(mean * 100)}% for ${policy.overloadSeconds} s (limit ${Math.round(policy.overloadCpu * 100)}%)` });
    }
  }
  return out;
}
