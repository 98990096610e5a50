/**
 * Paths to LUNs: every SCSI device below an FC host is one path (one HBA port
 * to one array port); the paths with the same WWID are one LUN. When
 * dm-multipath claimed them (the path's `holders/dm-N`, whose `dm/uuid` is
 * `mpath-<WWID>`), the map is the device to open — it fails over between
 * paths; a single sdX would not. Without multipath, an active path's own node.
 */
import { join } from 'node:path';
import type { FcPath, FcRoots } from './discovery.js';
import { exists, followLink, readAttr } from './sysfs.js';

export interface FcMultipath {
  /** The map's name (`mpatha`, or the WWID with user_friendly_names off). */
  name?: string;
  /** `dm-3` */
  dm: string;
  /** `mpath-36001405…` */
  uuid: string;
}

export interface FcLun {
  /** scsi_id/multipath form, `36001405…` */
  wwid: string;
  /** udev's by-id form for NAA ids, `0x6001405…` */
  wwn?: string;
  /** The array's LUN numbers over the paths (one, unless ports map it differently). */
  lunNumbers: number[];
  paths: FcPath[];
  activePaths: number;
  failedPaths: number;
  multipath?: FcMultipath;
  /** The node QEMU opens (`host_device`): the multipath map when there is one, else an active path. */
  device?: string;
  /** Fastest link among the active paths' HBAs, Gbit/s. */
  linkSpeedGbit?: number;
  sizeBytes?: number;
  vendor?: string;
  model?: string;
  usable: boolean;
  reason?: string;
  /** Problems that do not stop its use (a multipath map not found for a claimed path, sizes that disagree). */
  warnings: string[];
}

/** How a LUN is named in messages: `LUN 0x6001405… (LUN 1)`. */
export function lunLabel(lun: Pick<FcLun, 'wwid' | 'wwn' | 'lunNumbers'>): string {
  const nums = lun.lunNumbers.length > 0 ? ` (LUN ${lun.lunNumbers.join('/')})` : '';
  return `LUN ${lun.wwn ?? lun.wwid}${nums}`;
}

function readMultipath(roots: FcRoots, dm: string, wwid: string): { map?: FcMultipath; warning?: string } {
  const dmDir = join(roots.sys, 'block', dm, 'dm');
  const uuid = readAttr(join(dmDir, 'uuid'));
  if (!uuid.ok) return { warning: `multipath map ${dm}: uuid ${uuid.reason}` };
  if (uuid.value !== `mpath-${wwid}`) return { warning: `${dm} holds a path of ${wwid} but is ${uuid.value}, not its multipath map` };
  const name = readAttr(join(dmDir, 'name'));
  return { map: { dm, uuid: uuid.value, ...(name.ok ? { name: name.value } : {}) } };
}

function preferredDevice(roots: FcRoots, lun: FcLun, mpathLinks: Map<string, string>, byWwn: Map<string, string>): string | undefined {
  if (lun.multipath) {
    const byUuid = join(roots.dev, 'disk', 'by-id', `dm-uuid-mpath-${lun.wwid}`);
    if (mpathLinks.get(lun.wwid) === lun.multipath.dm) return byUuid;
    if (lun.multipath.name) {
      const mapper = join(roots.dev, 'mapper', lun.multipath.name);
      if (exists(mapper).ok) return mapper;
    }
    const node = join(roots.dev, lun.multipath.dm);
    if (exists(node).ok) return node;
    lun.warnings.push(`multipath map ${lun.multipath.dm} has no device node under ${roots.dev}; using a single path`);
  }
  const active = lun.paths.filter((p) => p.state === 'active' && p.devicePath);
  if (lun.wwn) {
    // udev points wwn-0x… at one of the paths (or at the map); use it when it names an active one.
    const link = `wwn-${lun.wwn}`;
    const target = byWwn.get(link);
    if (target && active.some((p) => p.device === target)) {
      const full = join(roots.dev, 'disk', 'by-id', link);
      if (followLink(full).ok) return full;
    }
  }
  return active[0]?.devicePath;
}

/** Groups paths into LUNs by WWID; paths without an identity are returned apart. */
export function groupLuns(roots: FcRoots, paths: readonly FcPath[], mpathLinks: Map<string, string>, byWwn: Map<string, string>): { luns: FcLun[]; unidentified: FcPath[] } {
  const byWwid = new Map<string, FcPath[]>();
  const unidentified: FcPath[] = [];
  for (const p of paths) {
    if (!p.identity) {
      unidentified.push(p);
      continue;
    }
    const list = byWwid.get(p.identity.wwid);
    if (list) list.push(p);
    else byWwid.set(p.identity.wwid, [p]);
  }
  const luns: FcLun[] = [];
  for (const [wwid, group] of byWwid) {
    const first = group[0]!;
    const lun: FcLun = {
      wwid,
      ...(first.identity!.wwn ? { wwn: first.identity!.wwn } : {}),
      lunNumbers: [...new Set(group.flatMap((p) => (p.lun !== undefined ? [p.lun] : [])))].sort((a, b) => a - b),
      paths: group,
      activePaths: group.filter((p) => p.state === 'active').length,
      failedPaths: group.filter((p) => p.state === 'failed').length,
      usable: false,
      warnings: [],
    };
    const vendor = group.find((p) => p.vendor)?.vendor;
    const model = group.find((p) => p.model)?.model;
    if (vendor) lun.vendor = vendor;
    if (model) lun.model = model;
    const sizes = [...new Set(group.filter((p) => p.state === 'active' && p.sizeBytes !== undefined).map((p) => p.sizeBytes!))];
    if (sizes.length > 0) lun.sizeBytes = Math.max(...sizes);
    if (sizes.length > 1) lun.warnings.push(`paths report different sizes (${sizes.join(', ')} bytes); a rescan of the smaller ones is due`);
    const speeds = group.filter((p) => p.state === 'active' && p.speedGbit !== undefined).map((p) => p.speedGbit!);
    if (speeds.length > 0) lun.linkSpeedGbit = Math.max(...speeds);
    const holders = [...new Set(group.flatMap((p) => (p.holder ? [p.holder] : [])))];
    for (const dm of holders) {
      const r = readMultipath(roots, dm, wwid);
      if (r.map && !lun.multipath) lun.multipath = r.map;
      if (r.warning) lun.warnings.push(r.warning);
    }
    if (!lun.multipath && mpathLinks.has(wwid)) {
      const r = readMultipath(roots, mpathLinks.get(wwid)!, wwid);
      if (r.map) lun.multipath = r.map;
    }
    if (lun.activePaths === 0) {
      lun.reason = `${lunLabel(lun)} has no usable path: ${group.map((p) => `${p.hctl}: ${p.reason ?? 'failed'}`).join('; ')}`;
    } else {
      const device = preferredDevice(roots, lun, mpathLinks, byWwn);
      if (device) lun.device = device;
      else lun.reason = `${lunLabel(lun)} has active paths but no device node under ${roots.dev}`;
    }
    lun.usable = lun.reason === undefined;
    luns.push(lun);
  }
  luns.sort((a, b) => (a.lunNumbers[0] ?? 1e9) - (b.lunNumbers[0] ?? 1e9) || a.wwid.localeCompare(b.wwid));
  return { luns, unidentified };
}
