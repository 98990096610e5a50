/**
 * A host's Fibre Channel view, read the way Linux lays it out:
 *
 *   /sys/class/fc_host/hostH            local ports (HBAs): port_name, node_name, port_state, speed, fabric_name
 *   /sys/class/fc_remote_ports/rport-H:B-R   remote ports: port_name, node_name, port_state, roles, scsi_target_id
 *   /sys/class/scsi_device/H:C:T:L      → /sys/devices/…/hostH/rport-H:B-R/targetH:C:T/H:C:T:L
 *                                       state, wwid, vendor, model, block/sdX
 *   /sys/block/sdX/{size,holders/dm-N}  size, the dm-multipath map holding the path
 *   /sys/block/dm-N/dm/{uuid,name}      mpath-<WWID>, the map's name
 *   /dev/disk/by-id/{wwn-0x…,dm-uuid-mpath-…}, /dev/disk/by-path/…-fc-0x<wwpn>-lun-<n>, /dev/mapper/<name>
 *
 * Each SCSI device below an FC host is one *path*; paths are grouped into LUNs by
 * WWID (multipath.ts). Anything unreadable, missing, dangling or garbled makes
 * the port, path or LUN unusable with the reason; discovery itself never throws.
 */
import { join } from 'node:path';
import { groupLuns, type FcLun } from './multipath.js';
import { parseByPath, parseHctl, parsePortWwn, parseSpeed, parseSysfsWwid, samLunOf, type LunIdentity } from './names.js';
import { exists, linkName, listDir, listOptional, readAttr, realPath, type Read } from './sysfs.js';

export interface FcRoots {
  /** Where sysfs is mounted; `/sys` on a real host. */
  sys: string;
  /** Where udev's device nodes and links are; `/dev` on a real host. */
  dev: string;
}

export interface FcHba {
  /** `host3` */
  name: string;
  hostNumber: number;
  wwpn?: string;
  wwnn?: string;
  portState?: string;
  speed?: string;
  speedGbit?: number;
  fabricName?: string;
  /** Online with a readable port name. */
  usable: boolean;
  reason?: string;
}

export interface FcRemotePort {
  /** `rport-3:0-1` */
  name: string;
  hostNumber: number;
  wwpn?: string;
  wwnn?: string;
  portState?: string;
  roles: string[];
  scsiTargetId?: number;
  /** Online, a FCP target, with a readable port name. */
  usable: boolean;
  reason?: string;
}

export type PathState = 'active' | 'failed';

export interface FcPath {
  /** `H:C:T:L` */
  hctl: string;
  hba: string;
  rport?: string;
  targetWwpn?: string;
  /** The kernel's LUN integer (the L of H:C:T:L). */
  linuxLun: number;
  /** The array's LUN number (SAM LUN decoded), when single-level. */
  lun?: number;
  lunAddressing: string;
  /** `sdb` */
  device?: string;
  /** The path's own node, e.g. `/dev/sdb`. */
  devicePath?: string;
  /** udev's by-path link name, when present. */
  byPath?: string;
  identity?: LunIdentity;
  vendor?: string;
  model?: string;
  sizeBytes?: number;
  /** The dm device holding this path (`dm-3`), when multipath claimed it. */
  holder?: string;
  /** The link speed of the path's HBA. */
  speedGbit?: number;
  state: PathState;
  reason?: string;
}

export interface FcInventory {
  roots: FcRoots;
  scannedAt: string;
  /** Wall time of the scan. */
  ms: number;
  hbas: FcHba[];
  remotePorts: FcRemotePort[];
  luns: FcLun[];
  /** Paths that could not be identified (no WWID), with the reason: no LUN can own them. */
  unidentified: FcPath[];
  /** Problems not tied to one port or path (a missing class folder, say). */
  problems: string[];
}

function attr(dir: string, name: string): Read<string> {
  return readAttr(join(dir, name));
}

/** A WWN attribute: its value, or undefined — with the reason pushed to `reasons` when it must be there. */
function wwnAttr(dir: string, name: string, reasons?: string[]): string | undefined {
  const text = attr(dir, name);
  if (!text.ok) {
    reasons?.push(`${name} ${text.reason}`);
    return undefined;
  }
  const wwn = parsePortWwn(text.value);
  if (!wwn.ok) reasons?.push(`${name}: ${wwn.reason}`);
  return wwn.ok ? wwn.value : undefined;
}

/** `port_state`, which must be Online for the port to count. */
function portStateAttr(dir: string, reasons: string[]): string | undefined {
  const state = attr(dir, 'port_state');
  if (!state.ok) {
    reasons.push(`port_state ${state.reason}`);
    return undefined;
  }
  if (state.value !== 'Online') reasons.push(`port is ${state.value}`);
  return state.value;
}

function readHba(sys: string, name: string): FcHba {
  const hostNumber = Number(name.slice(4));
  const dir = join(sys, 'class', 'fc_host', name);
  const hba: FcHba = { name, hostNumber, usable: false };
  const reasons: string[] = [];
  if (!/^host\d+$/.test(name)) return { ...hba, hostNumber: -1, reason: `'${name}' is not an FC host name` };
  const wwpn = wwnAttr(dir, 'port_name', reasons);
  if (wwpn) hba.wwpn = wwpn;
  const wwnn = wwnAttr(dir, 'node_name');
  if (wwnn) hba.wwnn = wwnn;
  const state = portStateAttr(dir, reasons);
  if (state) hba.portState = state;
  const speed = attr(dir, 'speed');
  if (speed.ok) {
    hba.speed = speed.value;
    const g = parseSpeed(speed.value);
    if (g !== undefined) hba.speedGbit = g;
  }
  const fabric = wwnAttr(dir, 'fabric_name');
  if (fabric) hba.fabricName = fabric;
  hba.usable = reasons.length === 0;
  if (reasons.length > 0) hba.reason = `HBA ${name}${hba.wwpn ? ` (${hba.wwpn})` : ''}: ${reasons.join('; ')}`;
  return hba;
}

function readRemotePort(sys: string, name: string): FcRemotePort {
  const m = /^rport-(\d+):(\d+)-(\d+)$/.exec(name);
  const rp: FcRemotePort = { name, hostNumber: m ? Number(m[1]) : -1, roles: [], usable: false };
  if (!m) return { ...rp, reason: `'${name}' is not a remote port name` };
  const dir = join(sys, 'class', 'fc_remote_ports', name);
  const reasons: string[] = [];
  const wwpn = wwnAttr(dir, 'port_name', reasons);
  if (wwpn) rp.wwpn = wwpn;
  const wwnn = wwnAttr(dir, 'node_name');
  if (wwnn) rp.wwnn = wwnn;
  const state = portStateAttr(dir, reasons);
  if (state) rp.portState = state;
  const roles = attr(dir, 'roles');
  if (roles.ok) {
    rp.roles = roles.value.split(',').map((r) => r.trim()).filter(Boolean);
    if (!rp.roles.includes('FCP Target')) reasons.push(`roles are '${roles.value}', not an FCP Target`);
  } else reasons.push(`roles ${roles.reason}`);
  const tid = attr(dir, 'scsi_target_id');
  if (tid.ok && /^-?\d+$/.test(tid.value)) {
    const n = Number(tid.value);
    if (n >= 0) rp.scsiTargetId = n;
  }
  rp.usable = reasons.length === 0;
  if (reasons.length > 0) rp.reason = `remote port ${name}${rp.wwpn ? ` (${rp.wwpn})` : ''}: ${reasons.join('; ')}`;
  return rp;
}

interface DevLinks {
  /** device name (`sdb`) → by-path link name */
  byPath: Map<string, string>;
  /** dm-uuid-mpath-<wwid> → dm device name, for links that resolve */
  mpathByWwid: Map<string, string>;
  /** wwn-0x… link name → target device name */
  byWwn: Map<string, string>;
  problems: string[];
}

function readDevLinks(dev: string): DevLinks {
  const links: DevLinks = { byPath: new Map(), mpathByWwid: new Map(), byWwn: new Map(), problems: [] };
  const byPathDir = join(dev, 'disk', 'by-path');
  for (const name of listOptional(byPathDir)) {
    if (!parseByPath(name)) continue;
    const target = linkName(join(byPathDir, name));
    if (target.ok) links.byPath.set(target.value, name);
    else links.problems.push(target.reason);
  }
  const byIdDir = join(dev, 'disk', 'by-id');
  for (const name of listOptional(byIdDir)) {
    const isMpath = name.startsWith('dm-uuid-mpath-');
    const isWwn = /^wwn-0x[0-9a-f]+$/.test(name);
    if (!isMpath && !isWwn) continue;
    const target = linkName(join(byIdDir, name));
    if (!target.ok) {
      links.problems.push(target.reason);
      continue;
    }
    if (isMpath) links.mpathByWwid.set(name.slice('dm-uuid-mpath-'.length), target.value);
    else links.byWwn.set(name, target.value);
  }
  return links;
}

function readPath(roots: FcRoots, hctl: string, hbas: Map<number, FcHba>, rports: Map<string, FcRemotePort>, links: DevLinks): FcPath | undefined {
  const id = parseHctl(hctl);
  if (!id) return undefined;
  const hba = hbas.get(id.host);
  // Not below an FC host (a local SATA disk, an iSCSI session): not ours.
  if (!hba) return undefined;
  const sam = samLunOf(id.lun);
  const path: FcPath = {
    hctl,
    hba: hba.name,
    linuxLun: id.lun,
    ...(sam.lun !== undefined ? { lun: sam.lun } : {}),
    lunAddressing: sam.addressMethod,
    ...(hba.speedGbit !== undefined ? { speedGbit: hba.speedGbit } : {}),
    state: 'failed',
  };
  const reasons: string[] = [];
  const classEntry = join(roots.sys, 'class', 'scsi_device', hctl);
  const devDir = join(classEntry, 'device');
  const where = realPath(devDir);
  if (!where.ok) {
    path.reason = `SCSI device ${hctl}: ${where.reason}`;
    return path;
  }
  const rportName = where.value.split('/').find((part) => /^rport-\d+:\d+-\d+$/.test(part));
  const rport = rportName ? rports.get(rportName) : undefined;
  if (rportName) path.rport = rportName;
  if (rport?.wwpn) path.targetWwpn = rport.wwpn;
  if (!hba.usable) reasons.push(hba.reason!);
  if (!rportName) reasons.push(`SCSI device ${hctl} is not below a remote port`);
  else if (!rport) reasons.push(`remote port ${rportName} is not in fc_remote_ports`);
  else if (!rport.usable) reasons.push(rport.reason!);

  const state = attr(where.value, 'state');
  if (!state.ok) reasons.push(`SCSI device ${hctl} state ${state.reason}`);
  else if (state.value !== 'running') reasons.push(`SCSI device ${hctl} is ${state.value}`);

  const wwid = attr(where.value, 'wwid');
  if (wwid.ok) {
    const parsed = parseSysfsWwid(wwid.value);
    if (parsed.ok) path.identity = parsed.value;
    else reasons.push(`SCSI device ${hctl}: ${parsed.reason}`);
  } else reasons.push(`SCSI device ${hctl} wwid ${wwid.reason}`);
  const vendor = attr(where.value, 'vendor');
  if (vendor.ok) path.vendor = vendor.value;
  const model = attr(where.value, 'model');
  if (model.ok) path.model = model.value;

  const blocks = listDir(join(where.value, 'block'));
  const device = blocks.ok ? blocks.value.find((b) => /^sd[a-z]+$/.test(b)) : undefined;
  if (!device) reasons.push(`SCSI device ${hctl} has no block device${blocks.ok ? '' : ` (${blocks.reason})`}`);
  else {
    path.device = device;
    const node = join(roots.dev, device);
    const present = exists(node);
    if (present.ok) path.devicePath = node;
    else reasons.push(`device node ${present.reason}`);
    const size = attr(join(roots.sys, 'block', device), 'size');
    if (size.ok && /^\d+$/.test(size.value)) path.sizeBytes = Number(size.value) * 512;
    else reasons.push(`${device} size ${size.ok ? `'${size.value.slice(0, 20)}' is not a sector count` : size.reason}`);
    const holder = listOptional(join(roots.sys, 'block', device, 'holders')).find((h) => /^dm-\d+$/.test(h));
    if (holder) path.holder = holder;
    const byPath = links.byPath.get(device);
    if (byPath) path.byPath = byPath;
  }
  if (reasons.length === 0) path.state = 'active';
  else path.reason = reasons.join('; ');
  return path;
}

export interface DiscoverOptions {
  /** Called between remote ports so a large fabric does not hold the event loop. */
  yieldEvery?: number;
}

/** Reads the host's FC view. Never throws: whatever cannot be read is a reason in the result. */
export async function discoverFc(roots: FcRoots, options: DiscoverOptions = {}): Promise<FcInventory> {
  const t0 = performance.now();
  const problems: string[] = [];
  const inventory = (hbas: FcHba[], remotePorts: FcRemotePort[], luns: FcLun[], unidentified: FcPath[]): FcInventory => ({
    roots, scannedAt: new Date().toISOString(), ms: Math.round((performance.now() - t0) * 100) / 100, hbas, remotePorts, luns, unidentified, problems,
  });
  try {
    const hostList = listDir(join(roots.sys, 'class', 'fc_host'));
    if (!hostList.ok) {
      problems.push(`no FC HBAs: ${hostList.reason}`);
      return inventory([], [], [], []);
    }
    const hbas = hostList.value.map((name) => readHba(roots.sys, name));
    const hbaByNumber = new Map(hbas.filter((h) => h.hostNumber >= 0).map((h) => [h.hostNumber, h]));
    const rportList = listDir(join(roots.sys, 'class', 'fc_remote_ports'));
    if (!rportList.ok) problems.push(`no remote ports: ${rportList.reason}`);
    const remotePorts = (rportList.ok ? rportList.value : []).map((name) => readRemotePort(roots.sys, name));
    const rportByName = new Map(remotePorts.map((r) => [r.name, r]));
    const links = readDevLinks(roots.dev);
    problems.push(...links.problems);
    const deviceList = listDir(join(roots.sys, 'class', 'scsi_device'));
    if (!deviceList.ok) problems.push(`no SCSI devices: ${deviceList.reason}`);
    const paths: FcPath[] = [];
    const every = options.yieldEvery ?? 512;
    let n = 0;
    for (const hctl of deviceList.ok ? deviceList.value : []) {
      const p = readPath(roots, hctl, hbaByNumber, rportByName, links);
      if (p) paths.push(p);
      if (++n % every === 0) await new Promise<void>((r) => setImmediate(r));
    }
    const { luns, unidentified } = groupLuns(roots, paths, links.mpathByWwid, links.byWwn);
    return inventory(hbas, remotePorts, luns, unidentified);
  } catch (err) {
    // Only a bug can land here (every read above answers a reason); still a result, not a throw.
    problems.push(`discovery failed: ${(err as Error).message}`);
    return inventory([], [], [], []);
  }
}

/** The FC HBAs' SCSI host numbers (`/sys/class/fc_host/host*`), for rescans. */
export function fcHostNames(sys: string): string[] {
  const r = listDir(join(sys, 'class', 'fc_host'));
  return r.ok ? r.value.filter((n) => /^host\d+$/.test(n)) : [];
}
