/**
 * Builds the sysfs and /dev trees of an FC host from a small description, laid
 * out as the kernel (scsi_transport_fc, sd, dm) and udev (60-persistent-storage,
 * multipath rules) lay them out on a real host: objects under
 * /sys/devices/pci…/hostH/rport-H:0-R/targetH:0:R/H:0:R:L, class folders of
 * relative symlinks into them, block devices with holders/slaves, and /dev nodes
 * with by-id, by-path and mapper links. Only the description lives in git
 * (fixtures/*.json); the trees are made per test run.
 *
 * Device nodes are empty files unless a LUN names a real block device
 * (`node: { major, minor }`), which is then made with mknod so that QEMU's
 * host_device driver can open the fixture's multipath map.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';

export interface FixtureHba {
  /** SCSI host number (hostH). */
  host: number;
  /** PCI address of the HBA function, e.g. 0000:3b:00.0 */
  pci: string;
  wwpn: string;
  wwnn: string;
  /** Fabric (switch) name; the HBA sees the array ports on the same fabric. */
  fabric: string;
  portState?: string;
  speed?: string;
}

export interface FixtureArrayPort {
  wwpn: string;
  wwnn: string;
  fabric: string;
}

export interface FixtureLun {
  /** The array's LUN number (≥ 256 uses flat space addressing, as Linux shows it). */
  lun: number;
  /** NAA WWN, 0x6… */
  wwn: string;
  sizeMiB: number;
  vendor?: string;
  model?: string;
  /** dm-multipath map name; no map when absent. */
  multipath?: string;
  /** Array ports (wwpn) that present it; all when absent. */
  ports?: string[];
  /** A real block device the nodes of this LUN stand for (its major:minor). */
  node?: { major: number; minor: number };
}

export interface FixtureHost {
  hbas: FixtureHba[];
  arrayPorts: FixtureArrayPort[];
  luns: FixtureLun[];
  /** `host:arrayWwpn` → port_state of that remote port (e.g. "Blocked"). */
  remotePortStates?: Record<string, string>;
}

export interface BuiltPath {
  hctl: string;
  device: string;
  hba: number;
  arrayWwpn: string;
  lun: number;
  deviceDir: string;
}

export interface BuiltHost {
  root: string;
  sys: string;
  dev: string;
  paths: BuiltPath[];
  /** dm-N of each multipath LUN's WWN */
  maps: Map<string, string>;
  /** The scan file of SCSI host H. */
  scanFile(host: number): string;
}

/** sda, sdb, …, sdz, sdaa, … as sd names its disks. */
export function sdName(index: number): string {
  let n = index;
  let s = '';
  do {
    s = String.fromCharCode(97 + (n % 26)) + s;
    n = Math.floor(n / 26) - 1;
  } while (n >= 0);
  return `sd${s}`;
}

/** The kernel's LUN integer for an array LUN number (flat space addressing from 256 on). */
export function linuxLun(lun: number): number {
  return lun < 256 ? lun : ((0x40 | (lun >> 8)) << 8) | (lun & 0xff);
}

/** udev path_id's LUN suffix. */
export function byPathLunSuffix(l: number): string {
  if (l < 256) return `lun-${l}`;
  const lo = l & 0xffff;
  const hi = Math.floor(l / 0x10000) & 0xffff;
  return `lun-0x${lo.toString(16).padStart(4, '0')}${hi.toString(16).padStart(4, '0')}00000000`;
}

function pad(text: string, width: number): string {
  return text.length >= width ? text.slice(0, width) : text + ' '.repeat(width - text.length);
}

export class TreeWriter {
  /** Folders made so far: a tree of 100,000 devices makes each one many times. */
  private readonly made = new Set<string>();
  constructor(readonly root: string) {}
  private parent(full: string): void {
    const d = dirname(full);
    if (this.made.has(d)) return;
    mkdirSync(d, { recursive: true });
    this.made.add(d);
  }
  file(path: string, content: string, mode?: number): void {
    const full = join(this.root, path);
    this.parent(full);
    writeFileSync(full, content, mode === undefined ? undefined : { mode });
  }
  dir(path: string): void {
    const full = join(this.root, path);
    if (this.made.has(full)) return;
    mkdirSync(full, { recursive: true });
    this.made.add(full);
  }
  /** A relative symlink at `path` to `target` (both relative to the root), as the kernel and udev make them. */
  link(path: string, target: string): void {
    const full = join(this.root, path);
    this.parent(full);
    const to = relative(dirname(full), join(this.root, target));
    try {
      symlinkSync(to, full);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      rmSync(full, { force: true });
      symlinkSync(to, full);
    }
  }
  node(path: string, spec?: { major: number; minor: number }): void {
    const full = join(this.root, path);
    this.parent(full);
    rmSync(full, { force: true });
    if (spec) execFileSync('mknod', [full, 'b', String(spec.major), String(spec.minor)]);
    else writeFileSync(full, '');
  }
}

/** Writes the host's /sys and /dev under `root` (root/sys, root/dev). */
export function buildFcHost(root: string, spec: FixtureHost, options: { sdStart?: number; dmStart?: number; lean?: boolean } = {}): BuiltHost {
  const w = new TreeWriter(root);
  const paths: BuiltPath[] = [];
  const maps = new Map<string, string>();
  let sd = options.sdStart ?? 0;
  let dmNext = options.dmStart ?? 0;
  const lean = options.lean === true;
  const hostDirs = new Map<number, string>();
  const lunPaths = new Map<string, BuiltPath[]>();
  w.dir('sys/class/scsi_device');
  w.dir('sys/class/fc_remote_ports');
  w.dir('dev/disk/by-id');
  w.dir('dev/disk/by-path');

  for (const hba of spec.hbas) {
    const h = hba.host;
    const hostDir = `sys/devices/pci0000:00/${hba.pci}/host${h}`;
    hostDirs.set(h, hostDir);
    const fc = `${hostDir}/fc_host/host${h}`;
    w.file(`${fc}/port_name`, `${hba.wwpn}\n`);
    w.file(`${fc}/node_name`, `${hba.wwnn}\n`);
    w.file(`${fc}/port_state`, `${hba.portState ?? 'Online'}\n`);
    w.file(`${fc}/speed`, `${hba.speed ?? '16 Gbit'}\n`);
    w.file(`${fc}/fabric_name`, `${hba.fabric}\n`);
    if (!lean) {
      w.file(`${fc}/port_type`, 'NPort (fabric via point-to-point)\n');
      w.file(`${fc}/supported_speeds`, '4 Gbit, 8 Gbit, 16 Gbit\n');
      w.file(`${fc}/port_id`, `0x${(0x010000 + h * 0x100).toString(16).padStart(6, '0')}\n`);
      w.file(`${fc}/issue_lip`, '', 0o200);
    }
    w.link(`${fc}/device`, hostDir);
    const sh = `${hostDir}/scsi_host/host${h}`;
    w.file(`${sh}/scan`, '', 0o200);
    w.file(`${sh}/proc_name`, 'qla2xxx\n');
    w.link(`${sh}/device`, hostDir);
    w.link(`sys/class/fc_host/host${h}`, fc);
    w.link(`sys/class/scsi_host/host${h}`, sh);

    const ports = spec.arrayPorts.filter((p) => p.fabric === hba.fabric);
    ports.forEach((port, r) => {
      const rport = `rport-${h}:0-${r}`;
      const rportDir = `${hostDir}/${rport}`;
      const rpAttrs = `${rportDir}/fc_remote_ports/${rport}`;
      const state = spec.remotePortStates?.[`${h}:${port.wwpn}`] ?? 'Online';
      w.file(`${rpAttrs}/port_name`, `${port.wwpn}\n`);
      w.file(`${rpAttrs}/node_name`, `${port.wwnn}\n`);
      w.file(`${rpAttrs}/port_state`, `${state}\n`);
      w.file(`${rpAttrs}/roles`, 'FCP Target\n');
      w.file(`${rpAttrs}/scsi_target_id`, `${r}\n`);
      if (!lean) {
        w.file(`${rpAttrs}/port_id`, `0x${(0x020000 + r * 0x100).toString(16).padStart(6, '0')}\n`);
        w.file(`${rpAttrs}/dev_loss_tmo`, '30\n');
        w.file(`${rpAttrs}/fast_io_fail_tmo`, '5\n');
      }
      w.link(`${rpAttrs}/device`, rportDir);
      w.link(`sys/class/fc_remote_ports/${rport}`, rpAttrs);
      const targetDir = `${rportDir}/target${h}:0:${r}`;
      for (const lun of spec.luns) {
        if (lun.ports && !lun.ports.includes(port.wwpn)) continue;
        const L = linuxLun(lun.lun);
        const hctl = `${h}:0:${r}:${L}`;
        const devDir = `${targetDir}/${hctl}`;
        const name = sdName(sd++);
        // A remote port that is blocked blocks its SCSI devices too.
        w.file(`${devDir}/state`, state === 'Online' ? 'running\n' : 'blocked\n');
        w.file(`${devDir}/vendor`, `${pad(lun.vendor ?? 'LIO-ORG', 8)}\n`);
        w.file(`${devDir}/model`, `${pad(lun.model ?? 'fcdisk', 16)}\n`);
        w.file(`${devDir}/wwid`, `naa.${lun.wwn.replace(/^0x/, '')}\n`);
        if (!lean) {
          w.file(`${devDir}/rev`, '4.0 \n');
          w.file(`${devDir}/type`, '0\n');
          w.file(`${devDir}/queue_depth`, '64\n');
        }
        w.link(`${devDir}/scsi_device/${hctl}/device`, devDir);
        w.link(`sys/class/scsi_device/${hctl}`, `${devDir}/scsi_device/${hctl}`);
        const blk = `${devDir}/block/${name}`;
        w.file(`${blk}/size`, `${lun.sizeMiB * 2048}\n`);
        w.file(`${blk}/dev`, `8:${(sd - 1) * 16}\n`);
        w.dir(`${blk}/holders`);
        if (!lean) w.dir(`${blk}/slaves`);
        w.link(`${blk}/device`, devDir);
        w.link(`sys/block/${name}`, blk);
        if (!lean) w.link(`sys/class/block/${name}`, blk);
        w.node(`dev/${name}`, lun.node);
        w.link(`dev/disk/by-path/pci-${hba.pci}-fc-${port.wwpn}-${byPathLunSuffix(L)}`, `dev/${name}`);
        const p: BuiltPath = { hctl, device: name, hba: h, arrayWwpn: port.wwpn, lun: lun.lun, deviceDir: devDir };
        paths.push(p);
        const list = lunPaths.get(lun.wwn) ?? [];
        list.push(p);
        lunPaths.set(lun.wwn, list);
      }
    });
  }

  for (const lun of spec.luns) {
    const list = lunPaths.get(lun.wwn) ?? [];
    if (list.length === 0) continue;
    const hex = lun.wwn.replace(/^0x/, '');
    const wwid = `3${hex}`;
    if (lun.multipath) {
      const dm = `dm-${dmNext++}`;
      maps.set(lun.wwn, dm);
      const dmDir = `sys/devices/virtual/block/${dm}`;
      w.file(`${dmDir}/dm/name`, `${lun.multipath}\n`);
      w.file(`${dmDir}/dm/uuid`, `mpath-${wwid}\n`);
      w.file(`${dmDir}/dm/suspended`, '0\n');
      w.file(`${dmDir}/size`, `${lun.sizeMiB * 2048}\n`);
      w.file(`${dmDir}/dev`, `253:${dm.slice(3)}\n`);
      w.dir(`${dmDir}/holders`);
      for (const p of list) {
        w.link(`${dmDir}/slaves/${p.device}`, `${p.deviceDir}/block/${p.device}`);
        w.link(`${p.deviceDir}/block/${p.device}/holders/${dm}`, dmDir);
      }
      w.link(`sys/block/${dm}`, dmDir);
      if (!lean) w.link(`sys/class/block/${dm}`, dmDir);
      w.node(`dev/${dm}`, lun.node);
      w.link(`dev/mapper/${lun.multipath}`, `dev/${dm}`);
      w.link(`dev/disk/by-id/dm-uuid-mpath-${wwid}`, `dev/${dm}`);
      w.link(`dev/disk/by-id/dm-name-${lun.multipath}`, `dev/${dm}`);
      w.link(`dev/disk/by-id/wwn-0x${hex}`, `dev/${dm}`);
      w.link(`dev/disk/by-id/scsi-${wwid}`, `dev/${dm}`);
    } else {
      // Without multipath udev points the identity links at the last path it processed.
      w.link(`dev/disk/by-id/wwn-0x${hex}`, `dev/${list[list.length - 1]!.device}`);
      w.link(`dev/disk/by-id/scsi-${wwid}`, `dev/${list[list.length - 1]!.device}`);
    }
  }
  return {
    root,
    sys: join(root, 'sys'),
    dev: join(root, 'dev'),
    paths,
    maps,
    scanFile: (host: number) => join(root, 'sys', 'class', 'scsi_host', `host${host}`, 'scan'),
  };
}

/** A fixture description from test/storage-fc/fixtures/<name>.json. */
export function loadFixture(name: string): FixtureHost {
  const here = dirname(new URL(import.meta.url).pathname);
  // Compiled to test/dist/storage-fc/support; the descriptions stay in the sources.
  const file = join(here, '..', '..', '..', 'storage-fc', 'fixtures', `${name}.json`);
  return JSON.parse(readFileSync(file, 'utf8')) as FixtureHost;
}
