/**
 * VM disks on iSCSI datastores are named by the URL QEMU's libiscsi driver opens,
 * `iscsi://<host>[:<port>]/<target>/<lun>`, so the same string serves the VM spec,
 * QEMU's argv and this plugin. A disk belongs to the datastore with the same
 * portal and target.
 */
import { parsePortal } from './connection.js';
import type { IscsiDatastoreConfig } from './config.js';

export interface IscsiDiskUrl {
  host: string;
  port: number;
  target: string;
  lun: number;
}

const URL_FORM = /^iscsi:\/\/(\[[^\]]+\]|[^/@?]+)\/([^/?]+)\/(\d+)$/;

/** Parses an iscsi:// disk URL; undefined for anything else (credentials and query options included: the plugin keeps those in its config). */
export function parseDiskUrl(path: string): IscsiDiskUrl | undefined {
  const m = URL_FORM.exec(path);
  if (!m) return undefined;
  let portal;
  try {
    portal = parsePortal(m[1]!);
  } catch {
    return undefined;
  }
  const lun = Number(m[3]);
  if (!Number.isSafeInteger(lun) || lun > 16383) return undefined;
  return { host: portal.host, port: portal.port, target: decodeURIComponent(m[2]!), lun };
}

export function diskUrl(datastore: Pick<IscsiDatastoreConfig, 'portal' | 'target'>, lun: number): string {
  const p = parsePortal(datastore.portal);
  const host = p.host.includes(':') ? `[${p.host}]` : p.host;
  return `iscsi://${host}:${p.port}/${datastore.target}/${lun}`;
}

export interface DiskLocation {
  datastore: string;
  lun: number;
  url: string;
}

export function locateDisk(datastores: readonly IscsiDatastoreConfig[], path: string): DiskLocation | undefined {
  const d = parseDiskUrl(path);
  if (!d) return undefined;
  const ds = datastores.find((x) => {
    const p = parsePortal(x.portal);
    return p.host === d.host && p.port === d.port && x.target === d.target;
  });
  return ds ? { datastore: ds.name, lun: d.lun, url: path } : undefined;
}
