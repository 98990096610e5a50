/**
 * A VM disk on an FC datastore is named by the LUN's WWN in udev's by-id form,
 * `/dev/disk/by-id/wwn-0x6001405…`: the same string on every host (the array
 * gives the LUN one identity), and a path QEMU could open on a real host as is.
 * Each host opens its own device for it (the multipath map when there is one,
 * found by discovery), which is what StorageProvider.localPath answers.
 */
import type { FcDatastoreConfig } from './config.js';
import { normalizeLunWwn } from './names.js';

const BY_ID = /^\/dev\/disk\/by-id\/(wwn-0x[0-9a-fA-F]+|dm-uuid-mpath-3[0-9a-fA-F]+)$/;

export function diskPath(wwn: string): string {
  const r = normalizeLunWwn(wwn);
  if (!r.ok) throw new RangeError(r.reason);
  return `/dev/disk/by-id/wwn-${r.value}`;
}

/** The LUN WWN a disk path names (`/dev/disk/by-id/wwn-0x…` or `…/dm-uuid-mpath-3…`); undefined otherwise. */
export function wwnOfDiskPath(path: string): string | undefined {
  const m = BY_ID.exec(path);
  if (!m) return undefined;
  const name = m[1]!;
  const r = normalizeLunWwn(name.startsWith('wwn-') ? name : name.slice('dm-uuid-mpath-'.length));
  return r.ok ? r.value : undefined;
}

export interface DiskLocation {
  datastore: string;
  wwn: string;
}

export function locateDisk(datastores: readonly FcDatastoreConfig[], path: string): DiskLocation | undefined {
  const wwn = wwnOfDiskPath(path);
  if (!wwn) return undefined;
  const ds = datastores.find((d) => d.luns.includes(wwn));
  return ds ? { datastore: ds.name, wwn } : undefined;
}
