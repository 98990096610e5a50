/**
 * Which datastore a VM disk lives on. A disk's path is the URI QEMU opens
 * (`nfs://server/export/vm/disk.img`, the form of QEMU's libnfs driver, which
 * finds the ports through the portmapper and accepts no port parameters), so a
 * disk belongs to a datastore when server and export match, whatever the query.
 */
import { parseNfsUrl, type NfsUrl } from './datastore.js';

export interface DiskLocation {
  datastore: string;
  /** Path of the image relative to the export root, e.g. "vm1/disk0.img". */
  path: string;
}

/** The lock file of a disk image: hidden next to it, so listings of disks skip it. */
export function lockPathOf(imagePath: string): string {
  const slash = imagePath.lastIndexOf('/');
  return `${imagePath.slice(0, slash + 1)}.${imagePath.slice(slash + 1)}.lck`;
}

/** The URI QEMU's NFS block driver opens for an image on a datastore. */
export function diskUri(datastoreUrl: string, imagePath: string): string {
  const { host, export: exp } = parseNfsUrl(datastoreUrl);
  const server = host.includes(':') ? `[${host}]` : host;
  return `nfs://${server}${exp}/${imagePath.replace(/^\/+/, '')}`;
}

export function locateDisk(datastores: ReadonlyArray<{ name: string; url: string }>, diskPath: string): DiskLocation | undefined {
  if (!diskPath.startsWith('nfs://')) return undefined;
  let disk: NfsUrl;
  try {
    disk = parseNfsUrl(diskPath);
  } catch {
    return undefined;
  }
  let best: DiskLocation | undefined;
  let bestLength = -1;
  for (const ds of datastores) {
    const target = parseNfsUrl(ds.url);
    if (target.host !== disk.host) continue;
    const prefix = target.export === '/' ? '/' : `${target.export}/`;
    // The longest export wins when one datastore's export lies inside another's.
    if (disk.export.startsWith(prefix) && target.export.length > bestLength) {
      const path = disk.export.slice(prefix.length);
      if (path.length === 0 || path.split('/').some((part) => part === '' || part === '.' || part === '..')) continue;
      best = { datastore: ds.name, path };
      bestLength = target.export.length;
    }
  }
  return best;
}
