import { statSync } from 'node:fs';
import { join } from 'node:path';
import { MotusError, type DiskSpec, type LaunchOptions, type NicAttachment, type NicSpec, type VmSpec } from '@motus/sdk';

export type Accelerator = 'kvm' | 'tcg';

export const DEFAULT_CPU_MODEL = 'qemu64';
export const DEFAULT_MACHINE = 'q35';

/** Files QEMU keeps in a VM's run folder. */
export interface RunFiles {
  qmpSocket: string;
  serialLog: string;
  pidFile: string;
}

export function runFiles(runDir: string): RunFiles {
  return { qmpSocket: join(runDir, 'qmp.sock'), serialLog: join(runDir, 'serial.log'), pidFile: join(runDir, 'qemu.pid') };
}

/** QEMU's option parser splits on commas; a literal comma inside a value is written twice. */
export function escapeOptionValue(value: string): string {
  return value.replace(/,/g, ',,');
}

const e = escapeOptionValue;

function invalid(message: string, data: Record<string, unknown>): MotusError {
  return new MotusError('MOTUS_E_INVALID_REQUEST', message, data);
}

const NODE_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,23}$/;
const DISK_URI = /^[a-z][a-z0-9+.-]*:\/\//i;

/** QEMU's `file` driver refuses block devices; a device node outside /dev (a storage plugin's own tree) still needs `host_device`. */
function isBlockDevice(path: string): boolean {
  try {
    return statSync(path).isBlockDevice();
  } catch {
    return false;
  }
}

export function machineArgs(spec: VmSpec, accelerator: Accelerator): string[] {
  return [
    '-machine', e(spec.machine ?? DEFAULT_MACHINE),
    '-accel', accelerator,
    '-cpu', e(spec.cpuModel ?? DEFAULT_CPU_MODEL),
    '-m', `${spec.memoryMiB}M`,
    '-smp', String(spec.vcpus),
  ];
}

export function bootArgs(spec: VmSpec): string[] {
  if (spec.boot.kind === 'disk') return [];
  const args = ['-kernel', spec.boot.kernel];
  if (spec.boot.initrd !== undefined) args.push('-initrd', spec.boot.initrd);
  if (spec.boot.cmdline !== undefined) args.push('-append', spec.boot.cmdline);
  return args;
}

/**
 * One disk as a two-node block graph (protocol, then format) and a virtio-blk
 * device. cache.direct=on bypasses the host page cache: with the same image opened
 * on two hosts during a migration, a cached read on the destination could return
 * data the source has written since.
 */
export function diskArgs(disk: DiskSpec, index: number): string[] {
  if (!NODE_NAME.test(disk.id)) {
    throw invalid(`disk id '${disk.id}' must start with a letter and hold at most 24 letters, digits, '_', '.', '-'`, { disk: disk.id });
  }
  const readOnly = disk.readOnly === true ? 'on' : 'off';
  const formatNode = `disk-${disk.id}`;
  if (DISK_URI.test(disk.path)) {
    // A URI (nfs://, iscsi://) names QEMU's protocol driver and its options in one
    // string, which only -drive parses; -blockdev would want them spelled out.
    return [
      '-drive', `file=${e(disk.path)},format=${disk.format},if=none,id=${formatNode},cache.direct=on,cache.no-flush=off,read-only=${readOnly}`,
      '-device', `virtio-blk-pci,id=${disk.id},drive=${formatNode}`,
    ];
  }
  const protocol = disk.path.startsWith('/dev/') || isBlockDevice(disk.path) ? 'host_device' : 'file';
  const fileNode = `proto-${index}`;
  return [
    '-blockdev', `driver=${protocol},node-name=${fileNode},filename=${e(disk.path)},cache.direct=on,cache.no-flush=off,read-only=${readOnly}`,
    '-blockdev', `driver=${disk.format},node-name=${formatNode},file=${fileNode},cache.direct=on,cache.no-flush=off,read-only=${readOnly}`,
    '-device', `virtio-blk-pci,id=${disk.id},drive=${formatNode}`,
  ];
}

/** The id a netdev string declares, if any. */
export function netdevId(netdev: string): string | undefined {
  // Options are split on single commas; ',,' is an escaped comma inside a value.
  for (const part of netdev.split(/(?<!,),(?!,)/)) {
    const match = /^id=(.+)$/.exec(part);
    if (match) return match[1];
  }
  return undefined;
}

/** One vNIC: the backend the network provider attached, and a virtio-net device with the VM's MAC. */
export function nicArgs(nic: NicSpec, attachment: NicAttachment | undefined): string[] {
  if (!attachment) throw invalid(`NIC ${nic.id} has no network attachment in the launch options`, { nic: nic.id });
  if (!NODE_NAME.test(nic.id)) throw invalid(`NIC id '${nic.id}' must start with a letter and hold at most 24 letters, digits, '_', '.', '-'`, { nic: nic.id });
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(nic.mac)) throw invalid(`NIC ${nic.id} has MAC '${nic.mac}', not six colon-separated hex bytes`, { nic: nic.id, mac: nic.mac });
  const declared = netdevId(attachment.netdev);
  const id = declared ?? `net-${nic.id}`;
  const netdev = declared === undefined ? `${attachment.netdev},id=${id}` : attachment.netdev;
  return ['-netdev', netdev, '-device', `virtio-net-pci,id=${nic.id},netdev=${e(id)},mac=${nic.mac.toLowerCase()}`];
}

export function runtimeArgs(name: string, files: RunFiles, incoming: boolean): string[] {
  return [
    '-name', `guest=${e(name)}`,
    '-nodefaults',
    '-no-user-config',
    '-display', 'none',
    '-serial', `file:${e(files.serialLog)}`,
    '-qmp', `unix:${e(files.qmpSocket)},server=on,wait=off`,
    ...(incoming ? ['-incoming', 'defer'] : []),
  ];
}

/** The whole argv (without the binary) for one VM. */
export function buildQemuArgv(spec: VmSpec, options: LaunchOptions, accelerator: Accelerator, iscsiInitiatorName?: string): string[] {
  if (!Number.isInteger(spec.memoryMiB) || spec.memoryMiB < 1) throw invalid(`memoryMiB must be a positive integer, got ${spec.memoryMiB}`, { field: 'memoryMiB' });
  if (!Number.isInteger(spec.vcpus) || spec.vcpus < 1) throw invalid(`vcpus must be a positive integer, got ${spec.vcpus}`, { field: 'vcpus' });
  const files = runFiles(options.runDir);
  const attachments = new Map((options.nics ?? []).map((a) => [a.nicId, a]));
  const disks = spec.disks ?? [];
  const nics = spec.nics ?? [];
  // Disk and NIC ids both become QEMU device ids, which share one namespace.
  const ids = [...disks.map((d) => d.id), ...nics.map((n) => n.id)];
  const dup = ids.find((id, i) => ids.indexOf(id) !== i);
  if (dup !== undefined) throw invalid(`device id '${dup}' is used twice among the disks and NICs`, { id: dup });
  return [
    ...runtimeArgs(spec.name, files, options.incoming === true),
    ...machineArgs(spec, accelerator),
    ...bootArgs(spec),
    ...disks.flatMap((disk, i) => diskArgs(disk, i)),
    ...(iscsiInitiatorName && disks.some((d) => d.path.startsWith('iscsi://')) ? ['-iscsi', `initiator-name=${e(iscsiInitiatorName)}`] : []),
    ...nics.flatMap((nic) => nicArgs(nic, attachments.get(nic.id))),
  ];
}
