import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { HardwareHealth } from '@motus/sdk';

/**
 * Reads the host's hardware health from sysfs under `root` (/sys, or a folder laid
 * out the same way): memory errors from EDAC (ce_count and ue_count of each
 * devices/system/edac/mc/mcN) and temperatures from thermal zones (temp of each
 * class/thermal/thermal_zoneN, in millidegrees, with its critical trip point).
 * Absent files mean "not reported", never an error: many hosts have neither.
 */
export function readHardwareHealth(root: string): HardwareHealth {
  const health: HardwareHealth = { thermal: [] };
  const mcDir = join(root, 'devices/system/edac/mc');
  const controllers = list(mcDir).filter((n) => /^mc\d+$/.test(n));
  if (controllers.length > 0) {
    health.ecc = { correctable: 0, uncorrectable: 0 };
    for (const mc of controllers) {
      health.ecc.correctable += number(join(mcDir, mc, 'ce_count')) ?? 0;
      health.ecc.uncorrectable += number(join(mcDir, mc, 'ue_count')) ?? 0;
    }
  }
  const thermalDir = join(root, 'class/thermal');
  for (const zone of list(thermalDir).filter((n) => /^thermal_zone\d+$/.test(n)).sort()) {
    const milli = number(join(thermalDir, zone, 'temp'));
    if (milli === undefined) continue;
    let critical: number | undefined;
    for (const trip of list(join(thermalDir, zone)).filter((n) => /^trip_point_\d+_type$/.test(n))) {
      if (text(join(thermalDir, zone, trip))?.trim() !== 'critical') continue;
      const t = number(join(thermalDir, zone, trip.replace('_type', '_temp')));
      if (t !== undefined) critical = t / 1000;
    }
    health.thermal.push({ zone: text(join(thermalDir, zone, 'type'))?.trim() || zone, celsius: milli / 1000, ...(critical === undefined ? {} : { criticalCelsius: critical }) });
  }
  return health;
}

function list(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function text(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

function number(path: string): number | undefined {
  const value = Number(text(path)?.trim());
  return text(path) !== undefined && Number.isFinite(value) ? value : undefined;
}
